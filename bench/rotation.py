"""Emergency rotation across a fleet (issue 19 (5)): K clusters x M CertificateDownloads.

K separate API servers (etcd + kube-apiserver each), one operator per cluster (default
settings, ``--cluster-id``), one repository on a local CA with a tenant per cluster, and M
CertificateDownloads of one certificate in each cluster. Measured, from the moment
``certdepot repository rotate web --reason keyCompromise`` starts:

- per Secret, when it first holds the new serial with a key matching it (the old key gone);
- that no Secret is ever seen empty, half-written or with a key not matching its certificate;
- the issuances of the certificate during the rotation (must be exactly 1);
- the ``Rotated`` Events.

Baseline of the same run: the first rollout of the same K x M CertificateDownloads (from
creation to the last Secret), so the figures read as "a rotation takes x times a fresh
rollout". ``python -m bench.rotation --publish`` writes bench/RESULTS-rotation.json and the
rotation section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from certdepot.acme import crypto
from certdepot.testenv import procs
from certdepot.testenv.kube import KubeEnv

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CRDS = ROOT / "crds"
NAMES = ["web.rotation.test", "www.rotation.test"]
MANAGED_LABEL = "app.kubernetes.io/managed-by=certdepot"
SECRET = "web-tls"
#: The repository's default renewalInfo Retry-After: the poll interval of every operator.
ARI_RETRY_AFTER = 30.0
MARK_BEGIN, MARK_END = "<!-- rotation:begin -->", "<!-- rotation:end -->"
Echo = Callable[[str], None]


def _env() -> dict[str, str]:
    return {"PYTHONPATH": str(ROOT / "operator")}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "certdepot.cli", *args]


@dataclass
class Cluster:
    index: int
    kube: KubeEnv
    api: Any = None
    operator: procs.ManagedProcess | None = None

    @property
    def name(self) -> str:
        return f"cluster-{self.index}"


@dataclass
class Observation:
    """What the sampler saw of every Secret: when each first held the new serial."""

    new_serial: str | None = None
    old_key_der: bytes | None = None
    replaced_at: dict[tuple[str, str, str], float] = field(default_factory=dict)
    serials: dict[tuple[str, str, str], str] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    samples: int = 0


def _judge(secret: Any) -> tuple[str | None, bytes | None, str | None]:
    """(serial, key DER, violation) of one certdepot Secret."""
    data = secret.data or {}
    if not data.get("tls.crt") or not data.get("tls.key"):
        return None, None, f"{secret.metadata.namespace}/{secret.metadata.name}: empty or half"
    chain = crypto.parse_pem_chain(base64.b64decode(data["tls.crt"]))
    key = crypto.load_private_key(base64.b64decode(data["tls.key"]))
    if not crypto.public_key_matches(key, chain[0]):
        return None, None, f"{secret.metadata.namespace}/{secret.metadata.name}: key mismatch"
    return crypto.serial_hex(chain[0]), crypto.private_key_to_pkcs8_der(key), None


class Sampler:
    """Lists every certdepot Secret of every cluster every ``interval`` seconds."""

    def __init__(self, clusters: list[Cluster], interval: float = 0.25) -> None:
        self.clusters = clusters
        self.interval = interval
        self.seen = Observation()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rotation-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        from kubernetes import client

        cores = [client.CoreV1Api(c.api) for c in self.clusters]
        while not self._stop.is_set():
            for cluster, core in zip(self.clusters, cores, strict=True):
                for s in core.list_secret_for_all_namespaces(
                        label_selector=MANAGED_LABEL).items:
                    if s.metadata.name == SECRET:
                        self._note(cluster, s, time.monotonic())
            self.seen.samples += 1
            self._stop.wait(self.interval)

    def _note(self, cluster: Cluster, secret: Any, now: float) -> None:
        key = (cluster.name, secret.metadata.namespace, secret.metadata.name)
        serial, key_der, violation = _judge(secret)
        if violation:
            self.seen.violations.append(f"{cluster.name}: {violation}")
            return
        assert serial is not None
        self.seen.serials[key] = serial
        new = self.seen.new_serial
        if new and serial == new and key not in self.seen.replaced_at:
            if key_der == self.seen.old_key_der:
                self.seen.violations.append(f"{key}: new certificate with the old key")
            else:
                self.seen.replaced_at[key] = now


def _wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.2)


def _repository_config(workdir: Path, port: int, k: int) -> dict[str, Any]:
    return {
        "baseUrl": f"https://127.0.0.1:{port}",
        "listeners": {"https": {"address": f"127.0.0.1:{port}", "selfSigned": True,
                                "selfSignedCertFile": str(workdir / "https.crt")}},
        "storage": {"url": f"sqlite:///{workdir / 'repository.db'}"},
        "keyEncryptionKey": {"file": str(workdir / "kek")},
        "issuers": [{"name": "local", "type": "local-ca", "lifetime": "30d"}],
        "certificates": [{"name": "web", "dnsNames": NAMES, "issuer": "local"}],
        "tenants": [{"name": f"cluster-{i}", "download": ["web"]} for i in range(k)],
    }


def _kubectl_apply(kube: KubeEnv, docs: list[dict[str, Any]]) -> None:
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def _cluster_docs(cluster: Cluster, m: int, repo_url: str, ca_pem: bytes,
                  eab: tuple[str, str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "certdepot"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "depot-eab",
                                                            "namespace": "certdepot"},
         "stringData": {"secret": eab[1]}},
        {"apiVersion": "certdepot.io/v1alpha1", "kind": "ClusterCertificateRepository",
         "metadata": {"name": "depot"},
         "spec": {"url": repo_url, "caBundle": base64.b64encode(ca_pem).decode(),
                  "externalAccountBinding": {"keyID": eab[0], "keySecretRef": {
                      "name": "depot-eab", "key": "secret"}},
                  "namespaceSelector": {}}},
    ]
    for j in range(m):
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"app-{j}"}})
    return docs


def _downloads(m: int) -> list[dict[str, Any]]:
    return [{"apiVersion": "certdepot.io/v1alpha1", "kind": "CertificateDownload",
             "metadata": {"name": "web", "namespace": f"app-{j}"},
             "spec": {"repositoryRef": {"name": "depot", "kind": "ClusterCertificateRepository"},
                      "dnsNames": NAMES, "secretName": SECRET}} for j in range(m)]


@contextmanager
def _fleet(workdir: Path, k: int, echo: Echo) -> Iterator[tuple[list[Cluster], Path, int]]:
    with ExitStack() as stack:
        port = procs.free_port()
        repo_dir = workdir / "repository"
        repo_dir.mkdir(parents=True)
        fd = os.open(repo_dir / "kek", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(secrets.token_bytes(32)).decode())
        config = repo_dir / "repository.yaml"
        config.write_text(yaml.safe_dump(_repository_config(repo_dir, port, k)))
        clusters = []
        for i in range(k):
            echo(f"starting API server {i + 1}/{k}")
            kube = KubeEnv(workdir / f"kube-{i}")
            stack.callback(kube.stop)
            kube.start()
            kube.kubectl("apply", "--server-side", "-f", str(CRDS))
            clusters.append(Cluster(i, kube, kube.api_client()))
        for c in clusters:
            c.kube.wait_for_crds(_crd_names())
        repo = procs.start("repository", _cli("repository", "serve", "--config", str(config),
                                              "--log-level", "warning"),
                           log_path=repo_dir / "repository.log", extra_env=_env())
        stack.callback(repo.stop)
        repo.wait_for_port(port, timeout=60)
        repo.wait_for_url(f"https://127.0.0.1:{port}/directory",
                          verify=str(repo_dir / "https.crt"), timeout=60)
        yield clusters, config, port


def _crd_names() -> list[str]:
    names = []
    for path in sorted(CRDS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                names.append(doc["metadata"]["name"])
    return names


def _tenant(config: Path, name: str) -> tuple[str, str]:
    out = subprocess.run(_cli("repository", "tenant", "create", name, "--config", str(config)),
                         capture_output=True, text=True, check=True,
                         env={**os.environ, **_env()}).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return fields["eab-kid"].strip(), fields["eab-hmac"].strip()


def _start_operator(cluster: Cluster, workdir: Path) -> None:
    health = procs.free_port()
    cluster.operator = procs.start(
        f"operator-{cluster.index}",
        _cli("operator", "run", "--kubeconfig", str(cluster.kube.kubeconfig), "--standalone",
             "--cluster-resource-namespace", "certdepot", "--cluster-id", cluster.name,
             "--metrics-port", str(procs.free_port()), "--health-port", str(health),
             "--no-ingress-shim"),
        log_path=workdir / f"operator-{cluster.index}.log", extra_env=_env())
    cluster.operator.wait_for_url(f"http://127.0.0.1:{health}/readyz", timeout=90)


def _issued(config: Path) -> int:
    db = Path(yaml.safe_load(config.read_text())["storage"]["url"].removeprefix("sqlite:///"))
    with sqlite3.connect(db) as conn:
        return int(conn.execute("select count(*) from certificates where managed_name = 'web'"
                                ).fetchone()[0])


def _events(clusters: list[Cluster], reason: str) -> int:
    from kubernetes import client

    return sum(len(client.CoreV1Api(c.api).list_event_for_all_namespaces(
        field_selector=f"reason={reason}").items) for c in clusters)


def run(k: int, m: int, workdir: Path, echo: Echo = print, timeout: float = 180.0
        ) -> dict[str, Any]:
    """One rotation of one certificate held by K x M CertificateDownloads; the figures."""
    with _fleet(workdir, k, echo) as (clusters, config, port):
        ca_pem = (config.parent / "https.crt").read_bytes()
        for c in clusters:
            eab = _tenant(config, c.name)
            _kubectl_apply(c.kube, _cluster_docs(c, m, f"https://127.0.0.1:{port}/directory",
                                                 ca_pem, eab))
            _start_operator(c, workdir)
        try:
            return _measure(clusters, config, k, m, echo, timeout)
        finally:
            for c in clusters:
                if c.operator is not None:
                    c.operator.stop()


def _measure(clusters: list[Cluster], config: Path, k: int, m: int, echo: Echo,
             timeout: float) -> dict[str, Any]:
    with Sampler(clusters) as sampler:
        echo(f"first rollout: {k} x {m} CertificateDownloads")
        start = time.monotonic()
        for c in clusters:
            _kubectl_apply(c.kube, _downloads(m))
        _wait("first rollout", lambda: len(set(sampler.seen.serials.values())) == 1
              and len(sampler.seen.serials) == k * m, timeout)
        rollout = time.monotonic() - start
        old_serial = next(iter(sampler.seen.serials.values()))
        issued_before = _issued(config)
        echo(f"rollout done in {rollout:.1f}s (serial {old_serial}); rotating")
        t0 = time.monotonic()
        out = subprocess.run(_cli("repository", "rotate", "web", "--reason", "keyCompromise",
                                  "--config", str(config)), capture_output=True, text=True,
                             env={**os.environ, **_env()}, check=True, timeout=120).stdout
        rotate_seconds = time.monotonic() - t0
        new_serial = next(line.split()[-1] for line in out.splitlines()
                          if line.strip().startswith("new serial"))
        sampler.seen.new_serial = new_serial
        _wait("every Secret replaced", lambda: len(sampler.seen.replaced_at) == k * m, timeout)
        times = sorted(t - t0 for t in sampler.seen.replaced_at.values())
    orders = _issued(config) - issued_before
    # Events are posted by the operator after the Secret is written: give them a moment.
    deadline = time.monotonic() + 15
    while (rotated := _events(clusters, "Rotated")) < k * m and time.monotonic() < deadline:
        time.sleep(0.5)
    echo(f"all {k * m} replaced: p50 {statistics.median(times):.1f}s max {times[-1]:.1f}s, "
         f"{orders} order(s), {rotated} Rotated events")
    return {"clusters": k, "downloads_per_cluster": m, "secrets": k * m,
            "rollout_seconds": rollout, "rotate_command_seconds": rotate_seconds,
            "replaced_p50_seconds": statistics.median(times), "replaced_max_seconds": times[-1],
            "replaced_seconds": times, "upstream_orders": orders,
            "rotated_events": rotated, "violations": sampler.seen.violations,
            "samples": sampler.seen.samples, "old_serial": old_serial,
            "new_serial": new_serial}


def markdown(r: dict[str, Any]) -> str:
    base = r["rollout_seconds"]
    rows = [
        ("rotation: every Secret on the new serial, p50 s",
         f"{r['replaced_p50_seconds']:.1f}", f"{r['replaced_p50_seconds'] / base:.2f}x rollout"),
        ("rotation: every Secret on the new serial, max s",
         f"{r['replaced_max_seconds']:.1f}", f"{r['replaced_max_seconds'] / base:.2f}x rollout, "
         f"{r['replaced_max_seconds'] / ARI_RETRY_AFTER:.2f}x ariRetryAfter"),
        ("rotation: `rotate` command s", f"{r['rotate_command_seconds']:.1f}", ""),
        ("baseline: first rollout of the same CertificateDownloads s", f"{base:.1f}", "1.00x"),
        ("rotation: upstream orders", str(r["upstream_orders"]), "target exactly 1"),
        ("rotation: Secrets seen empty/half/mismatched", str(len(r["violations"])),
         f"over {r['samples']} samples"),
        ("rotation: Rotated Events", str(r["rotated_events"]), f"of {r['secrets']} Secrets"),
    ]
    met = r["replaced_max_seconds"] < 60 and r["upstream_orders"] == 1 and not r["violations"]
    lines = [MARK_BEGIN, "", f"## Emergency rotation ({r['clusters']} clusters x "
             f"{r['downloads_per_cluster']} CertificateDownloads, default settings)", "",
             f"Run {r['when']} by `python -m bench.rotation --publish` (bench/rotation.py); "
             "times from the start of `certdepot repository rotate`.", "",
             "| figure | value | next to it |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += [f"| target: all replaced < 60 s, 1 order, never empty | "
              f"{r['replaced_max_seconds']:.1f} s | {'MET' if met else 'MISSED'} |", "",
              MARK_END]
    return "\n".join(lines) + "\n"


def publish(r: dict[str, Any]) -> None:
    (HERE / "RESULTS-rotation.json").write_text(json.dumps(r, indent=2))
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else ""
    text = replace_section(text, markdown(r))
    path.write_text(text)


def replace_section(text: str, section: str) -> str:
    """``text`` with its rotation section replaced by ``section`` (appended if absent)."""
    if MARK_BEGIN in text and MARK_END in text:
        before, rest = text.split(MARK_BEGIN, 1)
        return before + section + rest.split(MARK_END, 1)[1].lstrip("\n")
    return text.rstrip("\n") + "\n\n" + section


def carry_section(new: str, old: str) -> str:
    """``new`` (python -m bench --publish rewrites RESULTS.md) with the rotation section
    ``old`` had, which only python -m bench.rotation measures."""
    if MARK_BEGIN not in old or MARK_END not in old:
        return new
    section = MARK_BEGIN + old.split(MARK_BEGIN, 1)[1].split(MARK_END, 1)[0] + MARK_END + "\n"
    return replace_section(new, section)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.rotation", description=__doc__)
    p.add_argument("--clusters", type=int, default=3)
    p.add_argument("--downloads", type=int, default=20, help="CertificateDownloads per cluster")
    p.add_argument("--publish", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="certdepot-rotation-") as tmp:
        result = run(args.clusters, args.downloads, Path(tmp))
    result["when"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    print(markdown(result))
    if args.publish:
        publish(result)
    return 0 if result["upstream_orders"] == 1 and not result["violations"] else 1


if __name__ == "__main__":
    sys.exit(main())
