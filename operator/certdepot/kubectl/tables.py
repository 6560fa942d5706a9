"""The plugin's default output: aligned tables and ``key: value`` blocks for a terminal."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from certdepot.acme.timefmt import parse_rfc3339, rfc3339


def dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False, default=str)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in pairs) + 1
    return "\n".join(f"{(k + ':').ljust(width)} {'' if v is None else v}" for k, v in pairs)


def relative(moment: Any, now: datetime) -> str:
    """``2026-12-06T18:00:00Z (in 29d)``; the value unchanged when it is no time."""
    if not moment:
        return "-"
    try:
        when = (datetime.fromtimestamp(float(moment), UTC) if isinstance(moment, int | float)
                else parse_rfc3339(str(moment)))
    except ValueError:
        return str(moment)
    seconds = (when - now).total_seconds()
    span = _span(abs(seconds))
    text = rfc3339(when)
    return f"{text} ({'in ' + span if seconds >= 0 else span + ' ago'})"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def status_text(r: Mapping[str, Any], now: datetime) -> str:
    where = f"{r['namespace']}/" if r.get("namespace") else ""
    pairs: list[tuple[str, Any]] = [
        ("Name", f"{r['kind']} {where}{r['name']}"),
        ("Ready", f"{r['ready']} ({r.get('reason') or '-'}): {r.get('message') or ''}"),
    ]
    if "secret" in r:
        pairs += _certificate_pairs(r, now)
    if "repository" in r:
        repo = r["repository"]
        pairs += [("URL", repo.get("url")), ("Account", repo.get("accountURL") or "-"),
                  ("Download enabled", repo.get("downloadEnabled")),
                  ("Delegations", repo.get("delegations"))]
    failure = r.get("lastFailure")
    if failure:
        pairs += [("Last failure", f"{relative(failure['time'], now)} {failure.get('reason')}: "
                                   f"{failure.get('message')} "
                                   f"({failure.get('failedAttempts')} attempt(s))")]
    out = [fields(pairs), "", "Conditions:"]
    out.append(_indent(table(["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"], [
        [c.get("type"), c.get("status"), c.get("reason"),
         relative(c.get("lastTransitionTime"), now), c.get("message")]
        for c in r.get("conditions") or []])))
    out += ["", "Events:"]
    events = r.get("events") or []
    out.append(_indent(table(["TYPE", "REASON", "COUNT", "LAST SEEN", "MESSAGE"], [
        [e["type"], e["reason"], e["count"], relative(e["lastSeen"], now), e["message"]]
        for e in events])) if events else "  <none>")
    return "\n".join(out)


def _certificate_pairs(r: Mapping[str, Any], now: datetime) -> list[tuple[str, Any]]:
    secret = r["secret"]
    renewal = r.get("renewal") or {}
    pairs: list[tuple[str, Any]] = [("DNS names", ", ".join(r.get("dnsNames") or []))]
    if not secret.get("exists"):
        pairs.append(("Secret", f"{secret.get('name')} (does not exist)"))
    else:
        cert = secret.get("certificate") or {}
        pairs += [
            ("Secret", secret.get("name")),
            ("  Serial", cert.get("serial")),
            ("  Names", ", ".join(cert.get("dnsNames") or [])),
            ("  Issuer", cert.get("issuer")),
            ("  Not before", relative(cert.get("notBefore"), now)),
            ("  Not after", relative(cert.get("notAfter"), now)),
            ("  Key matches", secret.get("keyMatches")),
        ]
        pairs += [("  Problem", p) for p in secret.get("problems") or []]
    pairs.append(("Renewal time", relative(r.get("renewalTime"), now)))
    if renewal.get("requested"):
        state = "pending" if renewal.get("pending") else "honoured"
        pairs.append(("Renewal requested", f"{renewal['requested']} ({state})"))
    return pairs


def inspect_text(r: Mapping[str, Any], now: datetime) -> str:
    pairs: list[tuple[str, Any]] = [("Secret", r["secret"]), ("Type", r.get("type"))]
    if "keyMatches" in r:
        pairs += [("Key matches", r["keyMatches"]), ("Chain", r.get("chainCheck"))]
    pairs.append(("OK", r["ok"]))
    pairs += [("Problem", p) for p in r["problems"]]
    out = [fields(pairs)]
    for title, certs in (("Chain (tls.crt)", r["chain"]), ("CA (ca.crt)", r["ca"])):
        out += ["", f"{title}:"]
        out.append(_indent(table(["#", "SERIAL", "SUBJECT", "ISSUER", "NOT AFTER", "NAMES"], [
            [i, c["serial"], c["subject"], c["issuer"], relative(c["notAfter"], now),
             ", ".join(c["dnsNames"])] for i, c in enumerate(certs)])) if certs else "  <none>")
    return "\n".join(out)


def inventory_text(entries: Sequence[Mapping[str, Any]], now: datetime,
                   stale: bool = False) -> str:
    if stale and not entries:
        return "no consumer holds a revoked or superseded serial"
    out: list[str] = []
    for e in entries:
        cur = e.get("current") or {}
        head = [("Certificate", e.get("name")), ("DNS names", ", ".join(e.get("dns_names") or [])),
                ("Issuer", e.get("issuer")), ("Current serial", cur.get("serial") or "-"),
                ("Expires", relative(cur.get("not_after"), now))]
        if e.get("last_error"):
            head.append(("Last error", e["last_error"]))
        out += [fields(head), "", "Consumers (stale only):" if stale else "Consumers:"]
        rows = [[c.get("tenant"), c.get("cluster") or "-", c.get("resource") or "-",
                 c.get("serial"), str(c.get("state") or "").upper(),
                 relative(c.get("last_checkin"), now)] for c in e.get("consumers") or []]
        out.append(_indent(table(["TENANT", "CLUSTER", "RESOURCE", "SERIAL", "STATE",
                                  "LAST CHECK-IN"], rows)) if rows else "  <none>")
        out += ["", "Serials:"]
        out.append(_indent(table(["SERIAL", "NOT BEFORE", "NOT AFTER", "REVOKED", "DELIVERIES"], [
            [c.get("serial"), relative(c.get("not_before"), now), relative(c.get("not_after"), now),
             _revoked(c), len(c.get("deliveries") or [])]
            for c in e.get("certificates") or []])))
        out.append("")
    return "\n".join(out).rstrip("\n")


def tenants_text(rows: Sequence[Mapping[str, Any]], now: datetime) -> str:
    """The repository's tenants as ``certdepot repository tenant list`` shows them."""
    if not rows:
        return "the repository has no tenants"
    return table(["NAME", "POLICY", "ACCOUNTS", "EAB KEY ID", "CREATED", "KEY ROTATED"], [
        [r.get("name"), "yes" if r.get("policy") else "NONE",
         f"{r.get('accounts', 0)}" + (f" (+{r['accountsDeactivated']} deactivated)"
                                      if r.get("accountsDeactivated") else ""),
         r.get("eabKeyId") or "- (no credentials)", relative(r.get("created"), now),
         relative(r.get("keyRotated"), now)] for r in rows])


def _revoked(cert: Mapping[str, Any]) -> str:
    if not cert.get("revoked"):
        return "no"
    return f"yes ({(cert.get('revocation') or {}).get('reason') or 'unspecified'})"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
