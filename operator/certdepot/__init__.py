"""certdepot: distribute TLS certificates to Kubernetes pods over ACME."""

__version__ = "0.1.0"
