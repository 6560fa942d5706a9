"""Which repository a resource may use: the namespace rules, as pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NAMESPACED_KIND = "CertificateRepository"


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics; an absent or empty selector matches everything."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or ():
        key, op = expr.get("key", ""), expr.get("operator", "")
        values = set(expr.get("values") or ())
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
        if op not in {"In", "NotIn", "Exists", "DoesNotExist"}:
            return False  # unknown operator: deny rather than guess
    return True


def check_access(
    *,
    ref: Mapping[str, Any],
    namespace: str,
    repository: Mapping[str, Any] | None,
    namespace_labels: Mapping[str, str],
) -> str:
    """Return "" when the resource in ``namespace`` may use ``repository``, else why not.

    ``repository`` is the repository object as fetched for ``ref`` (None: not found). A
    CertificateRepository is looked up in the resource's own namespace only, so a reference
    can never reach another namespace's repository; this function re-checks it anyway.
    """
    kind = ref.get("kind") or NAMESPACED_KIND
    name = ref.get("name", "")
    if repository is None:
        where = f" in namespace {namespace}" if kind == NAMESPACED_KIND else ""
        return f"{kind} {name!r} not found{where}"
    if kind == NAMESPACED_KIND:
        if (repository.get("metadata") or {}).get("namespace") != namespace:
            return f"{kind} {name!r} is in another namespace"
        return ""
    selector = (repository.get("spec") or {}).get("namespaceSelector")
    if not selector_matches(selector, namespace_labels):
        return f"{kind} {name!r} does not admit namespace {namespace} (namespaceSelector)"
    return ""
