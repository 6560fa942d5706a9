"""``python -m bench``: run the benchmarks, print a table, write JSON + PNG to bench/results/."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import (
    comparison,
    delegated,
    distribution,
    economy,
    machine,
    procstat,
    profile,
    report,
    rotation,
    stats,
)
from bench import throughput as tp
from bench.stack import (
    CLUSTER_REPOSITORY,
    CLUSTER_TENANT,
    DELEGATION_LOCAL,
    DELEGATION_PEBBLE,
    DOMAIN,
    Repository,
    Stack,
    managed_names,
)

RESULTS = Path(__file__).resolve().parent / "results"
# The ordinary distribution runs spread their CertificateDownloads over this many managed
# certificates, as clusters share a few wildcard or multi-name certificates.
SHARED_CERTS = 10
PHASES = ("throughput", "distribution", "delegated", "economy", "comparison")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run (~2 min)")
    p.add_argument("--large", action="store_true", help="also N=10000 CertificateDownloads")
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--repeats", type=int)
    p.add_argument("--duration", type=float, help="seconds per throughput window")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--delegated", type=int, help="DelegatedCertificates per run")
    p.add_argument("--economy", type=lambda s: [int(x) for x in s.split("x")],
                   help="TENANTSxNAMESPACESxRENEWALS, e.g. 5x10x2")
    p.add_argument("--phases", type=lambda s: s.split(","), default=list(PHASES))
    p.add_argument("--size-budget", type=float, default=360.0,
                   help="seconds a size above 100 may take before it is not repeated")
    p.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL store")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--profile", action="store_true",
                   help="py-spy the operator (largest N, first run) and the repository "
                        "(downloads, 16 clients) and report their hottest functions")
    p.add_argument("--distinct", type=int,
                   help="also N CertificateDownloads that each name a certificate of their "
                        "own (no two share a download; 0: skip)")
    p.add_argument("--compare-sizes", type=lambda s: [int(x) for x in s.split(",")],
                   help="N for the cert-manager comparison (default 300,1000; --quick 20)")
    p.add_argument("--cm-workers", type=int, default=25,
                   help="cert-manager's --concurrent-workers per controller (its own default "
                        "is 5; 25 made it faster here: 9.3 against 6.9 certificates/s at "
                        "N=300, while certdepot's operator handles every object at once)")
    p.add_argument("--cm-qps", type=float, default=10000.0,
                   help="cert-manager's --kube-api-qps and burst (its defaults 20 and 50 "
                        "throttle it; certdepot's operator has no client-side limit)")
    p.add_argument("--publish", action="store_true",
                   help="also copy the results to bench/RESULTS.json, bench/results.png and "
                        "bench/RESULTS.md (the committed copy the README shows)")
    p.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = p.parse_args(argv)
    quick = args.quick
    if args.distinct is None:
        # Part of a default run; a run that names its sizes asks for just those.
        args.distinct = 0 if args.sizes else 10 if quick else 300
    args.sizes = args.sizes or ([20] if quick else [100, 1000])
    args.compare_sizes = args.compare_sizes or ([20] if quick else [300, 1000])
    if args.large:
        args.sizes.append(10000)
    args.repeats = args.repeats or (2 if quick else 3)
    args.duration = args.duration or (1.5 if quick else 3.0)
    args.concurrency = args.concurrency or ([1, 4] if quick else [1, 16, 64])
    args.delegated = args.delegated or (4 if quick else 25)
    args.economy = args.economy or ([2, 2, 1] if quick else [5, 10, 2])
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        p.error(f"unknown phases {sorted(unknown)}; choose from {PHASES}")
    return args


class Bench:
    def __init__(self, args: argparse.Namespace, echo: Callable[[str], None]) -> None:
        self.args = args
        self.echo = echo
        self.stack = Stack(echo)
        self.results: dict[str, Any] = {}
        self.began = time.monotonic()

    def say(self, text: str) -> None:
        self.echo(f"[{time.monotonic() - self.began:6.1f}s] {text}")

    # --- environment --------------------------------------------------------------------

    def setup(self) -> None:
        phases = self.args.phases
        self.say("starting etcd + kube-apiserver, Pebble x2")
        self.stack.start_kube()
        self.pebble_up = self.stack.start_pebble("pebble-upstream")
        self.pebble_plain = self.stack.start_pebble(
            "pebble-plain", nonce_reject=0, always_valid=True, authz_reuse=100)
        self.say("starting the repository (SQLite)")
        self.repo = self.stack.repository(
            "main", certificates=max(SHARED_CERTS, self.args.distinct), upstream=self.pebble_up,
            economy_tenants=self.args.economy[0], renew_check="3s")
        self.wait_managed(self.repo)
        if "throughput" in phases and not self.args.no_postgres:
            self.say("starting PostgreSQL")
            self.stack.start_postgres()

    def wait_managed(self, repo: Repository, timeout: float = 120) -> None:
        """Until the repository has issued every managed certificate (a download works)."""
        names = [[n for n in c["dnsNames"]] for c in repo.config["certificates"]]

        async def check() -> None:
            clients = await tp.make_clients(repo.directory_url, repo.ca_path, 1,
                                            repo.eab[CLUSTER_TENANT])
            deadline = time.monotonic() + timeout
            try:
                for dns in names:
                    while True:
                        try:
                            await clients[0].download_certificate(dns)
                            break
                        except Exception:
                            if time.monotonic() > deadline:
                                raise
                            repo.proc.check_running()  # type: ignore[union-attr]
                            await asyncio.sleep(0.5)
            finally:
                await clients[0].aclose()

        asyncio.run(check())
        self.say(f"repository {repo.name}: {len(names)} managed certificates issued")

    # --- phases -------------------------------------------------------------------------

    def throughput(self) -> None:
        a = self.args
        out: dict[str, Any] = {"download": {}, "plain": {}}
        names = list(managed_names(10).values())
        # Dedicated repositories, so no renewal loop of the operator phases runs meanwhile.
        variants: list[tuple[str, str | None]] = [("sqlite", None)]
        if not a.no_postgres:
            variants.append(("postgresql", self.stack.postgres.new_database("bench")))
        for label, url in variants:
            self.say(f"starting the repository ({label})")
            repo = self.stack.repository(f"tp-{label}", url, certificates=10)
            self.wait_managed(repo)
            out["download"][label] = self._levels("download", label, repo.directory_url,
                                                  repo.ca_path, repo.eab[CLUSTER_TENANT],
                                                  tp.download_session(names), repo.pid,
                                                  a.concurrency)
            if label == "sqlite":
                out["plain"][f"repository-{label}"] = self._levels(
                    "plain", label, repo.directory_url, repo.ca_path,
                    repo.eab[CLUSTER_TENANT], tp.plain_session(f"plain.{DOMAIN}"), repo.pid,
                    self.plain_levels)
            repo.stop()
        pebble = self.pebble_plain
        out["plain"]["pebble"] = self._levels(
            "plain", "pebble", pebble.directory_url, pebble.ca_path, None,
            tp.plain_session(f"plain.{DOMAIN}"), pebble.pebble.pid if pebble.pebble else None,
            self.plain_levels)
        self.results["throughput"] = out

    @property
    def focus(self) -> int:
        """The concurrency the targets name (16), or the nearest one asked for."""
        levels: list[int] = self.args.concurrency
        return min(levels, key=lambda c: abs(c - 16))

    @property
    def plain_levels(self) -> list[int]:
        # Plain issuance is compared with Pebble at the same levels; 64 adds time, not insight.
        return [c for c in self.args.concurrency if c <= 16] or self.args.concurrency

    def _levels(self, kind: str, label: str, url: str, ca: Any, eab: Any, session: Any,
                pid: int | None, concurrency: list[int]) -> list[dict[str, Any]]:
        a = self.args
        levels = []
        for c in concurrency:
            # At 64 clients a window lasts as long as its slowest sessions: two suffice.
            repeats = min(a.repeats, 2) if c >= 64 else a.repeats
            with self._profiling(f"repository-{kind}-{label}-c{c}", pid,
                                 enabled=c == self.focus and label == "sqlite"):
                r = tp.run(tp.measure(url, ca, eab, session, c, a.duration, repeats,
                                           pid))
            self.say(f"{kind:8} {label:10} c={c:3}: {r['sessions_per_s']['median']:7.1f} "
                     f"sessions/s p50 {r['latency_s']['p50'] * 1000:.0f} ms "
                     f"p99 {r['latency_s']['p99'] * 1000:.0f} ms errors {r['error_count']} "
                     f"server CPU {r['server_cpu_ms_per_session']} ms/session")
            levels.append(r)
        return levels

    def _operator_pid(self) -> int | None:
        return self.stack.operator.pid if self.stack.operator else None

    @contextlib.contextmanager
    def _profiling(self, name: str, pid: int | None, enabled: bool) -> Iterator[None]:
        if not (self.args.profile and enabled and pid):
            yield
            return
        out = self.args.out / f"profile-{name}.collapsed"
        with profile.Recorder(pid, out):
            yield
        self.results.setdefault("profiles", {})[name] = {
            "collapsed": out.name, "hottest_certdepot_frames_pct": profile.hot(out)}

    def start_operator(self, **options: float) -> Any:
        self.say("starting the operator")
        self.stack.start_operator(**options)
        with self.stack.kube.api_client() as api:  # type: ignore[union-attr]
            self.stack.cluster_repository(self.repo, CLUSTER_TENANT, CLUSTER_REPOSITORY)
            self.wait_repository_ready(api, CLUSTER_REPOSITORY)

    def wait_repository_ready(self, api: Any, name: str, timeout: float = 60) -> None:
        from kubernetes import client

        from bench.kube import GROUP, VERSION, is_ready

        custom: Any = client.CustomObjectsApi(api)
        deadline = time.monotonic() + timeout
        while True:
            obj = custom.get_cluster_custom_object(GROUP, VERSION,
                                                   "clustercertificaterepositories", name)
            if is_ready(obj):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"ClusterCertificateRepository {name} not Ready: "
                                   f"{obj.get('status')}")
            self.stack.check_alive()
            time.sleep(0.3)

    def distribution(self) -> None:
        a = self.args
        certs = managed_names(SHARED_CERTS)
        out: dict[str, Any] = {}
        with self.stack.kube.api_client() as api:  # type: ignore[union-attr]
            # Warm-up (not recorded): the operator's first account use, imports, caches.
            distribution.run_downloads(self.stack, api, 10, 99, certs, timeout=120)
            for n in a.sizes:
                runs, baselines = [], []
                # Past 100 a run can take minutes: repeat only while this size has used
                # less than --size-budget seconds, so one full run stays bounded.
                spent = 0.0
                for rep in range(a.repeats if n <= 100 else 2 if n <= 1000 else 1):
                    if rep and n > 100 and spent / rep * (rep + 1) > a.size_budget:
                        self.say(f"downloads N={n}: {rep} run(s) took {spent:.0f} s; no "
                                 f"more within --size-budget {a.size_budget:.0f} s")
                        break
                    began = time.monotonic()
                    with self._profiling("operator", self._operator_pid(),
                                         enabled=rep == 0 and n == max(a.sizes)):
                        r = distribution.run_downloads(self.stack, api, n, rep, certs,
                                                       timeout=max(120, n * 0.5))
                    runs.append(r)
                    sample = distribution.sample_secret(api, n)
                    b = distribution.run_baseline(self.stack, api, n, rep, sample)
                    baselines.append(b)
                    spent += time.monotonic() - began
                    self.say(f"downloads N={n:5} rep {rep}: {r['wall_s']:6.1f} s "
                             f"{r['certs_per_s']:6.1f}/s, writes/cert "
                             f"{r['api_requests_per_cert']['writes']}, operator cpu "
                             f"{r['cpu_s'].get('operator')} s rss "
                             f"{r['operator_peak_rss_mb']} MB | baseline "
                             f"{b['certs_per_s']:6.1f}/s")
                out[str(n)] = {"operator": runs, "baseline": baselines,
                               "summary": _summarise_distribution(runs, baselines)}
            if a.distinct:
                out[f"{a.distinct}-distinct"] = self._distinct(api, a.distinct)
        self.results["distribution"] = out

    def _distinct(self, api: Any, n: int) -> dict[str, Any]:
        """N CertificateDownloads, each its own certificate: one download session per
        certificate, however the operator coalesces downloads of the same certificate."""
        runs, baselines = [], []
        for rep in range(min(self.args.repeats, 2)):
            r = distribution.run_downloads(self.stack, api, n, rep, managed_names(n),
                                           timeout=max(120, n * 0.5), tag="uniq")
            runs.append(r)
            b = distribution.run_baseline(self.stack, api, n, rep,
                                          distribution.sample_secret(api, n, "uniq"),
                                          tag="uniqbase")
            baselines.append(b)
            self.say(f"downloads N={n:5} distinct rep {rep}: {r['wall_s']:6.1f} s "
                     f"{r['certs_per_s']:6.1f}/s, writes/cert "
                     f"{r['api_requests_per_cert']['writes']}, operator cpu "
                     f"{r['cpu_s'].get('operator')} s | baseline {b['certs_per_s']:6.1f}/s")
        return {"operator": runs, "baseline": baselines, "distinct": True,
                "summary": _summarise_distribution(runs, baselines)}

    def delegated(self) -> None:
        a = self.args
        out: dict[str, Any] = {}
        with self.stack.kube.api_client() as api:  # type: ignore[union-attr]
            for label, delegation, zone in (("local-ca", DELEGATION_LOCAL, "local"),
                                            ("pebble", DELEGATION_PEBBLE, "pebble")):
                runs = []
                for rep in range(a.repeats):
                    r = delegated.run_delegated(self.stack, api, a.delegated, rep, delegation,
                                                zone, timeout=max(120, a.delegated * 3))
                    self.say(f"delegated {label:8} N={a.delegated} rep {rep}: "
                             f"{r['certs_per_s']:5.1f}/s p50 "
                             f"{r['time_to_ready_s']['p50']:.2f} s p99 "
                             f"{r['time_to_ready_s']['p99']:.2f} s")
                    runs.append(r)
                out[label] = {"runs": runs, "summary": {
                    "certs_per_s": stats.summary([r["certs_per_s"] for r in runs]),
                    "p50_s": stats.summary([r["time_to_ready_s"]["p50"] for r in runs]),
                    "p99_s": stats.summary([r["time_to_ready_s"]["p99"] for r in runs]),
                }}
        self.results["delegated"] = out

    def economy(self) -> None:
        k, m, renewals = self.args.economy
        # ARI is what tells the operator about a renewal: ask it often for this phase.
        self.stack.stop_operator()
        self.start_operator(recheck_seconds=2.0, renewal_info_seconds=1.0)
        assert self.pebble_up.pebble is not None
        with self.stack.kube.api_client() as api:  # type: ignore[union-attr]
            r = economy.run_economy(self.stack, api, self.repo, self.pebble_up.pebble.log_path,
                                    k, m, renewals, timeout=180)
        self.say(f"economy {k} tenants x {m} namespaces: {r['orders_at_pebble_while_serving']}"
                 f" Pebble orders while serving, per renewal {r['orders_per_renewal']}")
        self.results["economy"] = r

    def comparison(self) -> None:
        a = self.args
        # A fresh operator: an hour between rechecks (the earlier phases' objects would
        # otherwise be rechecked in the middle of runs; cert-manager resyncs every 10 h)
        # and no download reuse, so every CertificateDownload costs a download session.
        self.stack.stop_operator()
        self.start_operator(recheck_seconds=3600.0, renewal_info_seconds=3600.0,
                            download_reuse_seconds=0.0)
        self.say("starting the comparison's repository (SQLite) and cert-manager")
        # Distinct certificates: as many as the largest N, and the warm-up's.
        repo = self.stack.repository("cmp", certificates=max(*a.compare_sizes,
                                                              comparison.WARM_UP))
        self.wait_managed(repo, timeout=max(120.0, max(a.compare_sizes) * 0.2))
        self.stack.cluster_repository(repo, CLUSTER_TENANT, comparison.REPOSITORY)
        largest = max(a.compare_sizes)

        def profiling(name: str, on: bool) -> contextlib.AbstractContextManager[None]:
            return self._profiling(name, self._operator_pid(),
                                   enabled=on and name.endswith(f"-{largest}"))

        with self.stack.kube.api_client() as api:  # type: ignore[union-attr]
            self.wait_repository_ready(api, comparison.REPOSITORY)
            comparison.start_cert_manager(
                self.stack, comparison.cert_manager_args(a.cm_workers, a.cm_qps))
            self.results["comparison"] = comparison.run_all(
                self.stack, api, a.compare_sizes, a.repeats, self.say, profiling)

    def _log_tails(self, lines: int = 25) -> str:
        """What the operator and the repository said last: why a phase failed."""
        from certdepot.testenv import procs as testprocs

        out = []
        logs = sorted((self.stack.workdir / "logs").glob("operator-*.log"))[-1:]
        logs += [r.workdir / "repository.log" for r in self.stack.repositories
                 if r.name == "main"]
        for path in logs:
            out.append(f"\n--- last {lines} lines of {path.name} ---\n"
                       + testprocs.tail(path, lines))
        return "".join(out)

    def run(self) -> dict[str, Any]:
        started = dt.datetime.now(dt.UTC)
        load_start = procstat.load_average()
        errors: dict[str, str] = {}
        try:
            self.setup()
            for phase in PHASES:
                if phase not in self.args.phases:
                    continue
                if phase == "distribution" or (phase == "delegated"
                                               and "distribution" not in self.args.phases):
                    self.start_operator()
                try:
                    getattr(self, phase)()
                except Exception as exc:
                    # One phase failing must not lose the others' figures; it is reported.
                    errors[phase] = "".join(traceback.format_exception(exc))[-3000:] + \
                        self._log_tails()
                    self.say(f"{phase} FAILED: {exc}")
        finally:
            self.stack.close(keep=self.args.keep)
            if self.args.keep:
                self.say(f"kept {self.stack.workdir}")
        return {
            "schema": 1,
            "started": started.isoformat(timespec="seconds"),
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "duration_s": round(time.monotonic() - self.began, 1),
            "args": {k: (str(v) if isinstance(v, Path) else v)
                     for k, v in vars(self.args).items()},
            "machine": machine.facts(),
            "load_average": {"start": load_start, "end": procstat.load_average()},
            **self.results,
            "errors": errors,
        }


def _summarise_distribution(runs: list[dict[str, Any]], baselines: list[dict[str, Any]]
                            ) -> dict[str, Any]:
    return {
        "wall_s": stats.summary([r["wall_s"] for r in runs]),
        "certs_per_s": stats.summary([r["certs_per_s"] for r in runs]),
        "writes_per_cert": stats.summary([r["api_requests_per_cert"]["writes"] for r in runs]),
        "writes_per_cert_excluding_leases": stats.summary(
            [r["api_requests_per_cert"]["writes_excluding_leases"] for r in runs]),
        "requests_per_cert": stats.summary([r["api_requests_per_cert"]["total"]
                                            for r in runs]),
        "operator_cpu_s": stats.summary([r["cpu_s"].get("operator", 0.0) for r in runs]),
        "repository_cpu_s": stats.summary([r["cpu_s"].get("repository-main", 0.0)
                                           for r in runs]),
        "operator_peak_rss_mb": stats.summary([r["operator_peak_rss_mb"] for r in runs]),
        "baseline_certs_per_s": stats.summary([b["certs_per_s"] for b in baselines]),
        "baseline_wall_s": stats.summary([b["wall_s"] for b in baselines]),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = Bench(args, print).run()
    results["targets"] = report.targets(results)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"results-{stamp}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    (args.out / "latest.json").write_text(path.read_text())
    print()
    print(report.table(results))
    chart = report.chart(results, args.out / f"results-{stamp}.png")
    print(f"\nresults: {path}" + (f"\nchart:   {chart}" if chart else ""))
    if args.publish:
        here = Path(__file__).resolve().parent
        (here / "RESULTS.json").write_text(path.read_text())
        md = here / "RESULTS.md"
        old = md.read_text() if md.exists() else ""
        # The rotation section comes from its own run (python -m bench.rotation): kept.
        md.write_text(rotation.carry_section(report.markdown(results), old))
        if chart:
            (here / "results.png").write_bytes(chart.read_bytes())
        print(f"published to {here}/RESULTS.json, RESULTS.md, results.png")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
