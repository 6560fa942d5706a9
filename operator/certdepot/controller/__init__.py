"""The kopf operator that turns custom resources into kubernetes.io/tls Secrets."""
