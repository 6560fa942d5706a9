"""The demo, step by step: real processes on 127.0.0.1, everything in one temporary directory.

provision -> etcd + kube-apiserver -> (Pebble) -> repository config + tenant -> repository
-> CRDs -> EAB Secret -> operator -> examples/ -> wait until Ready -> while everything runs,
a certificate and a tenant declared as resources (examples/central-repository/) -> summary
-> a TLS handshake with every Secret -> clean up.

Only existing pieces are composed: certdepot.testenv starts and stops the processes, and
the repository and the operator run as the same ``certdepot`` commands a user runs.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

import certdepot
from certdepot.demo import manifests, repoconfig, summary, tlsproof
from certdepot.demo.progress import kube_getter, wait_ready
from certdepot.demo.steps import Echo, StepFailed, Steps
from certdepot.testenv import procs
from certdepot.testenv import provision as prov
from certdepot.testenv.kube import KubeEnv
from certdepot.testenv.pebble import PebbleEnv

CLUSTER_NAMESPACE = "certdepot"
CRDS_DIR = Path(__file__).resolve().parents[3] / "crds"
# Generous: on a busy machine Python processes take many seconds just to import. A process
# that dies is reported at once anyway; this only bounds one that hangs.
START_TIMEOUT = 120.0
_DNS_FIRST = re.compile(r"^\*\.")


@dataclass
class Options:
    upstream: str = "local-ca"  # or "pebble"
    timeout: float = 180.0
    examples: Path = field(default_factory=manifests.examples_dir)
    crds: Path = CRDS_DIR
    workdir: Path | None = None


@dataclass
class Outcome:
    rows: list[summary.Row]
    handshakes: list[tlsproof.Handshake]
    seconds: float


class Demo:
    """One demo environment. :meth:`run` builds and proves it, :meth:`close` removes it."""

    def __init__(self, options: Options, echo: Echo) -> None:
        self.options = options
        self.echo = echo
        self.workdir = options.workdir or Path(tempfile.mkdtemp(prefix="certdepot-demo-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kube: KubeEnv | None = None
        self.pebble: PebbleEnv | None = None
        self.repository: procs.ManagedProcess | None = None
        self.operator: procs.ManagedProcess | None = None
        self.config_path = self.workdir / "repository.yaml"
        self.trust_root: bytes | None = None
        pebble = options.upstream == "pebble"
        self.central = manifests.central_dir(options.examples)
        central = self.central.is_dir()
        self.steps = Steps((11 if pebble else 10) + central, echo)

    # --- the whole run ------------------------------------------------------------------

    def run(self) -> Outcome:
        step = self.steps.step
        pebble = self.options.upstream == "pebble"
        with step("provision binaries (cached after the first run)"):
            self._provision(pebble)
        with step("start etcd + kube-apiserver", self._kube_logs):
            self._start_kube()
        if pebble:
            with step("start Pebble (the upstream ACME CA) + challtestsrv", self._pebble_logs):
                self._start_pebble()
        with step("write the repository configuration and create the tenant (EAB)"):
            port = procs.free_port()
            eab_kid, eab_hmac = self._configure_repository(port)
        with step("start the repository", self._repository_logs):
            self._start_repository(port)
        with step("apply the CRDs and the example namespaces", self._kube_logs):
            docs = manifests.load(self.options.examples)
            self._apply_crds(docs)
        with step("store the tenant's EAB key in the cluster"):
            self._store_eab(docs, eab_hmac)
        with step("start the operator", self._operator_logs):
            self._start_operator()
        with step(f"apply {self.options.examples}", self._kube_logs):
            repo = manifests.Repository(
                directory_url=f"https://127.0.0.1:{port}/directory",
                ca_pem=repoconfig.tls_cert_path(self.workdir).read_bytes(),
                eab_kid=eab_kid,
                issuer=repoconfig.managed_issuer(self.pebble is not None),
            )
            applied = manifests.customise(docs, repo)
            self._apply(applied)
            items = manifests.expected(applied)
        with step("wait until every resource is Ready", self._all_logs, heartbeat=None):
            objects = self._wait(items)
        if self.central.is_dir():
            with step(f"while it runs: declare a certificate and grant it ({self.central})",
                      self._all_logs, heartbeat=None):
                declared, consumers = self._declare(repo)
                objects = {**objects, **self._wait(declared)}
                self._show_central()
                self._apply(consumers)
                central = manifests.expected(consumers)
                objects = {**objects, **self._wait(central)}
                items = [*items, *declared, *central]
        with step("prove every Secret with a verifying TLS handshake", self._all_logs):
            rows, handshakes = self._prove(items, objects)
        self.echo("")
        self.echo(summary.render(rows))
        self.echo("")
        for hs in handshakes:
            self.echo(f"  TLS ok  {hs.server_name:20} {hs.tls_version}  serial {hs.serial}  "
                      f"chain verified to {hs.root}")
        return Outcome(rows, handshakes, self.steps.elapsed())

    # --- steps ------------------------------------------------------------------------------

    def _provision(self, pebble: bool) -> None:
        names = ["etcd", "kube-apiserver", "kubectl"]
        if pebble:
            names += ["pebble", "pebble-challtestsrv"]
        results = prov.provision(names, log=lambda line: self.echo(f"        {line}"))
        for name, res in results.items():
            if res.path is None or res.source in ("missing", "stale"):
                raise prov.ProvisionError(f"{name} could not be provisioned ({res.source})")

    def _start_kube(self) -> None:
        self.kube = KubeEnv(self.workdir / "kube", start_timeout=START_TIMEOUT)
        self.kube.start()
        assert self.kube.etcd and self.kube.apiserver
        self._started(self.kube.etcd)
        self._started(self.kube.apiserver)

    def _start_pebble(self) -> None:
        self.pebble = PebbleEnv(self.workdir / "pebble", start_timeout=START_TIMEOUT)
        self.pebble.start()
        assert self.pebble.pebble and self.pebble.challtestsrv
        self._started(self.pebble.challtestsrv)
        self._started(self.pebble.pebble)
        self.trust_root = self.pebble.roots_pem().encode()

    def _configure_repository(self, port: int) -> tuple[str, str]:
        upstream = None
        if self.pebble is not None:
            upstream = repoconfig.Upstream(
                directory_url=self.pebble.directory_url,
                ca_bundle=self.pebble.ca_path,
                http01_port=self.pebble.http01_port,
                profile="default",
                short_profile="oneday",
                short_lifetime_seconds=PebbleEnv.ONEDAY_SECONDS,
            )
        self._write_kek()
        kubeconfig = self._kube().kubeconfig if self.central.is_dir() else None
        config = repoconfig.build(self.workdir, port, upstream, kubeconfig)
        self.config_path = repoconfig.write(self.workdir, config)
        self.echo(f"        {self.config_path}")
        out = self._certdepot("repository", "tenant", "create", "--config",
                              str(self.config_path), repoconfig.TENANT)
        kid = re.search(r"eab-kid:\s+(\S+)", out)
        hmac = re.search(r"eab-hmac:\s+(\S+)", out)
        if not kid or not hmac:
            raise RuntimeError("`certdepot repository tenant create` printed no EAB "
                               "credentials")
        self.echo(f"        tenant {repoconfig.TENANT}: eab-kid {kid.group(1)} "
                  "(the HMAC key goes straight into a Secret)")
        return kid.group(1), hmac.group(1)

    def _declare(self, repo: manifests.Repository
                 ) -> tuple[list[manifests.Expected], list[dict[str, Any]]]:
        """Apply the RepositoryCertificate and RepositoryTenant of
        examples/central-repository to the running repository (it obtains the certificate
        and grants it, no restart); returns them and the consumer-side documents."""
        docs = manifests.customise(manifests.load(self.central), repo)
        declared = [d for d in docs if d.get("kind") in manifests.CENTRAL_KINDS]
        self._apply(declared)
        return (manifests.expected(declared),
                [d for d in docs if d.get("kind") not in manifests.CENTRAL_KINDS])

    def _show_central(self) -> None:
        out = self._kube().kubectl("get", "repositorycertificates,repositorytenants",
                                   "-n", repoconfig.NAMESPACE).stdout
        for line in out.splitlines():
            self.echo(f"        {line}")

    def _start_repository(self, port: int) -> None:
        self.repository = procs.start(
            "repository",
            [sys.executable, "-m", "certdepot.cli", "repository", "serve",
             "--config", str(self.config_path)],
            log_path=self.workdir / "logs" / "repository.log", extra_env=self._child_env())
        self._started(self.repository)
        self.repository.wait_for_port(port, timeout=START_TIMEOUT)
        self.repository.wait_for_url(f"https://127.0.0.1:{port}/directory",
                                     verify=str(repoconfig.tls_cert_path(self.workdir)),
                                     timeout=START_TIMEOUT)

    def _apply_crds(self, docs: Sequence[Mapping[str, Any]]) -> None:
        kube = self._kube()
        names = []
        for path in sorted(self.options.crds.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    names.append(doc["metadata"]["name"])
        kube.kubectl("apply", "--server-side", "-f", str(self.options.crds))
        kube.wait_for_crds(names)
        namespaces = [d for d in docs if d.get("kind") == "Namespace"]
        if not any(d["metadata"]["name"] == CLUSTER_NAMESPACE for d in namespaces):
            namespaces.append({"apiVersion": "v1", "kind": "Namespace",
                               "metadata": {"name": CLUSTER_NAMESPACE}})
        self._apply(namespaces)

    def _store_eab(self, docs: Sequence[Mapping[str, Any]], hmac: str) -> None:
        for namespace, name, key in manifests.eab_secret_refs(docs, CLUSTER_NAMESPACE):
            secret = {
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace},
                "data": {key: base64.b64encode(hmac.encode()).decode()},
            }
            # Through stdin, so the key is never on a command line or in a file.
            self._kube().kubectl("apply", "-f", "-", input=yaml.safe_dump(secret))
            self.echo(f"        Secret {namespace}/{name} (key {key!r})")

    def _start_operator(self) -> None:
        kube = self._kube()
        health = procs.free_port()
        self.operator = procs.start(
            "operator",
            [sys.executable, "-m", "certdepot.cli", "operator", "run",
             "--kubeconfig", str(kube.kubeconfig), "--standalone",
             "--cluster-resource-namespace", CLUSTER_NAMESPACE,
             "--bind", "127.0.0.1", "--metrics-port", str(procs.free_port()),
             "--health-port", str(health),
             # A demo wants quick retries while the repository obtains its certificates.
             "--backoff-base-seconds", "1", "--backoff-cap-seconds", "4"],
            log_path=self.workdir / "logs" / "operator.log", extra_env=self._child_env())
        self._started(self.operator)
        self.operator.wait_for_url(f"http://127.0.0.1:{health}/readyz", timeout=START_TIMEOUT)

    def _apply(self, docs: Sequence[Mapping[str, Any]]) -> None:
        stream = yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False)
        out = self._kube().kubectl("apply", "-f", "-", input=stream).stdout
        for line in out.splitlines():
            self.echo(f"        {line}")

    def _wait(self, items: Sequence[manifests.Expected]) -> dict[str, Mapping[str, Any]]:
        self.echo("        (each change as it happens: + Ready, . not yet)")
        with self._api_client() as api:
            return wait_ready(items, kube_getter(api), timeout=self.options.timeout,
                              echo=self.echo, check_alive=self._check_alive)

    def _prove(self, items: Sequence[manifests.Expected],
               objects: Mapping[str, Mapping[str, Any]]
               ) -> tuple[list[summary.Row], list[tlsproof.Handshake]]:
        from kubernetes import client

        rows: list[summary.Row] = []
        handshakes: list[tlsproof.Handshake] = []
        with self._api_client() as api:
            core = client.CoreV1Api(api)
            for item in items:
                obj = objects[item.label]
                if item.secret_name is None or item.namespace is None:
                    # A repository: its Secret is the account key, no certificate to prove.
                    rows.append(summary.row(item, obj, namespace=CLUSTER_NAMESPACE))
                    continue
                secret = core.read_namespaced_secret(item.secret_name, item.namespace)
                if secret.type != "kubernetes.io/tls":
                    raise RuntimeError(f"Secret {item.namespace}/{item.secret_name} has type "
                                       f"{secret.type}, not kubernetes.io/tls")
                data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
                leaf = x509.load_pem_x509_certificate(data["tls.crt"])
                issuer = _common_name(leaf.issuer) or leaf.issuer.rfc4514_string()
                root = self._trust_anchor()
                ca_crt = data.get("ca.crt")
                if ca_crt and x509.load_pem_x509_certificate(ca_crt) != \
                        x509.load_pem_x509_certificate(root):
                    raise RuntimeError(f"Secret {item.namespace}/{item.secret_name}: ca.crt "
                                       "is not the repository's root")
                name = _DNS_FIRST.sub("www.", item.dns_names[0])
                hs = tlsproof.prove(data["tls.crt"], data["tls.key"], root, name,
                                    scratch=self.workdir)
                status_serial = (obj.get("status") or {}).get("serial")
                if status_serial and status_serial != hs.serial:
                    raise RuntimeError(f"{item.label}: status says serial {status_serial}, "
                                       f"the Secret serves {hs.serial}")
                handshakes.append(hs)
                rows.append(summary.row(item, obj, issuer))
        return rows, handshakes

    def _trust_anchor(self) -> bytes:
        """The root a client of these Secrets trusts: Pebble's, or the repository's own CA."""
        if self.trust_root is None:
            from certdepot.repository.bootstrap import open_store
            from certdepot.repository.config import LocalCaIssuer, load_config
            from certdepot.repository.issuers.local_ca import LocalCa

            config = load_config(self.config_path)
            issuer = next(i for i in config.issuers if isinstance(i, LocalCaIssuer))
            store, vault = open_store(config)
            try:
                self.trust_root = LocalCa(issuer, store, vault).root_pem().encode()
            finally:
                store.close()
        return self.trust_root

    # --- processes -------------------------------------------------------------------------

    def processes(self) -> list[procs.ManagedProcess]:
        found = [self.operator, self.repository]
        if self.pebble is not None:
            found += [self.pebble.pebble, self.pebble.challtestsrv]
        if self.kube is not None:
            found += [self.kube.apiserver, self.kube.etcd]
        return [p for p in found if p is not None]

    def close(self) -> None:
        """Stop every process and remove the working directory.

        The clients (operator, repository, Pebble) stop side by side, the control plane
        after them: the operator's graceful shutdown takes seconds and nothing needs the
        others to wait for it.
        """
        stoppers = [threading.Thread(target=stop, name=f"stop-{name}") for name, stop in (
            ("operator", self.operator.stop if self.operator else None),
            ("repository", self.repository.stop if self.repository else None),
            ("pebble", self.pebble.stop if self.pebble else None),
        ) if stop is not None]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        self.operator = self.repository = None
        if self.kube is not None:
            self.kube.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _started(self, proc: procs.ManagedProcess) -> None:
        self.echo(f"        {proc.name}: pid {proc.pid}, log {proc.log_path}")

    def _check_alive(self) -> None:
        for proc in self.processes():
            proc.check_running()

    def _child_env(self) -> dict[str, str]:
        source_root = str(Path(certdepot.__file__).resolve().parents[1])
        path = os.environ.get("PYTHONPATH")
        # Their temporary files (the kubernetes client's copies of kubeconfig keys, the
        # repository's TLS key) stay inside the demo's directory even if they are killed.
        tmp = self.workdir / "tmp"
        tmp.mkdir(mode=0o700, exist_ok=True)
        return {"PYTHONPATH": source_root + (os.pathsep + path if path else ""),
                "TMPDIR": str(tmp)}

    def _write_kek(self) -> None:
        path = repoconfig.kek_path(self.workdir)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(secrets.token_bytes(32)).decode())

    def _certdepot(self, *args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "certdepot.cli", *args],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, **self._child_env()})
        if proc.returncode != 0:
            raise RuntimeError(f"`certdepot {' '.join(args[:3])}` exited with "
                               f"{proc.returncode}:\n{proc.stderr.strip()}")
        return proc.stdout

    def _api_client(self) -> Any:
        """A kubernetes client for the admin that reads the credentials from their files.

        (Loading the kubeconfig would copy the admin key into a temporary file outside
        the demo's directory.)
        """
        from kubernetes import client

        kube = self._kube()
        config = client.Configuration()
        config.host = kube.server
        config.ssl_ca_cert = str(kube.ca_path)
        config.cert_file = str(kube.admin_cert)
        config.key_file = str(kube.admin_key)
        return client.ApiClient(config)

    def kube_config(self) -> Path:
        return self._kube().kubeconfig

    def _kube(self) -> KubeEnv:
        if self.kube is None:
            raise RuntimeError("the control plane is not running")
        return self.kube

    # --- which logs explain a failure -------------------------------------------------------

    def _kube_logs(self) -> list[Path]:
        base = self.workdir / "kube"
        return [base / "etcd.log", base / "kube-apiserver.log"]

    def _pebble_logs(self) -> list[Path]:
        base = self.workdir / "pebble"
        return [base / "pebble.log", base / "challtestsrv.log"]

    def _repository_logs(self) -> list[Path]:
        return [self.workdir / "logs" / "repository.log"]

    def _operator_logs(self) -> list[Path]:
        return [self.workdir / "logs" / "operator.log"]

    def _all_logs(self) -> list[Path]:
        logs = self._operator_logs() + self._repository_logs()
        return logs + (self._pebble_logs() if self.pebble is not None else [])


def _common_name(name: x509.Name) -> str:
    from cryptography.x509.oid import NameOID

    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, StepFailed):
        return exc.report()
    return f"FAILED: {exc}"

