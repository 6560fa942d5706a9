"""Writing the Secret: create, or replace with optimistic concurrency; never a partial write."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from certdepot.acme import crypto
from certdepot.controller import secrets
from certdepot.controller.core.errors import ReconcileError
from certdepot.controller.kubeapi import Conflict, KubeApi
from certdepot.controller.secrets import SecretState


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
    owner: secrets.Owner,
    state: SecretState,
    chain: list[Any],
    root: Any,
    key: crypto.PrivateKey,
) -> None:
    """Build the Secret for ``body``'s spec from a chain and key, and write it."""
    spec = body.get("spec") or {}
    secret = secrets.build(
        name=spec["secretName"],
        owner=owner,
        chain=chain,
        root=root,
        key=key,
        key_encoding=str((spec.get("privateKey") or {}).get("encoding") or "PKCS8"),
        template=spec.get("secretTemplate"),
        existing_metadata=state.metadata if state.exists else None,
    )
    await write(kube, secret, state)
