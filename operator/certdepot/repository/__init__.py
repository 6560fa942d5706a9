"""The repository: the domain owner's ACME server."""
