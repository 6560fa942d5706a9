"""Names of the API resources the operator works with."""

from __future__ import annotations

GROUP = "certdepot.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

REPOSITORIES = "certificaterepositories"
CLUSTER_REPOSITORIES = "clustercertificaterepositories"
DOWNLOADS = "certificatedownloads"
DELEGATED = "delegatedcertificates"

PLURALS = {
    "CertificateRepository": REPOSITORIES,
    "ClusterCertificateRepository": CLUSTER_REPOSITORIES,
    "CertificateDownload": DOWNLOADS,
    "DelegatedCertificate": DELEGATED,
}
