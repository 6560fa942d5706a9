"""The kubernetes.io/tls Secret: what we write, and what we find when we look at one.

Secrets are plain API dicts ("metadata", "type", "data" with base64 values); all but
the writing is pure.

Writing the Secret: create, or replace with optimistic concurrency; never a partial write.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from certdepot.acme import crypto
from certdepot.acme.timefmt import rfc3339
from certdepot.controller.core import certinfo
from certdepot.controller.core.errors import ReconcileError, SecretConflict
from certdepot.controller.kube.api import Conflict, KubeApi

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "certdepot"
MANAGED_SECRETS_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"  # the operator's Secret watch
OWNER_ANNOTATION = "certdepot.io/owner"  # "<Kind>/<namespace>/<name>"
OWNER_UID_ANNOTATION = "certdepot.io/owner-uid"
SERIAL_ANNOTATION = "certdepot.io/serial"
FINGERPRINT_ANNOTATION = "certdepot.io/fingerprint"
NOT_AFTER_ANNOTATION = "certdepot.io/not-after"
DNS_NAMES_ANNOTATION = "certdepot.io/dns-names"
OWNER_KIND_LABEL = "certdepot.io/owner-kind"
OWNER_NAME_LABEL = "certdepot.io/owner-name"

_RESERVED_PREFIXES = ("certdepot.io/", MANAGED_BY_LABEL)


@dataclass(frozen=True)
class Owner:
    kind: str
    namespace: str
    name: str
    uid: str = ""

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass
class SecretState:
    """What an existing Secret means for its would-be owner."""

    exists: bool
    ours: bool = False  # managed by certdepot for this very owner
    foreign: str = ""  # non-empty: why it is not ours to overwrite
    bundle: certinfo.Bundle | None = None
    info: certinfo.CertInfo | None = None
    problem: str = ""  # non-empty: why its content is not a usable certificate + key
    resource_version: str = ""
    secret_type: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    # False: not read, taken to be missing (an object's first step; see certificate.begin).
    # Writing it then only creates: should the Secret exist after all, it is read and
    # judged before anything is replaced.
    read: bool = True


UNREAD = SecretState(exists=False, read=False)


def conflict_message(foreign: str) -> str:
    """Why a Secret that is not ours is left alone (status, Event)."""
    return f"{foreign}; set adoptExistingSecret: true to take it over"


def inspect(secret: Mapping[str, Any] | None, owner: Owner) -> SecretState:
    if secret is None:
        return SecretState(exists=False)
    meta = dict(secret.get("metadata") or {})
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    state = SecretState(
        exists=True,
        resource_version=str(meta.get("resourceVersion") or ""),
        secret_type=str(secret.get("type") or "Opaque"),
        metadata=meta,
    )
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
        state.foreign = "the Secret exists and is not managed by certdepot"
    elif annotations.get(OWNER_ANNOTATION) != owner.ref:
        other = annotations.get(OWNER_ANNOTATION) or "an unknown resource"
        state.foreign = f"the Secret is managed by certdepot for {other}"
    else:
        state.ours = True
    bundle, problem = _read_bundle(secret)
    state.bundle, state.problem = bundle, problem
    if bundle is not None:
        state.info = certinfo.cert_info(bundle.chain[0])
    return state


def _read_bundle(secret: Mapping[str, Any]) -> tuple[certinfo.Bundle | None, str]:
    data = secret.get("data") or {}
    try:
        crt = base64.b64decode(data.get("tls.crt") or "")
        key_bytes = base64.b64decode(data.get("tls.key") or "")
    except (ValueError, TypeError):
        return None, "tls.crt or tls.key is not base64"
    if not crt or not key_bytes:
        return None, "tls.crt or tls.key is empty"
    try:
        chain = crypto.parse_pem_chain(crt)
    except ValueError:
        return None, "tls.crt does not hold a PEM certificate"
    if not key_bytes.lstrip().startswith(b"-----"):
        # tls.key must be PEM for the TLS servers that read it; DER is unreadable to them.
        return None, "tls.key does not hold a readable private key"
    try:
        key = crypto.load_private_key(key_bytes)
    except (ValueError, TypeError):
        # Never echo the bytes: they may be (part of) a key.
        return None, "tls.key does not hold a readable private key"
    if not crypto.public_key_matches(key, chain[0]):
        return None, "tls.key does not match the certificate in tls.crt"
    root = None
    ca = data.get("ca.crt")
    if ca:
        try:
            root = crypto.parse_pem_chain(base64.b64decode(ca))[0]
        except ValueError:
            root = None
    return certinfo.Bundle(chain=chain, root=root, key=key), ""


def build(
    *,
    name: str,
    owner: Owner,
    chain: list[x509.Certificate],
    root: x509.Certificate | None,
    key: crypto.PrivateKey,
    key_encoding: str = "PKCS8",
    template: Mapping[str, Any] | None = None,
    existing_metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The full Secret body to create or replace.

    ``existing_metadata`` keeps labels/annotations others put on a Secret we manage (an
    ingress controller's, say) while ours always win.
    """
    labels, annotations = _labels_and_annotations(
        owner, certinfo.cert_info(chain[0]), template or {}, existing_metadata
    )
    data = {
        "tls.crt": _b64(crypto.chain_to_pem(chain)),
        "tls.key": _b64(crypto.private_key_to_pem(key, traditional=key_encoding == "PKCS1")),
    }
    if root is not None:
        data["ca.crt"] = _b64(crypto.chain_to_pem([root]))
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "annotations": annotations,
    }
    if existing_metadata and existing_metadata.get("resourceVersion"):
        # Optimistic concurrency: a replace fails if someone changed the Secret meanwhile.
        metadata["resourceVersion"] = existing_metadata["resourceVersion"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": metadata,
        "data": data,
    }


def _labels_and_annotations(
    owner: Owner,
    info: certinfo.CertInfo,
    template: Mapping[str, Any],
    existing_metadata: Mapping[str, Any] | None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Others' labels and annotations (the existing Secret's, then the template's), with
    ours (certdepot.io/, managed-by) always set last."""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    if existing_metadata:
        labels.update(_unreserved(existing_metadata.get("labels")))
        annotations.update(_unreserved(existing_metadata.get("annotations")))
    labels.update(_unreserved(template.get("labels")))
    annotations.update(_unreserved(template.get("annotations")))
    labels[MANAGED_BY_LABEL] = MANAGED_BY
    labels[OWNER_KIND_LABEL] = owner.kind
    if len(owner.name) <= 63:
        labels[OWNER_NAME_LABEL] = owner.name
    annotations.update(
        {
            OWNER_ANNOTATION: owner.ref,
            OWNER_UID_ANNOTATION: owner.uid,
            SERIAL_ANNOTATION: info.serial,
            FINGERPRINT_ANNOTATION: info.fingerprint,
            NOT_AFTER_ANNOTATION: rfc3339(info.not_after),
            DNS_NAMES_ANNOTATION: ",".join(sorted(info.dns_names)),
        }
    )
    return labels, annotations


def _unreserved(values: Any) -> dict[str, str]:
    if not isinstance(values, Mapping):
        return {}
    return {str(k): str(v) for k, v in values.items() if not str(k).startswith(_RESERVED_PREFIXES)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def owner_of(body: Mapping[str, Any], kind: str) -> Owner:
    meta = body.get("metadata") or {}
    return Owner(
        kind, str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid") or "")
    )


async def write(kube: KubeApi, body: Mapping[str, Any], state: SecretState) -> None:
    """Put ``body`` in place of what ``state`` saw.

    A Secret's type is immutable, so adopting a Secret of another type means delete and
    create; that only happens when the resource opted into adoption.
    """
    try:
        if not state.exists:
            await kube.create_secret(body)
            return
        if state.secret_type != "kubernetes.io/tls":  # noqa: S105 - a type, not a password
            await kube.delete_secret(body["metadata"]["namespace"], body["metadata"]["name"])
            fresh = dict(body)
            fresh["metadata"] = {
                k: v for k, v in body["metadata"].items() if k != "resourceVersion"
            }
            await kube.create_secret(fresh)
            return
        await kube.replace_secret(body)
    except Conflict:
        raise ReconcileError(
            "SecretChanged",
            "the Secret changed while it was being written; retrying",
            permanent=False,
        ) from None


async def write_bundle(
    kube: KubeApi,
    body: Mapping[str, Any],
    owner: Owner,
    state: SecretState,
    bundle: certinfo.Bundle,
) -> None:
    """Build the Secret for ``body``'s spec from a chain, root and key, and write it.

    A Secret not read first (``state.read`` False) is only created: when it exists after
    all (HTTP 409), it is read now, and one that is not ours is left alone as if it had been
    read first (SecretConflict); ours is replaced."""
    if not state.read:
        try:
            await kube.create_secret(_secret_for(body, owner, state, bundle))
            return
        except Conflict:
            name = str((body.get("spec") or {})["secretName"])
            state = inspect(await kube.get_secret(owner.namespace, name), owner)
        if state.foreign:
            raise SecretConflict(conflict_message(state.foreign))
    await write(kube, _secret_for(body, owner, state, bundle), state)


def _secret_for(
    body: Mapping[str, Any], owner: Owner, state: SecretState, bundle: certinfo.Bundle
) -> dict[str, Any]:
    spec = body.get("spec") or {}
    return build(
        name=spec["secretName"],
        owner=owner,
        chain=bundle.chain,
        root=bundle.root,
        key=bundle.key,
        key_encoding=str((spec.get("privateKey") or {}).get("encoding") or "PKCS8"),
        template=spec.get("secretTemplate"),
        existing_metadata=state.metadata if state.exists else None,
    )
