"""The one-command demo: a local control plane, repository and operator."""
