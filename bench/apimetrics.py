"""kube-apiserver's own request counters (``apiserver_request_total`` on /metrics).

The delta of two scrapes says how many requests of each verb reached the API server in
between, whoever sent them; the benchmark subtracts the requests it sent itself.
"""

from __future__ import annotations

import re
import ssl
from collections import Counter
from typing import Any

import httpx

from certdepot.testenv.kube import KubeEnv

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
_LINE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Key = tuple[str, str, str]  # verb, resource, subresource


def scrape(kube: KubeEnv) -> Counter[Key]:
    """Request counts by (verb, resource, subresource) since the API server started."""
    context = ssl.create_default_context(cafile=str(kube.ca_path))
    context.load_cert_chain(str(kube.admin_cert), str(kube.admin_key))
    response = httpx.get(f"{kube.server}/metrics", verify=context, timeout=30)
    response.raise_for_status()
    counts: Counter[Key] = Counter()
    for line in response.text.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match.group("labels")))
        key = (labels.get("verb", ""), labels.get("resource", ""),
               labels.get("subresource", ""))
        counts[key] += int(float(match.group("value")))
    return counts


def delta(before: Counter[Key], after: Counter[Key],
          own: Counter[Key] | None = None) -> Counter[Key]:
    """``after - before`` minus the requests in ``own`` (the benchmark's own)."""
    out: Counter[Key] = Counter()
    for key in set(before) | set(after):
        out[key] = after[key] - before[key] - (own or Counter())[key]
    return +out


def per_item(counts: Counter[Key], items: int) -> dict[str, Any]:
    """Requests per item by verb, writes in total, and the detail by resource."""
    by_verb: Counter[str] = Counter()
    for (verb, _, _), n in counts.items():
        by_verb[verb] += n
    writes = sum(n for verb, n in by_verb.items() if verb in WRITE_VERBS)
    # kube-apiserver renews its own identity Lease every 10 s; the operator runs
    # --standalone (no Lease), so Lease writes are background, not per certificate.
    leases = sum(n for (verb, res, _), n in counts.items()
                 if verb in WRITE_VERBS and res == "leases")
    detail = {f"{verb} {res}{'/' + sub if sub else ''}": n
              for (verb, res, sub), n in sorted(counts.items()) if n}
    return {
        "by_verb": {verb: round(n / items, 3) for verb, n in sorted(by_verb.items())},
        "writes": round(writes / items, 3),
        "writes_excluding_leases": round((writes - leases) / items, 3),
        "total": round(sum(by_verb.values()) / items, 3),
        "detail_total": detail,
    }
