"""The kopf operator that turns custom resources into kubernetes.io/tls Secrets.

Layers, top to bottom (each imports only below; docs/architecture.md, "Inside the
controller"): cli, runner, handlers, loops, kinds/, kube/, gateway/, ops/, core/.
"""
