"""``python -m bench.repocost``: the repository's CPU and SQL statements per ACME session.

For each store (SQLite, PostgreSQL) and each source tree (``--base DIR``: an older checkout's
``operator`` directory, A/B in one run; default only this checkout), a repository is
started under ``bench.sqlcount`` and driven by ``--concurrency`` clients for ``--repeats``
windows of ``--seconds``. Per window: sessions/s, server CPU ms per session (all the
repository's processes), SQL statements and commits per session, p50/p99. Medians are
printed, and the raw windows written as JSON (``--out``).

Rates depend on the machine's load (printed with each line); CPU and statements per
session are the figures to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench import procstat, stats
from bench import throughput as tp
from bench.profile import Recorder, summarise
from bench.stack import CLUSTER_TENANT, DOMAIN, Repository, Stack, managed_names
from certdepot.testenv import procs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    out = [int(p) for p in text.split()]
    return out + [g for c in out for g in _children(c)]


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants (uvicorn's worker processes)."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        with contextlib.suppress(OSError, ValueError):  # a worker that just exited
            total += procstat.cpu_seconds(p)
    return total


def start(repo: Repository, source: Path | None, counts: Path, workers: int) -> None:
    path = [str(source)] if source else []
    path += [str(ROOT / "operator"), str(ROOT)]
    argv = [sys.executable, "-m", "bench.sqlcount", str(counts), "--", "repository",
            "serve", "--config", str(repo.config_path), "--log-level", "warning"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    repo.proc = procs.start(f"repository-{repo.name}", argv,
                            log_path=repo.workdir / "repository.log",
                            extra_env={"PYTHONPATH": os.pathsep.join(path)})
    repo.proc.wait_for_port(repo.port, timeout=60)
    repo.proc.wait_for_url(repo.directory_url, verify=str(repo.ca_path), timeout=60)


def read_counts(pid: int, counts: Path) -> dict[str, int]:
    """The statement counts of ``pid`` and its worker processes (SIGUSR1: write them)."""
    total: dict[str, int] = {}
    for p in [pid, *_children(pid)]:
        out = counts.with_name(f"{counts.stem}-{p}.json")
        if out.exists():
            out.unlink()
        os.kill(p, signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if out.exists():
            for k, v in json.loads(out.read_text()).items():
                total[k] = total.get(k, 0) + v
    return total


async def windows(repo: Repository, counts: Path, kind: str, concurrency: int,
                  seconds: float, repeats: int, profile: Path | None = None
                  ) -> list[dict[str, Any]]:
    """``profile``: py-spy's collapsed stacks of the first window (the first process)."""
    names = list(managed_names(10).values())
    session = (tp.download_session(names) if kind == "download"
               else tp.plain_session(f"plain.{DOMAIN}"))
    clients = await tp.make_clients(repo.directory_url, repo.ca_path, concurrency,
                                    repo.eab[CLUSTER_TENANT])
    out = []
    try:
        deadline = time.monotonic() + 120
        while True:  # until the managed certificates are issued (the repository just started)
            try:
                await asyncio.gather(*(session(c, i) for i, c in enumerate(clients[:4])))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        for i in range(repeats):
            sql0, cpu0 = read_counts(repo.pid, counts), tree_cpu(repo.pid)
            with (Recorder(repo.pid, profile, rate=200) if profile and i == 0
                  else contextlib.nullcontext()):
                latencies, errors, elapsed = await tp._load(clients, session, seconds)
            cpu1, sql1 = tree_cpu(repo.pid), read_counts(repo.pid, counts)
            done = max(len(latencies), 1)
            lat = stats.latency(latencies)
            out.append({
                "sessions_per_s": round(len(latencies) / elapsed, 1),
                "server_cpu_ms": round((cpu1 - cpu0) / done * 1000, 2),
                "sql": {k: round((sql1.get(k, 0) - sql0.get(k, 0)) / done, 2)
                        for k in sorted(set(sql1) | set(sql0))},
                "p50_ms": round(lat["p50"] * 1000) if latencies else None,
                "p99_ms": round(lat["p99"] * 1000) if latencies else None,
                "errors": sum(errors.values()), "first_errors": dict(errors.most_common(2)),
                "load": procstat.load_average()[0],
            })
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return out


def median_line(label: str, runs: list[dict[str, Any]]) -> str:
    def med(key: str) -> float:
        values = [r[key] for r in runs if r[key] is not None]
        return float(stats.summary(values)["median"]) if values else float("nan")
    sql_keys = sorted({k for r in runs for k in r["sql"] if " " not in k})
    sql = {k: stats.summary([r["sql"].get(k, 0) for r in runs])["median"] for k in sql_keys}
    statements = stats.summary([sum(v for k, v in r["sql"].items()
                                    if k != "COMMIT" and " " not in k)
                                for r in runs])["median"]
    return (f"{label:34} {med('sessions_per_s'):6.1f}/s cpu {med('server_cpu_ms'):5.2f} ms "
            f"sql {statements:5.2f} {sql} p50 {med('p50_ms'):.0f} p99 {med('p99_ms'):.0f} ms "
            f"errors {sum(r['errors'] for r in runs)} load {[r['load'] for r in runs]}"
            + "".join(f"\n    {e}" for r in runs for e in r["first_errors"]))


def measure(repo: Repository, a: argparse.Namespace, kind: str, label: str
            ) -> list[dict[str, Any]]:
    spy = a.out.with_name(f"{a.out.stem}-{label.replace(' ', '-')}.collapsed") \
        if a.profile else None
    runs = asyncio.run(windows(repo, repo.workdir / "sqlcount.json", kind, a.concurrency,
                               a.seconds, a.repeats, spy))
    print(median_line(label, runs), flush=True)
    if spy is not None:
        print(summarise(spy, 30), flush=True)
    return runs


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.repocost")
    p.add_argument("--kind", choices=["download", "plain"], action="append")
    p.add_argument("--store", choices=["sqlite", "postgresql"], action="append")
    p.add_argument("--base", type=Path, help="an older checkout's operator/ directory (A/B)")
    p.add_argument("--workers", type=int, action="append", help="repository workers (1)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS / "repocost.json")
    p.add_argument("--rounds", type=int, default=1,
                   help="repositories started per variant, alternating base and new")
    p.add_argument("--profile", action="store_true",
                   help="py-spy on the repository during each first window (next to --out)")
    a = p.parse_args()
    kinds, stores, workers = a.kind or ["download"], a.store or ["sqlite"], a.workers or [1]
    sources: list[tuple[str, Path | None]] = [("new", None)]
    if a.base:
        sources.insert(0, ("base", a.base.resolve()))
    stack = Stack(print)
    results: dict[str, Any] = {}
    try:
        pg = stack.start_postgres() if "postgresql" in stores else None
        variants = itertools.product(stores, range(a.rounds), workers, sources)
        for serial, (store, _round, n, (tag, source)) in enumerate(variants, 1):
            # One repository per (store, round, workers, source): base and new alternate.
            url = pg.new_database(f"rc{serial}") if store == "postgresql" and pg else None
            repo = stack.repository(f"rc{serial}", url, certificates=10)
            repo.stop()
            try:
                start(repo, source, repo.workdir / "sqlcount.json", n)
                for kind in kinds:
                    label = f"{kind} {store} w={n} {tag}"
                    results.setdefault(label, []).extend(measure(repo, a, kind, label))
            finally:
                repo.stop()
    finally:
        stack.close()
    if a.rounds > 1:
        print("medians over all rounds:")
        for label, runs in results.items():
            print(median_line(label, runs), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
