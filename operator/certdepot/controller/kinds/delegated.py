"""DelegatedCertificate: key and CSR made here, certificate issued via an RFC 9115 delegation.

Forward only, like :mod:`.download`: the step begins and ends in :mod:`.certificate`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from certdepot.acme import crypto, csr_template, fields
from certdepot.acme.timefmt import rfc3339
from certdepot.controller.core import certinfo
from certdepot.controller.core.certinfo import Bundle
from certdepot.controller.core.errors import ReconcileError, SecretConflict
from certdepot.controller.gateway.model import Delegation
from certdepot.controller.kinds import certificate, decisions
from certdepot.controller.kinds.certificate import Start
from certdepot.controller.kinds.decisions import optional_duration, parse_duration
from certdepot.controller.kinds.deps import Deps, Step
from certdepot.controller.kube import secrets

KIND = "DelegatedCertificate"
DEFAULT_STAR_PERIOD = timedelta(days=30)

# Spec fields whose change needs a new certificate (secretTemplate, say, does not).
_ISSUANCE_FIELDS = (
    "delegation",
    "dnsNames",
    "commonName",
    "duration",
    "privateKey",
    "usages",
    "subject",
    "autoRenewal",
)


def issuance_hash(spec: Mapping[str, Any]) -> str:
    relevant = {k: spec.get(k) for k in _ISSUANCE_FIELDS}
    private_key = relevant.get("privateKey")
    if isinstance(private_key, Mapping):
        # Encoding only changes tls.key's format; rotationPolicy only future renewals.
        relevant["privateKey"] = {
            k: v for k, v in private_key.items() if k in ("algorithm", "size")
        }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def find_delegation(available: Sequence[Delegation], wanted: str) -> Delegation:
    for item in available:
        if item.url == wanted or item.url.rstrip("/").rsplit("/", 1)[-1] == wanted:
            return item
    raise ReconcileError(
        "UnknownDelegation", f"delegation {wanted!r} is not among this account's delegations"
    )


def order_extra(spec: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """newOrder extension fields: the requested lifetime, and RFC 8739 auto-renewal."""
    extra: dict[str, Any] = {}
    auto = spec.get("autoRenewal") or {}
    lifetime = auto.get("lifetime") or spec.get("duration")
    if auto.get("enabled"):
        block: dict[str, Any] = {}
        if lifetime:
            block[fields.LIFETIME] = int(parse_duration(str(lifetime)).total_seconds())
        # RFC 8739 requires an end date; without one, renewal runs for DEFAULT_STAR_PERIOD
        # and the operator orders again when it nears.
        end = auto.get("endDate") or rfc3339(now + DEFAULT_STAR_PERIOD)
        block[fields.END_DATE] = end
        extra[fields.AUTO_RENEWAL] = block
    elif lifetime:
        extra["notAfter"] = rfc3339(now + parse_duration(str(lifetime)))
    return extra


def choose_key(spec: Mapping[str, Any], state: secrets.SecretState) -> crypto.PrivateKey:
    pk = spec.get("privateKey") or {}
    algorithm = str(pk.get("algorithm") or "ECDSA")
    size = pk.get("size")
    if (
        pk.get("rotationPolicy") == "Never"
        and state.ours
        and state.bundle is not None
        and certinfo.key_fits(state.bundle.key, algorithm, size)
    ):
        return state.bundle.key
    return crypto.generate_private_key(certinfo.key_kind(algorithm, size))


_SUBJECT_FIELDS = {
    "organizations": "organization",
    "organizationalUnits": "organizationalUnit",
    "countries": "country",
    "provinces": "stateOrProvince",
    "localities": "locality",
}


# cert-manager's usage names -> RFC 9115's, as crypto.build_csr takes them.
_KEY_USAGES = {"digital signature": "digitalSignature", "key encipherment": "keyEncipherment"}
_EXTENDED_KEY_USAGES = {"server auth": "serverAuth", "client auth": "clientAuth"}
# The order the subject's attributes take in the CSR.
_PLAIN_SUBJECT_ORDER = (
    "countries",
    "provinces",
    "localities",
    "organizations",
    "organizationalUnits",
)


def _plain_csr(spec: Mapping[str, Any], key: crypto.PrivateKey, names: list[str]) -> bytes:
    """The CSR when the delegation has no template: the spec's names, subject and usages."""
    given = spec.get("subject") or {}
    subject = {
        _SUBJECT_FIELDS[field]: [str(v) for v in given[field]]
        for field in _PLAIN_SUBJECT_ORDER
        if given.get(field)
    }
    usages = spec.get("usages") or []
    key_usage = [_KEY_USAGES[u] for u in usages if u in _KEY_USAGES]
    extended = [_EXTENDED_KEY_USAGES[u] for u in usages if u in _EXTENDED_KEY_USAGES]
    return crypto.build_csr(
        key,
        names,
        common_name=spec.get("commonName"),
        subject=subject,
        key_usage=key_usage or None,
        extended_key_usage=extended or None,
        signature_hash="sha256",
    )


def build_csr(
    spec: Mapping[str, Any], delegation: Delegation, key: crypto.PrivateKey, names: list[str]
) -> bytes:
    """The CSR the delegation's template asks for, checked against it before it is sent."""
    if not delegation.csr_template:
        return _plain_csr(spec, key, names)
    subject = {
        rfc_name: str(values[0])
        for ours, rfc_name in _SUBJECT_FIELDS.items()
        if (values := (spec.get("subject") or {}).get(ours))
    }
    if spec.get("commonName"):
        subject["commonName"] = str(spec["commonName"])
    try:
        csr = csr_template.build_csr_for_template(delegation.csr_template, key, names, subject)
    except csr_template.TemplateError as exc:
        raise ReconcileError(
            "BadCSR", f"the spec does not fit the delegation's template: {exc}"
        ) from None
    csr_template.check_csr(delegation.csr_template, csr)  # AcmeProblem badCSR: permanent
    return csr


def _spec_changed(
    spec: Mapping[str, Any], status: Mapping[str, Any], state: secrets.SecretState, wanted: str
) -> bool:
    """Does the certificate in the Secret predate a spec change that needs a new one?"""
    if status.get("specHash") and status.get("specHash") != wanted:
        return True
    # Also judged from the Secret itself, so a lost status cannot hide a wrong key type.
    pk = spec.get("privateKey") or {}
    return state.bundle is not None and not certinfo.key_fits(
        state.bundle.key, str(pk.get("algorithm") or "ECDSA"), pk.get("size")
    )


def _half_life(info: certinfo.CertInfo) -> datetime:
    return info.not_before + (info.not_after - info.not_before) / 2


async def reconcile(body: Mapping[str, Any], deps: Deps) -> Step:
    """Bring the Secret in line with the spec; never raises (errors become status)."""
    start = await certificate.begin(body, deps, KIND)
    if isinstance(start, Step):
        return start  # the Secret or the repository could not be read: the status says why
    try:
        return certificate.finish(start, await _bring_in_line(start, deps))
    except Exception as error:
        return certificate.fail(start, deps, error)


async def _bring_in_line(start: Start, deps: Deps) -> Step:
    spec, status, state, now = start.spec, start.status, start.state, start.now
    wanted_hash = issuance_hash(spec)
    decision = decisions.decide(
        dns_names=spec.get("dnsNames") or [],
        renew_before=optional_duration(spec.get("renewBefore")),
        state=state,
        status=status,
        generation=start.meta.get("generation"),
        adopt=bool(spec.get("adoptExistingSecret")),
        now=now,
        recheck=deps.settings.recheck,
        renewal_requested=start.renewal_request is not None,
        spec_needs_new_certificate=_spec_changed(spec, status, state, wanted_hash),
    )
    if decision.conflict:
        raise SecretConflict(decision.message)
    auto = bool((spec.get("autoRenewal") or {}).get("enabled"))
    if (
        auto
        and decision.reason in ("UpToDate", "Expiring")
        and state.info is not None
        and status.get("certificateURL")
        and now >= _half_life(state.info)
    ):
        # STAR: the repository re-issues at half-life; pick the new one up from the stable
        # URL, and order afresh only if it has nothing newer.
        step = await _follow_auto_renewal(start, deps)
        if step is not None:
            return step
    if decision.fetch:
        return await _issue(start, deps, decision.reason, wanted_hash)
    return await certificate.up_to_date(
        start, deps, decision, extra={"specHash": status.get("specHash") or wanted_hash}
    )


async def _follow_auto_renewal(start: Start, deps: Deps) -> Step | None:
    state, now = start.state, start.now
    assert state.bundle is not None and state.info is not None
    pem = await deps.gateway.fetch_certificate(
        start.endpoint, str(start.status["certificateURL"])
    )
    chain, root = crypto.separate_root(crypto.parse_pem_chain(pem))
    leaf = certinfo.cert_info(chain[0])
    if leaf.serial == state.info.serial:
        return None
    if not crypto.public_key_matches(state.bundle.key, chain[0]):
        return None
    renew_at = decisions.renewal_time(None, leaf.not_before, leaf.not_after)
    message = (
        f"auto-renewed certificate {leaf.serial} written to Secret {start.spec['secretName']}"
    )
    new_status = await certificate.install(
        start,
        deps,
        Bundle(chain=chain, root=root or state.bundle.root, key=state.bundle.key),
        leaf=leaf,
        renew_at=renew_at,
        reason="AutoRenewed",
        fetch_reason="AutoRenewed",
        message=message,
    )
    # The repository re-issues at half-life: look again then.
    return Step(new_status, certificate.wait_until(_half_life(leaf), now, deps.settings.recheck))


async def _issue(start: Start, deps: Deps, reason: str, wanted_hash: str) -> Step:
    spec, now = start.spec, start.now
    delegation = find_delegation(
        await deps.gateway.delegations(start.endpoint), str(spec["delegation"])
    )
    key = choose_key(spec, start.state)
    names = list(spec.get("dnsNames") or [])
    csr = build_csr(spec, delegation, key, names)
    issued = await deps.gateway.delegated_order(
        start.endpoint,
        delegation_url=delegation.url,
        dns_names=names,
        csr_der=csr,
        extra=order_extra(spec, now),
    )
    chain, root = crypto.separate_root(crypto.parse_pem_chain(issued.chain_pem))
    if not crypto.public_key_matches(key, chain[0]):
        raise ReconcileError(
            "InvalidCertificate", "the issued certificate is not for our key", permanent=False
        )
    leaf = certinfo.cert_info(chain[0])
    renew_before = optional_duration(spec.get("renewBefore"))
    if renew_before is None:
        renew_before = (leaf.not_after - leaf.not_before) / 3
    renew_at = decisions.renewal_time(renew_before, leaf.not_before, leaf.not_after)
    message = (
        f"certificate {leaf.serial} issued via delegation into Secret {spec['secretName']} "
        f"({reason})"
    )
    new_status = await certificate.install(
        start,
        deps,
        Bundle(chain=chain, root=root, key=key),
        leaf=leaf,
        renew_at=renew_at,
        reason="Issued",
        fetch_reason=reason,
        message=message,
        extra={
            "certificateURL": issued.certificate_url or None,
            "orderURL": issued.order_url or None,
            "delegationURL": delegation.url,
            "privateKeyFingerprint": crypto.public_key_fingerprint(key),
            "specHash": wanted_hash,
        },
    )
    start.memory.last_warning = ""
    return Step(new_status, certificate.wait_until(renew_at, now, deps.settings.recheck))
