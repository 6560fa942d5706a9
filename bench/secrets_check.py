"""Is a Secret the operator wrote a usable TLS Secret for the names asked for?"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from certdepot.acme import crypto


def check_tls_secret(secret: Any, names: Iterable[str]) -> str | None:
    """None when ``secret`` is kubernetes.io/tls with a key matching a leaf for ``names``;
    else what is wrong (never the key material)."""
    if secret.type != "kubernetes.io/tls":
        return f"type {secret.type}"
    data: Mapping[str, str] = secret.data or {}
    if "tls.crt" not in data or "tls.key" not in data:
        return "tls.crt or tls.key missing"
    chain = crypto.parse_pem_chain(base64.b64decode(data["tls.crt"]).decode())
    key = load_pem_private_key(base64.b64decode(data["tls.key"]), password=None)
    if not crypto.public_key_matches(key, chain[0]):  # type: ignore[arg-type]
        return "tls.key does not match tls.crt"
    got = set(crypto.certificate_dns_names(chain[0]))
    if got != set(names):
        return f"certificate names {sorted(got)} != {sorted(names)}"
    return None


def check_all(api: Any, wanted: Mapping[tuple[str, str], list[str]]) -> dict[str, Any]:
    """Read every Secret (one LIST per namespace) and check it; wanted: (ns, name) -> names."""
    from kubernetes import client

    core: Any = client.CoreV1Api(api)
    found: dict[tuple[str, str], Any] = {}
    for ns in sorted({ns for ns, _ in wanted}):
        for secret in core.list_namespaced_secret(ns).items:
            found[(ns, secret.metadata.name)] = secret
    problems: dict[str, str] = {}
    for key, names in wanted.items():
        secret = found.get(key)
        problem = "missing" if secret is None else check_tls_secret(secret, names)
        if problem:
            problems[f"{key[0]}/{key[1]}"] = problem
    return {"checked": len(wanted), "valid": len(wanted) - len(problems),
            "problems": dict(list(problems.items())[:5])}
