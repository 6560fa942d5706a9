"""Helpers for the operator integration tests (no tests here): start ``certdepot operator
run`` as a real process against the test API server, the objects every module's setup
applies, waiting for conditions, and checking a Secret by serving it from a real TLS
server."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from repository_harness import RepoProcess, create_tenant, running, write_config

from certdepot.testenv import procs
from certdepot.testenv.kube import KubeEnv
from certdepot.testenv.pki import TestCA, write_key

ROOT = Path(__file__).resolve().parents[2]
CERTDEPOT = [sys.executable, "-m", "certdepot.cli"]



@dataclass
class OperatorProcess:
    proc: procs.ManagedProcess
    metrics_port: int
    health_port: int


@contextmanager
def operator(
    kube: KubeEnv,
    workdir: Path,
    *args: str,
    name: str = "operator",
) -> Iterator[OperatorProcess]:
    metrics_port, health_port = procs.free_port(), procs.free_port()
    argv = [
        *CERTDEPOT,
        "operator",
        "run",
        "--kubeconfig",
        str(kube.kubeconfig),
        "--metrics-port",
        str(metrics_port),
        "--health-port",
        str(health_port),
        "--lease-namespace",
        "certdepot",
        "--cluster-resource-namespace",
        "certdepot",
        "--recheck-seconds",
        "5",
        "--renewal-info-seconds",
        "2",
        "--backoff-base-seconds",
        "1",
        "--backoff-cap-seconds",
        "5",
        *args,
    ]
    proc = procs.start(
        name,
        argv,
        log_path=workdir / f"{name}.log",
        extra_env={"PYTHONPATH": str(ROOT / "operator")},
    )
    try:
        proc.wait_for_port(health_port, timeout=60)
        proc.wait_for_url(f"http://127.0.0.1:{health_port}/readyz")
        yield OperatorProcess(proc, metrics_port, health_port)
    finally:
        proc.stop()


@dataclass
class Setup:
    """A module's world: the API server, a repository process on a local CA, the operator."""

    kube: KubeEnv
    repo: RepoProcess
    root: TestCA
    workdir: Path
    op: OperatorProcess


def local_ca_issuer(workdir: Path, name: str) -> tuple[TestCA, dict[str, Any]]:
    """A fresh root CA and the repository issuer ``local`` that signs with it."""
    root = TestCA.create(workdir, name)
    root_key = write_key(workdir / f"{name}.key", root.key)
    issuer = {
        "name": "local",
        "type": "local-ca",
        "lifetime": "24h",
        "root": {"cert": str(root.cert_path), "key": str(root_key)},
    }
    return root, issuer


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels is not None:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def eab_repository(
    repo: RepoProcess,
    kid: str,
    hmac_key: str,
    *,
    name: str,
    namespace: str | None,
    secret_name: str,
    secret_namespace: str | None = None,
    **spec: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The EAB key Secret and a repository resource for ``repo``: a CertificateRepository in
    ``namespace``, or with ``namespace=None`` a ClusterCertificateRepository."""
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name, "namespace": secret_namespace or namespace},
        "stringData": {"secret": hmac_key},
    }
    kind = "CertificateRepository" if namespace is not None else "ClusterCertificateRepository"
    resource = {
        "apiVersion": "certdepot.io/v1alpha1",
        "kind": kind,
        "metadata": metadata,
        "spec": {
            "url": repo.directory_url,
            "caBundle": base64.b64encode(repo.ca_path.read_bytes()).decode(),
            "externalAccountBinding": {"keyID": kid, "keySecretRef": {"name": secret_name}},
            **spec,
        },
    }
    return secret, resource


@contextmanager
def repository_and_operator(
    kube: KubeEnv,
    workdir: Path,
    cfg: dict[str, Any],
    port: int,
    *,
    tenant: str,
    namespaces: list[dict[str, Any]],
    repository: dict[str, Any],
    operator_name: str = "operator",
) -> Iterator[tuple[RepoProcess, OperatorProcess]]:
    """A module's setup: write ``cfg``, mint ``tenant``'s EAB key, create ``namespaces``,
    start the repository, apply a repository resource bound to that tenant
    (``eab_repository(**repository)``) and start the operator."""
    cfg_path = write_config(workdir, cfg)
    kid, hmac_key = create_tenant(workdir, cfg_path, tenant)
    apply(kube, *namespaces)
    with running(workdir, cfg_path, port) as repo:
        apply(kube, *eab_repository(repo, kid, hmac_key, **repository))
        with operator(kube, workdir, name=operator_name) as op:
            yield repo, op


def apply(kube: KubeEnv, *docs: dict[str, Any]) -> None:
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def get(kube: KubeEnv, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
    args = ["get", kind, name, "-o", "json"]
    if namespace:
        args += ["-n", namespace]
    res = kube.kubectl(*args, check=False)
    if res.returncode != 0:
        if "NotFound" in res.stderr:
            return None
        raise AssertionError(res.stderr)
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


def ready_condition(obj: dict[str, Any] | None) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return {}


def wait_for(
    what: str,
    check: Callable[[], Any],
    *,
    timeout: float = 60.0,
    proc: procs.ManagedProcess | None = None,
    interval: float = 0.5,
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        if proc is not None:
            proc.check_running()
        time.sleep(interval)
    tail = proc.tail(60) if proc is not None else ""
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}\n{tail}")


def wait_condition(
    kube: KubeEnv,
    kind: str,
    name: str,
    namespace: str | None,
    *,
    status: str,
    reason: str | None = None,
    proc: procs.ManagedProcess | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(kube, kind, name, namespace)
        cond = ready_condition(obj)
        if cond.get("status") == status and (reason is None or cond.get("reason") == reason):
            return obj
        return None

    return dict(
        wait_for(f"{kind} {name} Ready={status} {reason or ''}", check, timeout=timeout, proc=proc)
    )


def secret_files(secret: dict[str, Any], workdir: Path) -> tuple[Path, Path]:
    data = secret["data"]
    crt, key = workdir / "tls.crt", workdir / "tls.key"
    crt.write_bytes(base64.b64decode(data["tls.crt"]))
    key.write_bytes(base64.b64decode(data["tls.key"]))
    key.chmod(0o600)
    return crt, key


def tls_handshake(
    cert_file: Path, key_file: Path, trust_file: Path, server_name: str
) -> dict[str, Any]:
    """Serve cert+key from a real ssl server on loopback and connect to it verifying chain and
    name against ``trust_file``; returns the peer certificate the client saw."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"hello\n")
        except (OSError, ssl.SSLError) as exc:  # the client side reports the failure
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        client_ctx = ssl.create_default_context(cafile=str(trust_file))
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            assert tls.recv(6) == b"hello\n"
            peer = tls.getpeercert()
            assert peer is not None
            return dict(peer)
    finally:
        thread.join(timeout=10)
        listener.close()
