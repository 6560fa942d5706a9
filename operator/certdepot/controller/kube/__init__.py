"""The operator's Kubernetes side: the API, the TLS Secret (read and written), and the lookup
from a repositoryRef to an Endpoint with its watch cache."""
