"""The repository client side: what the operator asks of a repository (model), its ACME
implementation with pooled clients and request metrics, and the requests shared by many
objects (download coalescing, one renewal-information poll per certificate). Knows nothing
of Kubernetes."""
