"""A RepositoryTenant's EAB credentials: minted in the store, written to a Secret.

The Secret has exactly the shape a ClusterCertificateRepository's
``externalAccountBinding.keySecretRef`` reads (crds/01-clustercertificaterepositories.yaml):
data key ``secret`` holds the base64url HMAC key as text; ``keyID`` the key id that goes in
``externalAccountBinding.keyID``. Copying it to a consumer cluster is one
``kubectl get secret -o yaml | kubectl apply -f -`` (docs/operations.md). Which rotation
generation the credentials were minted for is an annotation of the Secret: it is written
right after the store, so a rotation is done once even if the status update then fails.
"""

from __future__ import annotations

import base64
from typing import Any

from certdepot.acme.jws import b64encode
from certdepot.repository import store as tables
from certdepot.repository import tenants
from certdepot.repository.keyvault import KeyVault
from certdepot.repository.store import Store

SECRET_KEY = "secret"  # noqa: S105 - keySecretRef.key's default: a data key's name
KEY_ID_KEY = "keyID"
ROTATION_ANNOTATION = "certdepot.io/eab-rotation-generation"
TENANT_ANNOTATION = "certdepot.io/tenant"
MANAGED_BY = {"app.kubernetes.io/managed-by": "certdepot-repository"}


def current(store: Store, vault: KeyVault, tenant: str) -> tenants.EabCredentials | None:
    row = store.get(tables.tenants, tenant)
    if row is None:
        return None
    found = tenants.hmac_key_for(store, vault, str(row["eab_kid"]))
    if found is None:
        return None
    return tenants.EabCredentials(tenant, str(row["eab_kid"]), b64encode(found[1]))


def ensure(store: Store, vault: KeyVault, tenant: str) -> tenants.EabCredentials:
    """The tenant's credentials, minted when it has none yet."""
    creds = current(store, vault, tenant)
    if creds is not None:
        return creds
    try:
        return tenants.create_tenant(store, vault, tenant)
    except tenants.TenantExists:  # another replica minted them meanwhile
        again = current(store, vault, tenant)
        assert again is not None
        return again


def rotate(store: Store, vault: KeyVault, tenant: str) -> tenants.EabCredentials:
    """New key id and HMAC key for ``tenant`` (the same rotation as ``tenant rotate``: the
    record keeps its creation time and records when it was rotated). Accounts bound with
    the old ones stay bound (they carry the tenant's name); the old key id binds no more."""
    try:
        return tenants.rotate_tenant(store, vault, tenant)
    except tenants.NoSuchTenant:  # the record is gone (tenant deleted): mint afresh
        return ensure(store, vault, tenant)


def secret_name(tenant: str, spec: dict[str, Any]) -> str:
    return str((spec.get("eab") or {}).get("secretName") or f"{tenant}-eab")


def rotation_generation(spec: dict[str, Any]) -> int:
    return int((spec.get("eab") or {}).get("rotationGeneration") or 0)


def minted_for(secret: dict[str, Any] | None) -> int | None:
    """The rotation generation a Secret's credentials were minted for (None: no Secret)."""
    if secret is None:
        return None
    notes = (secret.get("metadata") or {}).get("annotations") or {}
    try:
        return int(notes.get(ROTATION_ANNOTATION, "0"))
    except ValueError:
        return 0


def ours(secret: dict[str, Any], tenant: str) -> bool:
    """Whether the repository wrote ``secret`` for ``tenant`` (its label and annotation)."""
    meta = secret.get("metadata") or {}
    labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
    return all(labels.get(k) == v for k, v in MANAGED_BY.items()) and \
        notes.get(TENANT_ANNOTATION) == tenant


def secret_body(name: str, namespace: str, creds: tenants.EabCredentials, generation: int
                ) -> dict[str, Any]:
    """The Secret (an Opaque one: consumers read its data keys, nothing else). No owner
    reference: a copy applied to another cluster would name an owner that does not exist
    there, and that cluster's garbage collector would delete it."""
    meta: dict[str, Any] = {
        "name": name, "namespace": namespace, "labels": dict(MANAGED_BY),
        "annotations": {TENANT_ANNOTATION: creds.tenant,
                        ROTATION_ANNOTATION: str(generation)},
    }
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta,
        "data": {SECRET_KEY: base64.b64encode(creds.hmac_key.encode()).decode(),
                 KEY_ID_KEY: base64.b64encode(creds.kid.encode()).decode()},
    }
