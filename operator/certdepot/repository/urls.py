"""Every URL the repository hands out, built from the configured external base URL.

Clients must treat them as opaque (they only follow links), but the JWS ``url`` check
compares against these, so they are built in exactly one place.
"""

from __future__ import annotations


class Urls:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")

    def directory(self) -> str:
        return f"{self.base}/directory"

    def new_nonce(self) -> str:
        return f"{self.base}/acme/new-nonce"

    def new_account(self) -> str:
        return f"{self.base}/acme/new-account"

    def new_order(self) -> str:
        return f"{self.base}/acme/new-order"

    def revoke_cert(self) -> str:
        return f"{self.base}/acme/revoke-cert"

    def key_change(self) -> str:
        return f"{self.base}/acme/key-change"

    def renewal_info(self, cert_id: str = "") -> str:
        return f"{self.base}/acme/renewal-info" + (f"/{cert_id}" if cert_id else "")

    def account(self, acct: str) -> str:
        return f"{self.base}/acme/acct/{acct}"

    def orders(self, acct: str) -> str:
        return f"{self.base}/acme/acct/{acct}/orders"

    def delegations(self, acct: str) -> str:
        return f"{self.base}/acme/acct/{acct}/delegations"

    def delegation(self, acct: str, name: str) -> str:
        return f"{self.base}/acme/acct/{acct}/delegation/{name}"

    def order(self, order: str) -> str:
        return f"{self.base}/acme/order/{order}"

    def finalize(self, order: str) -> str:
        return f"{self.base}/acme/order/{order}/finalize"

    def private_key(self, order: str) -> str:
        return f"{self.base}/acme/order/{order}/private-key"

    def authz(self, authz: str) -> str:
        return f"{self.base}/acme/authz/{authz}"

    def challenge(self, authz: str, chall: str) -> str:
        return f"{self.base}/acme/chall/{authz}/{chall}"

    def certificate(self, cert: str) -> str:
        return f"{self.base}/acme/cert/{cert}"

    def star_certificate(self, order: str) -> str:
        return f"{self.base}/acme/star/{order}"

    def request_url(self, path: str, query: str = "") -> str:
        """The external URL of a request path (what a client put in the JWS ``url``)."""
        return self.base + path + (f"?{query}" if query else "")
