"""Managed certificates and tenants declared as Kubernetes resources, merged with the file.

A RepositoryCertificate's spec is a ``certificates`` entry of the YAML file (its name is
the resource's name) plus ``allowedTenants``, the tenants that may download it; a
RepositoryTenant's spec is a ``tenants`` entry plus ``eab`` (where its EAB Secret goes,
and the generation that rotates its key; eabsecrets.py). Pure functions: kubewatch.py
lists the resources, this module decides what of them is in force.

Which wins: the file. A name defined both in the file and as a resource is a conflict:
the file's entry stays in force and the resource gets ``Ready=False`` reason
``Conflict``. A resource that does not validate, or names an issuer or a certificate that
does not exist, gets ``Ready=False`` reason ``Invalid`` and is left out; the others still
apply. The file alone must be valid: a tenant of the file cannot download a certificate
declared only as a resource, except through that resource's ``allowedTenants``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from certdepot.repository import resourcelimits
from certdepot.repository.config import Config, ManagedCertificate, Tenant

GROUP = "certdepot.io"
VERSION = "v1alpha1"
CERTIFICATES = "repositorycertificates"
TENANTS = "repositorytenants"

#: The spec fields that mirror the YAML file's entries (the rest is resource-only).
CERTIFICATE_FIELDS = ("dnsNames", "issuer", "renewBefore", "lifetime", "keyType", "profile",
                      "downloadByProof")
TENANT_FIELDS = ("download", "revoke", "issue", "issuer", "delegations")

ACCEPTED = "Accepted"
CONFLICT = "Conflict"
INVALID = "Invalid"


@dataclass(frozen=True)
class Declared:
    """One resource as listed: its name, spec and metadata.generation."""

    name: str
    spec: Mapping[str, Any]
    generation: int = 0


@dataclass(frozen=True)
class Verdict:
    reason: str  # ACCEPTED, CONFLICT or INVALID
    message: str

    @property
    def accepted(self) -> bool:
        return self.reason == ACCEPTED


@dataclass
class Merged:
    config: Config
    certificates: dict[str, Verdict] = field(default_factory=dict)
    tenants: dict[str, Verdict] = field(default_factory=dict)


def _entry(model: type[BaseModel], item: Declared, fields: Sequence[str]) -> Any:
    data = {k: item.spec[k] for k in fields if k in item.spec}
    try:
        return model.model_validate({**data, "name": item.name})
    except ValidationError as exc:
        raise ValueError("; ".join(
            "spec." + ".".join(str(p) for p in e["loc"]) + ": "
            + e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    except Exception as exc:  # a validator tripping over an odd value: still just invalid
        raise ValueError(f"spec: not usable ({type(exc).__name__})") from None


def _check(candidate: Config, section: str, index: int) -> None:
    """ValueError naming the spec field when ``candidate`` (with the resource's entry at
    ``section[index]``) breaks a reference rule."""
    try:
        candidate.check_references()
    except ValueError as exc:
        raise ValueError(str(exc).replace(f"{section}.{index}.", "spec.")) from None


def _conflict(kind: str, name: str) -> Verdict:
    return Verdict(CONFLICT, f"{kind} {name!r} is also defined in the configuration file, "
                             "which wins; rename the resource or remove the file's entry")


@dataclass(frozen=True)
class _Section:
    """One configuration list that resources add to: its key, its model and fields, the
    word for it in a Conflict message and the spec check that runs before the model."""

    key: str
    kind: str
    model: type[BaseModel]
    fields: Sequence[str]
    check_spec: Callable[[Any], None]


_CERTIFICATES = _Section("certificates", "certificate", ManagedCertificate,
                         CERTIFICATE_FIELDS, resourcelimits.check_certificate)
_TENANTS = _Section("tenants", "tenant", Tenant, TENANT_FIELDS, resourcelimits.check_tenant)


def _add(config: Config, section: _Section, items: Sequence[Declared],
         verdicts: dict[str, Verdict]) -> Config:
    in_file = {entry.name for entry in getattr(config, section.key)}
    for item in sorted(items, key=lambda i: i.name):
        if item.name in in_file:
            verdicts[item.name] = _conflict(section.kind, item.name)
            continue
        try:
            resourcelimits.check_name(item.name)
            section.check_spec(item.spec)
            entries = [*getattr(config, section.key), _entry(section.model, item, section.fields)]
            candidate = config.model_copy(update={section.key: entries})
            _check(candidate, section.key, len(entries) - 1)
        except ValueError as exc:
            verdicts[item.name] = Verdict(INVALID, str(exc))
            continue
        except Exception as exc:  # one odd resource must never stop the others applying
            verdicts[item.name] = Verdict(INVALID, f"spec: not usable ({type(exc).__name__})")
            continue
        config = candidate
        verdicts[item.name] = Verdict(ACCEPTED, "in force")
    return config


def _allowed_tenants(config: Config, certs: Sequence[Declared],
                     verdicts: Mapping[str, Verdict]) -> Config:
    """Add each accepted certificate resource's ``allowedTenants`` to those tenants'
    download grants (file tenants included: the grant is the resource's own statement
    about its own certificate). A tenant not (yet) defined is simply not granted."""
    grants: dict[str, set[str]] = {}
    for item in certs:
        if verdicts.get(item.name, Verdict(INVALID, "")).accepted:
            for tenant in item.spec.get("allowedTenants") or []:
                grants.setdefault(str(tenant), set()).add(item.name)
    if not grants:
        return config
    tenants = [t.model_copy(update={"download": [*t.download, *sorted(
        grants.get(t.name, set()) - set(t.download))]}) for t in config.tenants]
    return config.model_copy(update={"tenants": tenants})


def merge(file: Config, certificates: Sequence[Declared], tenants: Sequence[Declared]
          ) -> Merged:
    """The configuration in force: the file's, plus every resource that neither conflicts
    with it nor fails validation; and a verdict for each resource."""
    merged = Merged(file)
    config = _add(file, _CERTIFICATES, certificates, merged.certificates)
    config = _add(config, _TENANTS, tenants, merged.tenants)
    merged.config = _allowed_tenants(config, certificates, merged.certificates)
    return merged
