"""In-process fakes for the operator's two outside worlds: the Kubernetes API and a repository."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certdepot.acme import crypto
from certdepot.acme.problems import AcmeProblem
from certdepot.controller.core import certinfo
from certdepot.controller.gateway.model import (
    AccountInfo,
    Delegation,
    Downloaded,
    Endpoint,
    ExternalAccount,
    Issued,
    RenewalWindow,
)
from certdepot.controller.kube.api import Conflict

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


class MiniCA:
    """A root and an intermediate, enough to make realistic chains."""

    def __init__(self) -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = self._cert(
            "Fake Root", self.root_key, self.root_key.public_key(), None, ca=True
        )
        self.int_key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = self._cert(
            "Fake Intermediate", self.root_key, self.int_key.public_key(), self.root, ca=True
        )

    def _cert(
        self,
        cn: str,
        signer: Any,
        public: Any,
        issuer: x509.Certificate | None,
        *,
        ca: bool,
        names: Sequence[str] = (),
        not_before: dt.datetime | None = None,
        lifetime: dt.timedelta = dt.timedelta(days=3650),
    ) -> x509.Certificate:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]) if cn else x509.Name([])
        start = not_before or NOW - dt.timedelta(days=1)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.subject if issuer else subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + lifetime)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    def issue(
        self,
        names: Sequence[str],
        *,
        key: crypto.PrivateKey | None = None,
        not_before: dt.datetime | None = None,
        lifetime: dt.timedelta = dt.timedelta(days=90),
    ) -> tuple[list[x509.Certificate], crypto.PrivateKey]:
        key = key or crypto.generate_private_key(certinfo.key_kind("ECDSA", 256))
        leaf = self._cert(
            "",
            self.int_key,
            key.public_key(),
            self.intermediate,
            ca=False,
            names=names,
            not_before=not_before,
            lifetime=lifetime,
        )
        return [leaf, self.intermediate, self.root], key


def pem(certs: Sequence[x509.Certificate]) -> str:
    return crypto.chain_to_pem(list(certs)).decode()


class FakeKube:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.customs: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.namespaces: dict[str, dict[str, str]] = {}
        self.statuses: list[tuple[str, str | None, str, dict[str, Any]]] = []
        self._rv = 0
        self.writes = 0

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.secrets.get((namespace, name))
        return copy.deepcopy(found) if found else None

    async def create_secret(self, body: Mapping[str, Any]) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key in self.secrets:
            raise Conflict("exists")
        stored = copy.deepcopy(dict(body))
        stored["metadata"]["resourceVersion"] = self._next_rv()
        self.secrets[key] = stored
        self.writes += 1
        return copy.deepcopy(stored)

    async def replace_secret(self, body: Mapping[str, Any]) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        current = self.secrets.get(key)
        if current is None:
            raise LookupError("gone")
        rv = body["metadata"].get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise Conflict("changed")
        if current.get("type") != body.get("type"):
            raise RuntimeError("Secret type is immutable")
        stored = copy.deepcopy(dict(body))
        stored["metadata"]["resourceVersion"] = self._next_rv()
        self.secrets[key] = stored
        self.writes += 1
        return copy.deepcopy(stored)

    async def delete_secret(self, namespace: str, name: str) -> None:
        self.secrets.pop((namespace, name), None)

    async def namespace_labels(self, namespace: str) -> dict[str, str]:
        return dict(self.namespaces.get(namespace, {}))

    async def get_custom(
        self, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        found = self.customs.get((kind, namespace or "", name))
        return copy.deepcopy(found) if found else None

    async def list_custom(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(v)
            for (k, ns, _), v in self.customs.items()
            if k == kind and (namespace is None or ns == namespace)
        ]

    async def patch_status(
        self, kind: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> None:
        self.statuses.append((kind, namespace, name, dict(status)))
        obj = self.customs.get((kind, namespace or "", name))
        if obj is not None:
            merged = {**(obj.get("status") or {}), **status}
            obj["status"] = {k: v for k, v in merged.items() if v is not None}

    async def create_custom(self, kind: str, namespace: str, body: Mapping[str, Any]) -> None:
        self.customs[(kind, namespace, body["metadata"]["name"])] = copy.deepcopy(dict(body))

    async def replace_custom(self, kind: str, namespace: str, body: Mapping[str, Any]) -> None:
        self.customs[(kind, namespace, body["metadata"]["name"])] = copy.deepcopy(dict(body))

    async def delete_custom(self, kind: str, namespace: str, name: str) -> None:
        self.customs.pop((kind, namespace, name), None)


class FakeRepository:
    """Holds managed certificates by name set; counts calls; can be told to fail."""

    def __init__(self, ca: MiniCA) -> None:
        self.ca = ca
        self.managed: dict[frozenset[str], tuple[list[x509.Certificate], crypto.PrivateKey]] = {}
        self.downloads = 0
        self.registrations: list[ExternalAccount | None] = []
        self.fail_with: BaseException | None = None
        self.windows: dict[str, RenewalWindow] = {}
        self.delegation_list = [Delegation("https://repo.test/acme/delegation/cdn1", {})]
        self.csrs: list[bytes] = []
        self.issued_lifetime = dt.timedelta(days=6)

    def manage(self, names: Sequence[str], **kwargs: Any) -> list[x509.Certificate]:
        chain, key = self.ca.issue(names, **kwargs)
        self.managed[frozenset(names)] = (chain, key)
        return chain

    async def register(
        self, endpoint: Endpoint, *, email: str | None, eab: ExternalAccount | None
    ) -> AccountInfo:
        if self.fail_with:
            raise self.fail_with
        self.registrations.append(eab)
        return AccountInfo(
            "https://repo.test/acme/acct/1",
            {"downloadEnabled": True},
            [d.url for d in self.delegation_list],
        )

    async def download(
        self,
        endpoint: Endpoint,
        dns_names: Sequence[str],
        current_serial: str | None = None,
        resource: str | None = None,
    ) -> Downloaded:
        if self.fail_with:
            raise self.fail_with
        entry = self.managed.get(frozenset(dns_names))
        if entry is None:
            raise AcmeProblem(
                "rejectedIdentifier", "no managed certificate has exactly these names"
            )
        self.downloads += 1
        return Downloaded(pem(entry[0]), entry[1], "https://repo.test/acme/cert/1")

    async def renewal_window(
        self, endpoint: Endpoint, cert: x509.Certificate
    ) -> RenewalWindow | None:
        return self.windows.get(format(cert.serial_number, "x"))

    async def delegations(self, endpoint: Endpoint) -> list[Delegation]:
        return list(self.delegation_list)

    async def delegated_order(
        self,
        endpoint: Endpoint,
        *,
        delegation_url: str,
        dns_names: Sequence[str],
        csr_der: bytes,
        extra: dict[str, Any] | None = None,
    ) -> Issued:
        if self.fail_with:
            raise self.fail_with
        self.csrs.append(csr_der)
        csr = x509.load_der_x509_csr(csr_der)
        key_public = csr.public_key()
        leaf = self.ca._cert(
            "",
            self.ca.int_key,
            key_public,
            self.ca.intermediate,
            ca=False,
            names=list(dns_names),
            lifetime=self.issued_lifetime,
        )
        self.last_issued = [leaf, self.ca.intermediate, self.ca.root]
        return Issued(
            pem(self.last_issued),
            "https://repo.test/acme/cert/star1",
            "https://repo.test/acme/order/1",
        )

    async def fetch_certificate(self, endpoint: Endpoint, url: str) -> str:
        return pem(self.last_issued)
