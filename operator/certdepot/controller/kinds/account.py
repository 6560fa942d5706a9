"""(Cluster)CertificateRepository: keep an ACME account registered and report what is offered."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from certdepot.acme import crypto
from certdepot.controller.core import certinfo
from certdepot.controller.core.errors import ReconcileError, classify
from certdepot.controller.core.status import Condition, set_condition
from certdepot.controller.gateway.model import Endpoint, ExternalAccount
from certdepot.controller.kinds import certificate
from certdepot.controller.kinds.deps import Deps, Step
from certdepot.controller.kube import lookup
from certdepot.controller.kube.secrets import MANAGED_BY, MANAGED_BY_LABEL, OWNER_ANNOTATION


def account_key_secret_name(body: Mapping[str, Any]) -> str:
    spec = body.get("spec") or {}
    ref = spec.get("accountKeySecretRef") or {}
    return str(ref.get("name") or f"{(body.get('metadata') or {}).get('name')}-account-key")


async def ensure_account_key(
    deps: Deps, body: Mapping[str, Any], kind: str
) -> tuple[crypto.PrivateKey, str]:
    """Load the account key from its Secret, creating both on first use (reused on restart)."""
    namespace = lookup.repository_namespace(body, deps.settings)
    name = account_key_secret_name(body)
    secret = await deps.kube.get_secret(namespace, name)
    if secret is not None:
        raw = (secret.get("data") or {}).get(lookup.ACCOUNT_KEY_FIELD)
        if not raw:
            raise ReconcileError(
                "AccountKeyInvalid",
                f"Secret {namespace}/{name} has no {lookup.ACCOUNT_KEY_FIELD}",
            )
        try:
            return crypto.load_private_key(base64.b64decode(raw)), name
        except (ValueError, TypeError):
            raise ReconcileError(
                "AccountKeyInvalid", f"Secret {namespace}/{name} holds no readable key"
            ) from None
    key = crypto.generate_private_key(certinfo.key_kind("ECDSA", 256))
    meta = body.get("metadata") or {}
    await deps.kube.create_secret(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY, "certdepot.io/owner-kind": kind},
                "annotations": {
                    OWNER_ANNOTATION: f"{kind}/{meta.get('namespace') or ''}/{meta.get('name')}"
                },
            },
            "data": {
                lookup.ACCOUNT_KEY_FIELD: base64.b64encode(
                    crypto.private_key_to_pem(key)
                ).decode()
            },
        }
    )
    return key, name


async def external_account(deps: Deps, body: Mapping[str, Any]) -> ExternalAccount | None:
    eab = (body.get("spec") or {}).get("externalAccountBinding")
    if not eab:
        return None
    namespace = lookup.repository_namespace(body, deps.settings)
    ref = eab.get("keySecretRef") or {}
    secret = await deps.kube.get_secret(namespace, str(ref.get("name")))
    if secret is None:
        raise ReconcileError(
            "EABSecretNotFound",
            f"EAB Secret {namespace}/{ref.get('name')} not found",
            permanent=False,
        )
    field = str(ref.get("key") or "secret")
    raw = (secret.get("data") or {}).get(field)
    if not raw:
        raise ReconcileError(
            "EABSecretInvalid",
            f"EAB Secret {namespace}/{ref.get('name')} has no key {field!r}",
            permanent=False,
        )
    try:
        hmac_b64 = base64.b64decode(raw).decode().strip()
    except (ValueError, UnicodeDecodeError):
        raise ReconcileError("EABSecretInvalid", "EAB key is not text") from None
    return ExternalAccount(key_id=str(eab.get("keyID")), hmac_key_b64=hmac_b64)


async def reconcile(body: Mapping[str, Any], kind: str, deps: Deps) -> Step:
    now = deps.clock()
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    generation = meta.get("generation")
    namespace = str(meta.get("namespace") or "")
    try:
        key, secret_name = await ensure_account_key(deps, body, kind)
        eab = await external_account(deps, body)
        endpoint = Endpoint(str(spec.get("url")), key, lookup.ca_bundle(spec))
        info = await deps.gateway.register(endpoint, email=spec.get("email"), eab=eab)
    except Exception as error:
        attempts = int(status.get("failedAttempts") or 0) + 1
        outcome = classify(error, attempts, deps.settings.backoff)
        cond = Condition("Ready", "False", outcome.reason, outcome.message)
        deps.metrics.observe(kind, namespace, str(meta.get("name")), ready=False)
        memory = deps.memory(str(meta.get("uid") or meta.get("name")))
        who = str(meta.get("name"))
        certificate.announce(
            body, deps, outcome, kind=kind, who=who, memory=memory, attempts=attempts
        )
        return Step(
            {
                "observedGeneration": generation,
                "conditions": set_condition(
                    status.get("conditions"), cond, now=now, generation=generation
                ),
                "failedAttempts": attempts,
            },
            outcome.retry_after,
        )
    was_ready = status.get("accountURL") == info.url
    if not was_ready:
        deps.events(body, "Normal", "AccountRegistered", f"ACME account {info.url}")
    deps.memory(str(meta.get("uid") or meta.get("name"))).last_warning = ""
    deps.metrics.observe(kind, namespace, str(meta.get("name")), ready=True)
    cond = Condition(
        "Ready", "True", "AccountRegistered", f"account registered at {spec.get('url')}"
    )
    return Step(
        {
            "observedGeneration": generation,
            "conditions": set_condition(
                status.get("conditions"), cond, now=now, generation=generation
            ),
            "accountURL": info.url,
            "accountKeySecretName": secret_name,
            "lastRegisteredURL": spec.get("url"),
            "directory": info.directory,
            "delegations": info.delegations,
            "failedAttempts": 0,
        },
        deps.settings.recheck.total_seconds(),
    )
