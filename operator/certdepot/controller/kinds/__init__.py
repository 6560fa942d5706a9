"""The reconcilers, one module per resource: CertificateDownload (download), DelegatedCertificate
(delegated), (Cluster)CertificateRepository (account), the Ingress shim (ingress); the flow the
two Secret-producing kinds share (certificate), their pure decisions, and their dependencies
(deps)."""
