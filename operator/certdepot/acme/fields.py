"""The names of every wire member beyond RFC 8555's core, spelled once for both sides.

The repository renders and parses them, the client sends and reads them: both import the
name from here, so a typo is an ``AttributeError`` at import time, not a field the other
side silently never sees. Grouped by the document that defines them.
"""

from __future__ import annotations

# ---- RFC 8739 (STAR: short-term, automatically renewed certificates) ----------------------

#: Order member (request and response) and directory ``meta`` member: the auto-renewal object.
AUTO_RENEWAL = "auto-renewal"
#: In an order's auto-renewal object (§3.1.1).
START_DATE = "start-date"
END_DATE = "end-date"
LIFETIME = "lifetime"
LIFETIME_ADJUST = "lifetime-adjust"
#: In an order's auto-renewal object and in the directory's (§3.1.1, §3.4): unauthenticated GET.
ALLOW_CERTIFICATE_GET = "allow-certificate-get"
#: In the directory's auto-renewal object (§3.1.3).
MIN_LIFETIME = "min-lifetime"
MAX_DURATION = "max-duration"
#: Order member of a valid STAR order: where the current certificate is (§3.1.2).
STAR_CERTIFICATE = "star-certificate"
#: Order status after the client stopped auto-renewal (§3.1.2).
STATUS_CANCELED = "canceled"
#: Response headers of the STAR certificate URL (§3.3).
HEADER_CERT_NOT_BEFORE = "Cert-Not-Before"
HEADER_CERT_NOT_AFTER = "Cert-Not-After"

# ---- RFC 9115 (delegation) -----------------------------------------------------------------

#: Account member: URL of the account's delegations list; also the list's one member.
DELEGATIONS = "delegations"
#: newOrder member: the delegation URL the order is placed under.
DELEGATION = "delegation"
#: Directory ``meta`` member: the server offers delegation.
DELEGATION_ENABLED = "delegation-enabled"
#: Delegation object members.
CSR_TEMPLATE = "csr-template"
CNAME_MAP = "cname-map"

# ---- RFC 9773 (ARI) ------------------------------------------------------------------------

SUGGESTED_WINDOW = "suggestedWindow"
EXPLANATION_URL = "explanationURL"
#: certdepot's renewalInfo member on a revoked certificate: ``{"reason": ..., "at": ...}``.
REVOKED = "revoked"
REVOKED_REASON = "reason"
REVOKED_AT = "at"

# ---- certdepot: certificate download (docs/protocol.md §4) ---------------------------------

#: Directory ``meta`` member: the server offers certificate download.
DOWNLOAD_ENABLED = "download-enabled"
#: newOrder (and order) member: fetch an existing certificate and its key.
DOWNLOAD = "download"
#: finalize member of a download order: the one-time public key the private key is wrapped to.
EPHEMERAL_JWK = "ephemeral-jwk"
#: Order member of a valid download order: where the wrapped private key is fetched.
PRIVATE_KEY = "private-key"
#: Problem document member: seconds until a retry may succeed (also sent as Retry-After).
PROBLEM_RETRY_AFTER = "retry-after"
