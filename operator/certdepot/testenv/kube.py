"""A real Kubernetes control plane without nodes: etcd + kube-apiserver on loopback.

This is the envtest pattern (controller-runtime, cert-manager): the API server with its
real validation, defaulting, CRD schemas, RBAC and TokenRequest, but no kube-controller-
manager, scheduler or kubelet. Consequences worth knowing: Pods never run, namespaces are
never finalised after deletion, ownerReference garbage collection does not happen, and
no ``default`` ServiceAccount appears by itself (:meth:`KubeEnv.token_for` creates the
ServiceAccount it is asked for).

    with KubeEnv() as kube:
        kube.kubectl("get", "ns")
        v1 = kubernetes.client.CoreV1Api(kube.api_client())

The admin identity is a client certificate in ``system:masters``; the authorizer is RBAC,
so any other identity (e.g. a ServiceAccount token from :meth:`token_for`) has only the
permissions that RBAC objects grant it.
"""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certdepot.testenv import procs
from certdepot.testenv.pki import TestCA, write_key
from certdepot.testenv.provision import binary

__all__ = ["KubeEnv", "KubectlError"]


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {self.stderr}"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


class KubeEnv(procs.Service):
    """etcd + kube-apiserver in ``workdir`` (a fresh temporary directory by default)."""

    SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

    PROCESSES = ("apiserver", "etcd")

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        extra_apiserver_args: Sequence[str] = (),
        start_timeout: float = 120.0,
        address: str = "127.0.0.1",
    ) -> None:
        super().__init__(workdir, "certdepot-kube-")
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.start_timeout = start_timeout
        # Where kube-apiserver listens and what it advertises. Loopback unless a node's pods
        # must reach it (testenv/node.py gives its bridge's own address).
        self.address = address
        self.etcd: procs.ManagedProcess | None = None
        self.apiserver: procs.ManagedProcess | None = None
        self.etcd_port = procs.free_port()
        self.etcd_peer_port = procs.free_port()
        self.port = procs.free_port()
        self.server = f"https://{address}:{self.port}"
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        pki = self.workdir / "pki"
        self._pki = pki
        self.ca_path = pki / "kube-ca.crt"
        self.admin_cert = pki / "admin.crt"
        self.admin_key = pki / "admin.key"

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> KubeEnv:
        """Generate credentials, start etcd and kube-apiserver, wait until /readyz is ok."""
        # Resolve binaries first: a missing one fails here with instructions, before any
        # process is started.
        etcd, apiserver = binary("etcd"), binary("kube-apiserver")
        binary("kubectl")
        self._write_pki()
        self._write_kubeconfig(self.kubeconfig, {
            "client-certificate-data": _b64(self.admin_cert),
            "client-key-data": _b64(self.admin_key),
        }, user="admin")
        try:
            self._start_etcd(etcd)
            self._start_apiserver(apiserver)
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, *, etcd: bool = False) -> None:
        """Stop and start kube-apiserver (and etcd too when ``etcd``), keeping all data,
        ports and credentials: clients see the API go away and come back."""
        if self.apiserver is not None:
            self.apiserver.stop()
        if etcd and self.etcd is not None:
            self.etcd.stop()
            self._start_etcd(binary("etcd"))
        self._start_apiserver(binary("kube-apiserver"))

    def _start_etcd(self, etcd: Path) -> None:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        self.etcd = procs.start(
            "etcd",
            [
                etcd,
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                # Test data is disposable; fsync dominates etcd latency on shared disks.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            log_path=self.workdir / "etcd.log",
        )
        self.etcd.wait_for_url(f"{client}/health", timeout=self.start_timeout)

    def _start_apiserver(self, apiserver: Path) -> None:
        pki = self._pki
        self.apiserver = procs.start(
            "kube-apiserver",
            [
                apiserver,
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                f"--secure-port={self.port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={self.ca_path}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={self.SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                # The `kubernetes` Service endpoint may not point at loopback, and nothing
                # in-cluster needs it unless pods run (then the address is not loopback).
                "--endpoint-reconciler-type="
                + ("none" if self.address.startswith("127.") else "lease"),
                *self.extra_apiserver_args,
            ],
            log_path=self.workdir / "kube-apiserver.log",
        )
        self.apiserver.wait_for_url(
            f"{self.server}/readyz",
            timeout=self.start_timeout,
            verify=str(self.ca_path),
            cert=(str(self.admin_cert), str(self.admin_key)),
        )

    # --- credentials -----------------------------------------------------------------

    def _write_pki(self) -> None:
        pki = self._pki
        pki.mkdir(parents=True, exist_ok=True)
        ca = TestCA.create(pki, "kube")
        ca.issue(
            pki, "apiserver", "kube-apiserver",
            dns_names=("localhost", "kubernetes", "kubernetes.default",
                       "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"),
            ips=tuple(dict.fromkeys(("127.0.0.1", "10.0.0.1", self.address))),
        )
        ca.issue(pki, "admin", "admin", organization="system:masters", client=True)
        sa_key = ec.generate_private_key(ec.SECP256R1())
        write_key(pki / "sa.key", sa_key)
        (pki / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def _write_kubeconfig(self, path: Path, user_entry: dict[str, str], *, user: str) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": "certdepot-test",
                "cluster": {
                    "server": self.server,
                    "certificate-authority-data": _b64(self.ca_path),
                },
            }],
            "users": [{"name": user, "user": user_entry}],
            "contexts": [{
                "name": f"{user}@certdepot-test",
                "context": {"cluster": "certdepot-test", "user": user},
            }],
            "current-context": f"{user}@certdepot-test",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    # --- clients ---------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the provisioned kubectl as admin (or with ``kubeconfig``)."""
        argv = [str(binary("kubectl")), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A fresh ``kubernetes.client.ApiClient`` for the admin (or ``kubeconfig``)."""
        from kubernetes import config

        return config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig or self.kubeconfig)
        )

    def token_for(
        self,
        namespace: str,
        serviceaccount: str,
        *,
        audiences: Sequence[str] = (),
        expiration_seconds: int = 3600,
    ) -> str:
        """A TokenRequest token for ``namespace/serviceaccount``; creates both if missing."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        with self.api_client() as api:
            core = client.CoreV1Api(api)
            meta = client.V1ObjectMeta
            for create in (
                lambda: core.create_namespace(client.V1Namespace(metadata=meta(name=namespace))),
                lambda: core.create_namespaced_service_account(
                    namespace, client.V1ServiceAccount(metadata=meta(name=serviceaccount))
                ),
            ):
                try:
                    create()
                except ApiException as exc:
                    if exc.status != 409:
                        raise
            request = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(
                    audiences=list(audiences), expiration_seconds=expiration_seconds
                )
            )
            result = core.create_namespaced_service_account_token(
                serviceaccount, namespace, request
            )
            if result.status is None or not result.status.token:
                raise RuntimeError(f"TokenRequest for {namespace}/{serviceaccount} gave no token")
            return str(result.status.token)

    def kubeconfig_for(self, namespace: str, serviceaccount: str, path: Path | None = None) -> Path:
        """A kubeconfig that authenticates as the ServiceAccount (token from :meth:`token_for`)."""
        target = path or self.workdir / f"{namespace}-{serviceaccount}.kubeconfig"
        token = self.token_for(namespace, serviceaccount)
        return self._write_kubeconfig(
            target, {"token": token}, user=f"system:serviceaccount:{namespace}:{serviceaccount}"
        )

    def wait_for_crds(self, names: Sequence[str], timeout: float = 60.0) -> None:
        """Wait until each CustomResourceDefinition is Established and its API is served."""
        if names:
            self.kubectl(
                "wait", "--for=condition=Established", f"--timeout={int(timeout)}s",
                *(f"crd/{n}" for n in names),
                timeout=timeout + 10,
            )
        # Established can precede discovery by a moment; kubectl get must work right after.
        deadline = time.monotonic() + timeout
        for name in names:
            while self.kubectl("get", name, "-A", "-o", "name", check=False).returncode != 0:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"CRD {name} established but not served after {timeout}s")
                time.sleep(0.2)
