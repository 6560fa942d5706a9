"""The benchmark's environment: real processes on 127.0.0.1, composed from certdepot.testenv.

kube-apiserver + etcd, one or two Pebble instances, PostgreSQL, the repository as
``certdepot repository serve`` and the operator as ``certdepot operator run`` — the same
commands a user runs. Nothing here re-implements a component; it only starts them.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import certdepot
from certdepot.acme.csr_template import P256_TLS_SERVER
from certdepot.testenv import procs
from certdepot.testenv.kube import KubeEnv
from certdepot.testenv.pebble import PebbleEnv

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "crds"
CLUSTER_NAMESPACE = "certdepot"
DOMAIN = "bench.example"
CLUSTER_TENANT = "bench-cluster"
CLUSTER_REPOSITORY = "bench-depot"
DELEGATION_LOCAL = "cdn-local"
DELEGATION_PEBBLE = "cdn-pebble"
SHARED_CERT = "shared"


Echo = Callable[[str], None]


def managed_names(count: int) -> dict[str, list[str]]:
    """The managed certificates CertificateDownloads spread over: name -> dnsNames."""
    return {f"c{i}": [f"c{i}.{DOMAIN}", f"www.c{i}.{DOMAIN}"] for i in range(count)}


def child_env() -> dict[str, str]:
    # The source root, so the children import this checkout's certdepot.
    source_root = str(Path(certdepot.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": source_root + (os.pathsep + path if path else "")}


@dataclass
class Repository:
    """One ``certdepot repository serve`` process and the tenants minted for it."""

    name: str
    workdir: Path
    config: dict[str, Any]
    port: int
    proc: procs.ManagedProcess | None = None
    eab: dict[str, tuple[str, str]] = field(default_factory=dict)  # tenant -> (kid, hmac)

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/directory"

    @property
    def ca_path(self) -> Path:
        return self.workdir / "https.crt"

    @property
    def config_path(self) -> Path:
        return self.workdir / "repository.yaml"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def write(self) -> None:
        from certdepot.repository.config import parse_config

        self.workdir.mkdir(parents=True, exist_ok=True)
        parse_config(self.config, f"bench repository {self.name}")
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def create_tenants(self) -> None:
        """EAB credentials for every tenant of the config, minted in-process (as
        ``certdepot repository tenant create`` does, without a process per tenant)."""
        from certdepot.repository.bootstrap import open_store
        from certdepot.repository.config import load_config
        from certdepot.repository.tenants import create_tenant

        config = load_config(self.config_path)
        store, vault = open_store(config)
        try:
            for tenant in config.tenants:
                creds = create_tenant(store, vault, tenant.name)
                self.eab[tenant.name] = (creds.kid, creds.hmac_key)
        finally:
            store.close()

    def start(self) -> None:
        self.proc = procs.start(
            f"repository-{self.name}",
            [sys.executable, "-m", "certdepot.cli", "repository", "serve",
             "--config", str(self.config_path), "--log-level", "warning"],
            log_path=self.workdir / "repository.log", extra_env=child_env())
        self.proc.wait_for_port(self.port, timeout=60)
        self.proc.wait_for_url(self.directory_url, verify=str(self.ca_path), timeout=60)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


def repository_config(workdir: Path, port: int, storage_url: str, *, certificates: int,
                      upstream: PebbleEnv | None, economy_tenants: int,
                      renew_check: str = "60s") -> dict[str, Any]:
    issuers: list[dict[str, Any]] = [
        {"name": "local-ca", "type": "local-ca", "commonName": "certdepot bench CA",
         "lifetime": "90d"},
    ]
    listeners: dict[str, Any] = {
        "https": {"address": f"127.0.0.1:{port}", "selfSigned": True,
                  "selfSignedCertFile": str(workdir / "https.crt")},
    }
    certs = [{"name": name, "dnsNames": names, "issuer": "local-ca"}
             for name, names in managed_names(certificates).items()]
    delegations: list[dict[str, Any]] = [{
        "name": DELEGATION_LOCAL, "csrTemplate": P256_TLS_SERVER,
        "namePatterns": [f"cdn-*.local.{DOMAIN}"], "maxLifetime": "1d", "issuer": "local-ca",
    }]
    tenants: list[dict[str, Any]] = []
    if upstream is not None:
        # Pebble validates http-01 on this port of 127.0.0.1: the repository serves the
        # tokens of its own upstream orders there.
        listeners["http01"] = {"address": f"127.0.0.1:{upstream.http01_port}"}
        common = {"type": "acme", "directory": upstream.directory_url,
                  "caBundle": str(upstream.ca_path), "challenge": {"type": "http-01"}}
        issuers += [
            {"name": "pebble", **common, "profile": "default"},
            {"name": "pebble-short", **common, "profile": "oneday", "maxLifetime": "1d"},
        ]
        certs.append({"name": SHARED_CERT, "dnsNames": [f"{SHARED_CERT}.{DOMAIN}"],
                      "issuer": "pebble"})
        delegations.append({
            "name": DELEGATION_PEBBLE, "csrTemplate": P256_TLS_SERVER,
            "namePatterns": [f"cdn-*.pebble.{DOMAIN}"], "maxLifetime": "1d",
            "issuer": "pebble-short",
        })
        tenants += [{"name": f"econ-{k}", "download": [SHARED_CERT]}
                    for k in range(economy_tenants)]
    tenants.insert(0, {
        "name": CLUSTER_TENANT,
        "download": [c["name"] for c in certs],
        "issue": [f"*.plain.{DOMAIN}"],
        "issuer": "local-ca",
        "delegations": delegations,
    })
    return {
        "baseUrl": f"https://127.0.0.1:{port}",
        "listeners": listeners,
        "storage": {"url": storage_url},
        "keyEncryptionKey": {"file": str(workdir / "kek")},
        "eabRequired": True,
        # How soon a requested renewal starts; each check costs the store a few commits, so
        # only the repository whose renewals are measured looks often.
        "renewCheckInterval": renew_check,
        "issuers": issuers,
        "defaultIssuer": "local-ca",
        "certificates": certs,
        "tenants": tenants,
    }


@dataclass
class Operator:
    proc: procs.ManagedProcess
    metrics_port: int

    @property
    def pid(self) -> int:
        return self.proc.pid


class Stack:
    """Starts what a phase needs and stops all of it at the end (by PID)."""

    def __init__(self, echo: Echo, workdir: Path | None = None) -> None:
        self.echo = echo
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="certdepot-bench-"))
        self.kube: KubeEnv | None = None
        self.pebbles: list[PebbleEnv] = []
        self.postgres: Any = None
        self.repositories: list[Repository] = []
        self.operator: Operator | None = None
        self.cert_manager: Any = None  # certdepot.testenv.certmanager.CertManagerEnv

    # --- parts -----------------------------------------------------------------------

    def start_kube(self) -> KubeEnv:
        self.kube = KubeEnv(self.workdir / "kube")
        self.kube.start()
        names = []
        for path in sorted(CRDS.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    names.append(doc["metadata"]["name"])
        self.kube.kubectl("apply", "--server-side", "-f", str(CRDS))
        self.kube.wait_for_crds(names)
        self.kube.kubectl("create", "namespace", CLUSTER_NAMESPACE)
        return self.kube

    def start_pebble(self, name: str, **options: Any) -> PebbleEnv:
        pebble = PebbleEnv(self.workdir / name, **options)
        pebble.start()
        self.pebbles.append(pebble)
        return pebble

    def start_postgres(self) -> Any:
        from certdepot.testenv.postgres import PostgresEnv

        # Its own temporary directory: PostgreSQL runs as another user, who may not enter
        # this 0700 work directory.
        self.postgres = PostgresEnv()
        self.postgres.start()
        return self.postgres

    def repository(self, name: str, storage_url: str | None = None, *, certificates: int = 10,
                   upstream: PebbleEnv | None = None, economy_tenants: int = 0,
                   renew_check: str = "60s") -> Repository:
        workdir = self.workdir / f"repo-{name}"
        workdir.mkdir(parents=True, exist_ok=True)
        kek = workdir / "kek"
        fd = os.open(kek, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(secrets.token_bytes(32)).decode())
        port = procs.free_port()
        url = storage_url or f"sqlite:///{workdir / 'repository.db'}"
        repo = Repository(name, workdir, repository_config(
            workdir, port, url, certificates=certificates, upstream=upstream,
            economy_tenants=economy_tenants, renew_check=renew_check), port)
        repo.write()
        repo.create_tenants()
        repo.start()
        self.repositories.append(repo)
        return repo

    def start_operator(self, *, recheck_seconds: float = 600.0,
                       renewal_info_seconds: float = 300.0,
                       download_reuse_seconds: float | None = None) -> Operator:
        kube = self._kube()
        health, metrics = procs.free_port(), procs.free_port()
        extra = ([] if download_reuse_seconds is None
                 else ["--download-reuse-seconds", str(download_reuse_seconds)])
        proc = procs.start(
            "operator",
            [sys.executable, "-m", "certdepot.cli", "operator", "run",
             "--kubeconfig", str(kube.kubeconfig), "--standalone",
             "--cluster-resource-namespace", CLUSTER_NAMESPACE,
             "--bind", "127.0.0.1", "--metrics-port", str(metrics),
             "--health-port", str(health),
             "--recheck-seconds", str(recheck_seconds),
             "--renewal-info-seconds", str(renewal_info_seconds),
             "--backoff-base-seconds", "1", "--backoff-cap-seconds", "4", *extra],
            log_path=self.workdir / "logs" / f"operator-{time.time():.0f}.log",
            extra_env=child_env())
        proc.wait_for_url(f"http://127.0.0.1:{health}/readyz", timeout=90)
        self.operator = Operator(proc, metrics)
        return self.operator

    def start_cert_manager(self, extra_args: list[str]) -> Any:
        """cert-manager's controller against the same API server (out of cluster, as the
        operator runs), its CRDs applied first."""
        from certdepot.testenv.certmanager import CertManagerEnv

        workdir = self.workdir / "cert-manager"
        workdir.mkdir(parents=True, exist_ok=True)
        cm = CertManagerEnv(self._kube(), workdir, extra_args=extra_args)
        cm.start()
        self.cert_manager = cm
        return cm

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.proc.stop()
            self.operator = None

    def cluster_repository(self, repo: Repository, tenant: str, name: str,
                           selector: Mapping[str, str] | None = None) -> None:
        """A ClusterCertificateRepository bound to ``tenant`` (its EAB key in a Secret)."""
        kid, hmac = repo.eab[tenant]
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                  "metadata": {"name": f"{name}-eab", "namespace": CLUSTER_NAMESPACE},
                  "data": {"secret": base64.b64encode(hmac.encode()).decode()}}
        resource = {
            "apiVersion": "certdepot.io/v1alpha1", "kind": "ClusterCertificateRepository",
            "metadata": {"name": name},
            "spec": {"url": repo.directory_url,
                     "caBundle": base64.b64encode(repo.ca_path.read_bytes()).decode(),
                     "externalAccountBinding": {"keyID": kid, "keySecretRef": {
                         "name": f"{name}-eab", "key": "secret"}},
                     "namespaceSelector": ({"matchLabels": dict(selector)} if selector
                                           else {})},
        }
        self._kube().kubectl("apply", "-f", "-", input=yaml.safe_dump_all([secret, resource]))

    def _kube(self) -> KubeEnv:
        if self.kube is None:
            raise RuntimeError("the API server is not running")
        return self.kube

    def pids(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if self.operator is not None:
            out["operator"] = self.operator.pid
        for repo in self.repositories:
            if repo.proc is not None:
                out[f"repository-{repo.name}"] = repo.pid
        if self.cert_manager is not None and self.cert_manager.controller is not None:
            out["cert-manager-controller"] = self.cert_manager.controller.pid
        if self.kube is not None and self.kube.apiserver and self.kube.etcd:
            out["kube-apiserver"] = self.kube.apiserver.pid
            out["etcd"] = self.kube.etcd.pid
        return out

    def check_alive(self) -> None:
        for proc in self._processes():
            proc.check_running()

    def _processes(self) -> list[procs.ManagedProcess]:
        found: list[procs.ManagedProcess | None] = [
            self.operator.proc if self.operator else None]
        found += [r.proc for r in self.repositories]
        if self.cert_manager is not None:
            found.append(self.cert_manager.controller)
        if self.kube is not None:
            found += [self.kube.apiserver, self.kube.etcd]
        return [p for p in found if p is not None]

    def close(self, keep: bool = False) -> None:
        self.stop_operator()
        if self.cert_manager is not None:
            self.cert_manager.stop()
            self.cert_manager = None
        for repo in self.repositories:
            repo.stop()
        for pebble in self.pebbles:
            pebble.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if self.kube is not None:
            self.kube.stop()
        if not keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
