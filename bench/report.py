"""The targets of issues 10 and 21, a plain-text table and a PNG chart from one results
dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _median(summary: dict[str, Any] | None) -> float | None:
    return None if not summary else summary.get("median")


def _level(levels: list[dict[str, Any]], concurrency: int) -> dict[str, Any] | None:
    return next((lv for lv in levels if lv["concurrency"] == concurrency), None)


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    dist = r.get("distribution") or {}
    if "1000" in dist:
        wall = _median(dist["1000"]["summary"]["wall_s"])
        out.append({"target": "1000 CertificateDownloads Ready <= 30 s", "measured": wall,
                    "unit": "s", "met": wall is not None and wall <= 30})
    if dist:
        worst = max(_median(v["summary"].get("writes_per_cert_excluding_leases")
                            or v["summary"]["writes_per_cert"]) or 0 for v in dist.values())
        out.append({"target": "<= 3 API write requests per certificate (without the API "
                              "server's own Lease renewals)", "measured": worst,
                    "unit": "writes/cert", "met": worst <= 3})
    out += _floor_targets(dist, r.get("comparison") or {})
    tp = r.get("throughput") or {}
    for variant in ("sqlite",):
        lv = _level((tp.get("download") or {}).get(variant) or [], 16)
        if lv:
            rate = _median(lv["sessions_per_s"])
            out.append({"target": f">= 300 download sessions/s at 16 clients ({variant})",
                        "measured": rate, "unit": "sessions/s", "met": (rate or 0) >= 300})
            p99 = lv["latency_s"]["p99"] * 1000
            out.append({"target": f"download p99 <= 100 ms at 16 clients ({variant})",
                        "measured": round(p99, 1), "unit": "ms", "met": p99 <= 100})
    pg = _level((tp.get("download") or {}).get("postgresql") or [], 16)
    sq = _level((tp.get("download") or {}).get("sqlite") or [], 16)
    if pg and sq and _median(sq["sessions_per_s"]):
        pct = (_median(pg["sessions_per_s"]) or 0) / (_median(sq["sessions_per_s"]) or 1) * 100
        out.append({"target": "PostgreSQL downloads at 16 clients >= 80% of SQLite's",
                    "measured": round(pct, 1), "unit": "%", "met": pct >= 80})
    plain = tp.get("plain") or {}
    for variant in ("repository-sqlite",):
        if not (plain.get(variant) and plain.get("pebble")):
            continue
        for mine in plain[variant]:
            theirs = _level(plain["pebble"], mine["concurrency"])
            if theirs:
                a, b = _median(mine["sessions_per_s"]), _median(theirs["sessions_per_s"])
                out.append({"target": f"plain issuance >= Pebble's ({variant[11:]}, "
                                      f"c={mine['concurrency']})",
                            "measured": a, "baseline": b, "unit": "sessions/s",
                            "met": (a or 0) >= (b or 0)})
    eco = r.get("economy")
    if eco:
        ok = eco["orders_at_pebble_while_serving"] == 0 and all(
            n == 1 for n in eco["orders_per_renewal"])
        out.append({"target": "exactly one upstream order per renewal",
                    "measured": eco["orders_per_renewal"], "unit": "orders",
                    "met": ok})
    return out


def _floor_targets(dist: dict[str, Any], comp: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 21's ratios: against cert-manager, against the floor, and at N=10,000."""
    out: list[dict[str, Any]] = []
    if "1000" in dist:
        s = dist["1000"]["summary"]
        rate, floor = _median(s["certs_per_s"]), _median(s["baseline_certs_per_s"])
        pct = (rate or 0) / floor * 100 if floor else 0.0
        out.append({"target": ">= 60% of the floor, 1000 CertificateDownloads (10 shared "
                              "certificates)", "measured": round(pct, 1), "unit": "%",
                    "met": pct >= 60})
    if "10000" in dist:
        s = dist["10000"]["summary"]
        rss = max(s["operator_peak_rss_mb"]["values"] or [0])
        out.append({"target": "N=10000: operator peak RSS <= 300 MB", "measured": rss,
                    "unit": "MB", "met": rss <= 300})
        if "1000" in dist:
            big = _median(s["certs_per_s"]) or 0
            small = _median(dist["1000"]["summary"]["certs_per_s"]) or 0
            out.append({"target": "N=10000 rate not below the N=1000 rate",
                        "measured": round(big, 1), "baseline_label": "N=1000",
                        "baseline": small, "unit": "certs/s", "met": big >= small})
    if "1000" in comp:
        ratios = comp["1000"]["summary"]["ratios"]
        x = ratios["downloads_vs_cert_manager_rate"] or 0.0
        writes = ratios["writes_per_cert"]["downloads"]
        out.append({"target": "N=1000 distinct CertificateDownloads/s >= 5x cert-manager's "
                              "certificates/s, <= 3 writes/cert",
                    "measured": x, "unit": f"x ({writes:.2f} writes/cert)",
                    "met": x >= 5 and writes <= 3})
        pct = ratios["pct_of_floor"]["downloads"]
        out.append({"target": ">= 60% of the floor, 1000 distinct CertificateDownloads",
                    "measured": pct, "unit": "%", "met": pct >= 60})
    return out


def comparison_rows(comp: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(e): per N, each system's rate, writes, share of the floor, CPU and peak RSS."""
    from bench.comparison import CONTROLLER, SYSTEMS

    labels = {"cert-manager": "cert-manager Certificates (CA ClusterIssuer)",
              "downloads": "CertificateDownloads (distinct certificates)",
              "delegated": "DelegatedCertificates (local-ca)"}
    rows: list[tuple[str, str, str]] = []
    for n, d in comp.items():
        s, ratios = d["summary"], d["summary"]["ratios"]
        for system in SYSTEMS:
            x = s[system]
            vs = ratios.get(f"{system}_vs_cert_manager_rate")
            proc = CONTROLLER[system]
            verbs = " ".join(f"{v}={c:.2f}" for v, c in x["by_verb_per_cert"].items())
            rows.append((f"(e) N={n} {labels[system]}: certs/s",
                         _fmt(x["certs_per_s"]),
                         (f"{vs:.2f}x cert-manager, " if vs is not None else "")
                         + f"{_fmt(x['pct_of_floor'], 0)} % of the floor"))
            rows.append((f"(e) N={n} {system}: API writes/cert (requests by verb)",
                         _fmt(x["writes_per_cert"], 2), verbs))
            cpu = " ".join(f"{p} {_fmt(c)}" for p, c in x["cpu_s"].items()
                           if (c.get("median") or 0) >= 0.05)
            rows.append((f"(e) N={n} {system}: {proc} CPU s / peak RSS MB",
                         _fmt(x["cpu_s"].get(proc)) + f" / {x['peak_rss_mb'].get(proc, 0):.0f}",
                         "CPU s: " + cpu))
        rows.append((f"(e) N={n} floor (one client writing the Secrets): certs/s",
                     _fmt(s["floor"]["certs_per_s"]), ""))
    return rows


def _fmt(summary: dict[str, Any] | None, digits: int = 1) -> str:
    if not summary or summary.get("median") is None:
        return "-"
    med, lo, hi = summary["median"], summary["min"], summary["max"]
    return f"{med:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]"


def table(r: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = []
    for n, d in (r.get("distribution") or {}).items():
        s = d["summary"]
        n = n.replace("-distinct", " distinct-certificate")
        rows.append((f"(a) N={n} CertificateDownloads: wall s", _fmt(s["wall_s"]),
                     "baseline " + _fmt(s["baseline_wall_s"], 2)))
        rows.append((f"(a) N={n} certificates/s", _fmt(s["certs_per_s"]),
                     "baseline " + _fmt(s["baseline_certs_per_s"])))
        verbs = d["operator"][0]["api_requests_per_cert"]["by_verb"] if d["operator"] else {}
        rows.append((f"(a) N={n} API writes/cert (by verb: run 1)", _fmt(s["writes_per_cert"], 2)
                     + " (" + _fmt(s.get("writes_per_cert_excluding_leases"), 2)
                     + " w/o Leases)",
                     " ".join(f"{v}={c}" for v, c in verbs.items())))
        rows.append((f"(a) N={n} operator CPU s / peak RSS MB",
                     _fmt(s["operator_cpu_s"]) + " / " + _fmt(s["operator_peak_rss_mb"], 0),
                     "repository CPU s " + _fmt(s["repository_cpu_s"])))
    for label, d in (r.get("delegated") or {}).items():
        s = d["summary"]
        n = d["runs"][0]["n"] if d["runs"] else 0
        rows.append((f"(b) delegated {label} N={n}: certs/s", _fmt(s["certs_per_s"]),
                     f"p50 {_fmt(s['p50_s'], 2)} s, p99 {_fmt(s['p99_s'], 2)} s"))
    rows += comparison_rows(r.get("comparison") or {})
    tp = r.get("throughput") or {}
    for kind, groups in tp.items():
        for label, levels in groups.items():
            for lv in levels:
                lat = lv["latency_s"]
                rows.append((f"(c) {kind} {label} c={lv['concurrency']}: sessions/s",
                             _fmt(lv["sessions_per_s"]),
                             f"p50 {lat['p50'] * 1000:.0f} ms p99 {lat['p99'] * 1000:.0f} ms"
                             f" errors {lv['error_count']}"))
    eco = r.get("economy")
    if eco:
        rows.append((f"(d) {eco['tenants']} tenants x {eco['namespaces_per_tenant']} "
                     "namespaces: Pebble orders",
                     f"{eco['orders_at_pebble_while_serving']} serving",
                     f"per renewal {eco['orders_per_renewal']}"))
    for t in r.get("targets") or []:
        base = (f" ({t.get('baseline_label', 'Pebble')} {t['baseline']:.1f})"
                if t.get("baseline") is not None else "")
        m = t["measured"]
        shown = f"{m:.2f}" if isinstance(m, float) else str(m)
        rows.append(("target: " + t["target"], f"{shown} {t['unit']}{base}",
                     "MET" if t["met"] else "MISSED"))
    width = max(len(a) for a, _, _ in rows) if rows else 10
    mid = max(len(b) for _, b, _ in rows) if rows else 10
    header = f"{'figure':{width}}  {'median [min-max]':{mid}}  next to it"
    lines = [header, "-" * (width + mid + 30)]
    lines += [f"{a:{width}}  {b:{mid}}  {c}" for a, b, c in rows]
    load = r.get("load_average") or {}
    lines.append(f"load average at start {load.get('start')}, at end {load.get('end')}")
    return "\n".join(lines)


def chart(r: dict[str, Any], path: Path) -> Path | None:
    """A 2x2 PNG: (a) rate vs baseline, (b) delegated latency, (c) downloads and plain."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no chart")
        return None
    comp = r.get("comparison") or {}
    fig, axes = plt.subplots(2, 3 if comp else 2, figsize=(18 if comp else 12, 8))
    if comp:
        _comparison_panel(axes[0][2], comp)
        axes[1][2].axis("off")
    ax = axes[0][0]
    dist = r.get("distribution") or {}
    if dist:
        ns = list(dist)
        x = range(len(ns))
        op = [_median(dist[n]["summary"]["certs_per_s"]) or 0 for n in ns]
        base = [_median(dist[n]["summary"]["baseline_certs_per_s"]) or 0 for n in ns]
        bars = ax.bar([i - 0.2 for i in x], op, 0.4,
                      label="operator (CertificateDownload -> Secret)")
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
        bars = ax.bar([i + 0.2 for i in x], base, 0.4, label="baseline: client writes Secrets")
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
        ax.set_xticks(list(x), [f"N={n}" for n in ns])
        ax.set_yscale("log")
        ax.set_ylabel("certificates / s (log)")
        ax.legend(fontsize=8, loc="upper left")
    ax.set_title("(a) distribution at scale")
    ax = axes[0][1]
    deleg = r.get("delegated") or {}
    if deleg:
        labels = list(deleg)
        x = range(len(labels))
        p50 = [_median(deleg[k]["summary"]["p50_s"]) or 0 for k in labels]
        p99 = [_median(deleg[k]["summary"]["p99_s"]) or 0 for k in labels]
        ax.bar([i - 0.2 for i in x], p50, 0.4, label="p50")
        ax.bar([i + 0.2 for i in x], p99, 0.4, label="p99")
        ax.set_xticks(list(x), [f"{k}\n{_median(deleg[k]['summary']['certs_per_s']) or 0:.1f}"
                                " certs/s" for k in labels])
        ax.set_ylabel("time to Ready (s)")
        ax.legend(fontsize=8)
    ax.set_title("(b) delegated issuance")
    tp = r.get("throughput") or {}
    for ax, kind, title in ((axes[1][0], "download", "(c) download sessions"),
                            (axes[1][1], "plain", "(c) plain RFC 8555 issuance")):
        for label, levels in (tp.get(kind) or {}).items():
            xs = [lv["concurrency"] for lv in levels]
            ys = [_median(lv["sessions_per_s"]) or 0 for lv in levels]
            ax.plot(xs, ys, marker="o", label=label)
            for xv, yv in zip(xs, ys, strict=True):
                ax.annotate(f"{yv:.0f}", (xv, yv), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)
        if kind == "download" and tp.get(kind):
            ax.axhline(300, linestyle="--", color="grey", label="target 300/s @16")
        ax.set_xscale("log", base=2)
        if kind == "download":
            ax.set_yscale("log")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("sessions / s")
        ax.set_title(title)
        ax.legend(fontsize=8)
    load = r.get("load_average") or {}
    machine = r.get("machine") or {}
    fig.suptitle(f"certdepot benchmarks - {machine.get('cpus')} CPUs "
                 f"({machine.get('cpu_model', '')[:40]}), load at start "
                 f"{(load.get('start') or [0])[0]:.1f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _comparison_panel(ax: Any, comp: dict[str, Any]) -> None:
    """(e): certificates/s of each system and the floor, per N (log scale)."""
    from bench.comparison import SYSTEMS

    ns = list(comp)
    series = [*SYSTEMS, "floor"]
    width = 0.8 / len(series)
    for k, name in enumerate(series):
        ys = [_median(comp[n]["summary"][name]["certs_per_s"]) or 0 for n in ns]
        bars = ax.bar([i + (k - 1.5) * width for i in range(len(ns))], ys, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(list(range(len(ns))), [f"N={n}" for n in ns])
    ax.set_yscale("log")
    ax.set_ylabel("certificates / s (log)")
    ax.set_title("(e) cert-manager (CA issuer) vs certdepot")
    ax.legend(fontsize=8, loc="upper left")


def markdown(r: dict[str, Any]) -> str:
    """bench/RESULTS.md: the table of one run with the facts needed to judge it."""
    m = r.get("machine") or {}
    load = r.get("load_average") or {}
    lines = [
        "# Benchmark results (generated by `python -m bench --publish`)",
        "",
        f"Run {r.get('started')} to {r.get('finished')} ({r.get('duration_s')} s), "
        f"{m.get('cpus')} CPUs ({m.get('cpu_model')}), {m.get('mem_total_mb')} MB, "
        f"Python {m.get('python')}, kernel {m.get('kernel')}. Load average (1, 5, 15 min) at "
        f"start {_load(load.get('start'))}, at end {_load(load.get('end'))}: other work shared "
        "the machine. Arguments: `" + " ".join(
            f"{k}={v}" for k, v in (r.get("args") or {}).items() if k != "out") + "`.",
        "",
        "Figures are medians with [min-max] over the repetitions; latencies are percentiles "
        "over all sessions of all repetitions. Method and discussion: "
        "[docs/performance.md](../docs/performance.md).",
        "",
        "| figure | median [min-max] | next to it |",
        "|---|---|---|",
    ]
    body = table(r).splitlines()[2:-1]
    for row in body:
        parts = [p for p in row.split("  ") if p.strip()]
        while len(parts) < 3:
            parts.append("")
        lines.append("| " + " | ".join(p.strip() for p in parts[:2]) + " | "
                     + " ".join(p.strip() for p in parts[2:]) + " |")
    versions = m.get("packages") or {}
    binaries = m.get("binaries") or {}
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
              "", "Binaries: " + "; ".join(f"{k}: {v}" for k, v in binaries.items()) + "."]
    for phase, info in (r.get("phase_runs") or {}).items():
        why = ("after it failed in the main run (`phase_runs` in RESULTS.json says why)"
               if info.get("main_run_error") else
               "replacing the main run's figures for that phase ("
               + (info.get("why") or "re-run on a quieter machine") + ")")
        lines += ["", f"Phase {phase} comes from a separate run of only the re-run phases, "
                  f"{info.get('started')} to {info.get('finished')} (load average at start "
                  f"{_load((info.get('load_average') or {}).get('start'))}), {why}."]
    if r.get("errors"):
        lines += ["", "Phases that failed in this run: " + ", ".join(r["errors"]) + "."]
    return "\n".join(lines) + "\n"


def _load(values: Any) -> str:
    return ", ".join(f"{v:.1f}" for v in values) if values else "?"
