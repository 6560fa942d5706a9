"""The ACME front end, one module per resource."""
