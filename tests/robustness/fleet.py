"""A repository process, an operator process and many CertificateDownloads on the test API
server, with the handles fault tests and the soak need: restart or kill -9 either process,
and a sampler that reads every Secret and judges it.

The repository listens with a certificate from a fixed test CA (not the per-start
self-signed one), so the operator's pinned caBundle stays valid across restarts.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from repository_harness import ROOT, create_tenant, kek_env, write_config
from test_operator_support import CERTDEPOT

from certdepot.acme import crypto
from certdepot.testenv import procs
from certdepot.testenv.kube import KubeEnv
from certdepot.testenv.pki import TestCA

REPO = "fleet"


def names_for(i: int) -> list[str]:
    return [f"c{i:03d}.fleet.test"]


@dataclass
class Verdict:
    samples: int = 0
    secrets_checked: int = 0
    violations: list[str] = field(default_factory=list)
    max_seen: int = 0
    serials: dict[str, set[str]] = field(default_factory=dict)  # Secret -> serials seen


def judge_secret(s: dict[str, Any], now: float) -> str | None:
    """Why this certdepot Secret is wrong right now, or None. Half-written (one of the
    two keys), mismatched key, wrong names and expired certificates are violations."""
    name = s["metadata"]["name"]
    data = s.get("data") or {}
    if "tls.crt" not in data and "tls.key" not in data:
        return None  # created empty by someone else first: not ours to judge
    if not data.get("tls.crt") or not data.get("tls.key"):
        return f"{name}: half-written (keys {sorted(data)})"
    try:
        chain = crypto.parse_pem_chain(base64.b64decode(data["tls.crt"]))
        key = crypto.load_private_key(base64.b64decode(data["tls.key"]))
    except ValueError as exc:
        return f"{name}: unreadable ({type(exc).__name__})"
    leaf = chain[0]
    if not crypto.public_key_matches(key, leaf):
        return f"{name}: key does not match certificate {crypto.serial_hex(leaf)}"
    if leaf.not_valid_after_utc.timestamp() <= now:
        return f"{name}: certificate {crypto.serial_hex(leaf)} expired"
    want = s["metadata"].get("annotations", {}).get("robustness/expect-names")
    if want and sorted(crypto.certificate_dns_names(leaf)) != sorted(want.split(",")):
        return f"{name}: names {crypto.certificate_dns_names(leaf)} != {want}"
    return None


class Sampler:
    """Reads every Secret of a namespace every ``interval`` seconds in a thread."""

    def __init__(self, kube: KubeEnv, namespace: str, interval: float = 1.0) -> None:
        self.kube, self.namespace, self.interval = kube, namespace, interval
        self.verdict = Verdict()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def sample(self) -> list[dict[str, Any]]:
        res = self.kube.kubectl("get", "secrets", "-n", self.namespace, "-o", "json",
                                "-l", "robustness/sampled=yes", check=False)
        if res.returncode != 0:
            return []  # API server away (a fault test): nothing to judge this round
        items: list[dict[str, Any]] = json.loads(res.stdout)["items"]
        return items

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            items = self.sample()
            now = time.time()
            v = self.verdict
            v.samples += 1
            v.secrets_checked += len(items)
            v.max_seen = max(v.max_seen, len(items))
            for s in items:
                why = judge_secret(s, now)
                if why:
                    v.violations.append(f"{time.strftime('%H:%M:%S')} {why}")
                elif (crt := (s.get("data") or {}).get("tls.crt")):
                    leaf = crypto.parse_pem_chain(base64.b64decode(crt))[0]
                    v.serials.setdefault(s["metadata"]["name"], set()).add(
                        crypto.serial_hex(leaf))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


@dataclass
class Fleet:
    kube: KubeEnv
    workdir: Path
    port: int
    config_path: Path
    tls_ca: TestCA
    eab: tuple[str, str]
    namespace: str
    repo: procs.ManagedProcess | None = None
    op: procs.ManagedProcess | None = None
    op_health: int = 0
    op_metrics: int = 0
    repo_starts: int = 0
    op_starts: int = 0
    lease_seconds: int = 15
    logs: list[Path] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # ---- repository --------------------------------------------------------------------
    def start_repo(self) -> None:
        self.repo_starts += 1
        env = {**kek_env(self.workdir), "PYTHONPATH": str(ROOT / "operator")}
        log = self.workdir / f"repository-{self.repo_starts}.log"
        self.logs.append(log)
        self.repo = procs.start(f"repository-{self.repo_starts}",
                                [*CERTDEPOT, "repository", "serve", "--config",
                                 str(self.config_path)], log_path=log, extra_env=env)
        self.repo.wait_for_port(self.port, timeout=60)
        self.repo.wait_for_url(f"{self.base_url}/directory", verify=str(self.tls_ca.cert_path))

    def kill_repo(self) -> None:
        assert self.repo is not None
        os.kill(self.repo.pid, signal.SIGKILL)
        self.repo.popen.wait(timeout=30)
        self.repo.stop()  # forget it (already dead)

    def stop_repo(self) -> None:
        if self.repo is not None:
            self.repo.stop()

    # ---- operator ----------------------------------------------------------------------
    def start_operator(self) -> None:
        self.op_starts += 1
        metrics, self.op_health = procs.free_port(), procs.free_port()
        self.op_metrics = metrics
        log = self.workdir / f"operator-{self.op_starts}.log"
        self.logs.append(log)
        self.op = procs.start(f"operator-{self.op_starts}", [
            *CERTDEPOT, "operator", "run", "--kubeconfig", str(self.kube.kubeconfig),
            "--metrics-port", str(metrics), "--health-port", str(self.op_health),
            "--lease-namespace", "certdepot", "--cluster-resource-namespace", "certdepot",
            "--lease-seconds", str(self.lease_seconds),
            "--recheck-seconds", "5", "--renewal-info-seconds", "2",
            "--backoff-base-seconds", "1", "--backoff-cap-seconds", "5"],
            log_path=log, extra_env={"PYTHONPATH": str(ROOT / "operator")})
        self.op.wait_for_port(self.op_health, timeout=60)
        self.op.wait_for_url(f"http://127.0.0.1:{self.op_health}/readyz")

    def kill_operator(self) -> None:
        assert self.op is not None
        os.kill(self.op.pid, signal.SIGKILL)
        self.op.popen.wait(timeout=30)
        self.op.stop()

    def stop_operator(self) -> None:
        if self.op is not None:
            self.op.stop()

    # ---- resources ---------------------------------------------------------------------
    def apply(self, *docs: dict[str, Any]) -> None:
        self.kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))

    def download(self, i: int, **spec: Any) -> dict[str, Any]:
        names = names_for(i)
        return {
            "apiVersion": "certdepot.io/v1alpha1", "kind": "CertificateDownload",
            "metadata": {"name": f"c{i:03d}", "namespace": self.namespace},
            "spec": {"repositoryRef": {"kind": "ClusterCertificateRepository", "name": REPO},
                     "dnsNames": names, "secretName": f"c{i:03d}-tls",
                     "secretTemplate": {
                         "labels": {"robustness/sampled": "yes"},
                         "annotations": {"robustness/expect-names": ",".join(names)}},
                     **spec},
        }

    def statuses(self) -> list[dict[str, Any]]:
        res = self.kube.kubectl("get", "certificatedownloads", "-n", self.namespace, "-o",
                                "json", check=False)
        if res.returncode != 0:
            return []
        return [i.get("status") or {} for i in json.loads(res.stdout)["items"]]

    def metrics(self) -> str:
        import httpx

        return httpx.get(f"http://127.0.0.1:{self.op_metrics}/metrics", timeout=10).text

    def ready_count(self) -> int:
        res = self.kube.kubectl("get", "certificatedownloads", "-n", self.namespace, "-o",
                                "json", check=False)
        if res.returncode != 0:
            return -1
        n = 0
        for item in json.loads(res.stdout)["items"]:
            for c in (item.get("status") or {}).get("conditions") or []:
                if c.get("type") == "Ready" and c.get("status") == "True":
                    n += 1
        return n


def repository_config(workdir: Path, port: int, tls: tuple[Path, Path], count: int,
                      lifetime: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "baseUrl": f"https://127.0.0.1:{port}",
        "listeners": {"https": {"address": f"127.0.0.1:{port}", "cert": str(tls[0]),
                                "key": str(tls[1])}},
        "storage": {"url": f"sqlite:///{workdir / 'repo.db'}"},
        "keyEncryptionKey": {"env": "CERTDEPOT_KEK"},
        "renewCheckInterval": "1s",
        "issuers": [{"name": "local", "type": "local-ca", "lifetime": lifetime}],
        "certificates": [{"name": f"c{i:03d}", "dnsNames": names_for(i), "issuer": "local"}
                         for i in range(count)],
        "tenants": [{"name": "cluster", "download": [f"c{i:03d}" for i in range(count)]}],
    }
    cfg.update(extra)
    return cfg


@contextmanager
def fleet(kube: KubeEnv, workdir: Path, *, count: int, lifetime: str, namespace: str,
          lease_seconds: int = 15, **extra: Any) -> Iterator[Fleet]:
    port = procs.free_port()
    tls_ca = TestCA.create(workdir, "repo-tls")
    tls = tls_ca.issue(workdir, "repo-serving", "repository", ips=("127.0.0.1",),
                       dns_names=("localhost",))
    (workdir / f"tls-{port}.crt").write_bytes(tls_ca.cert_path.read_bytes())
    path = write_config(workdir, repository_config(workdir, port, tls, count, lifetime,
                                                   **extra))
    eab = create_tenant(workdir, path, "cluster")
    f = Fleet(kube, workdir, port, path, tls_ca, eab, namespace, lease_seconds=lease_seconds)
    for ns, labels in (("certdepot", {}), (namespace, {"robustness": namespace})):
        f.apply({"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": ns, "labels": labels}})
    try:
        f.start_repo()
        f.apply(
            {"apiVersion": "v1", "kind": "Secret",
             "metadata": {"name": f"{REPO}-eab", "namespace": "certdepot"},
             "stringData": {"secret": eab[1]}},
            {"apiVersion": "certdepot.io/v1alpha1", "kind": "ClusterCertificateRepository",
             "metadata": {"name": REPO},
             "spec": {"url": f"{f.base_url}/directory",
                      "caBundle": base64.b64encode(tls_ca.cert_path.read_bytes()).decode(),
                      "externalAccountBinding": {"keyID": eab[0],
                                                 "keySecretRef": {"name": f"{REPO}-eab"}},
                      "namespaceSelector": {"matchLabels": {"robustness": namespace}}}})
        f.start_operator()
        yield f
    finally:
        f.stop_operator()
        f.stop_repo()
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        kube.kubectl("delete", "clustercertificaterepository", REPO, "--wait=false",
                     check=False)


def wait_until(what: str, check: Any, timeout: float, *procs_: procs.ManagedProcess | None,
               interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        for p in procs_:
            if p is not None:
                p.check_running()
        time.sleep(interval)
    tails = "\n".join(f"--- {p.name} ---\n{p.tail(30)}" for p in procs_ if p is not None)
    raise AssertionError(f"timed out waiting for {what} (last {last!r})\n{tails}")
