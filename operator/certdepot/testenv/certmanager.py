"""cert-manager's controller, run out of cluster against a test kube-apiserver.

    with KubeEnv() as kube, CertManagerEnv(kube) as cm:
        kube.kubectl("apply", "-f", "issuer.yaml")

:meth:`CertManagerEnv.start` applies the pinned CRDs (:mod:`certmanager_assets`), creates
the namespace for cluster-scoped resources and starts the controller with every listener on
127.0.0.1 and leader election off. There is no webhook: the CRDs' own schemas and defaults
still apply, but cert-manager's extra admission checks do not. Nothing else of a cluster
runs (see :mod:`certdepot.testenv.kube`), so HTTP-01 solver pods never start: an ACME
Issuer works where the CA's authorizations are already valid, as with the repository's
pre-validated tenant names.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from certdepot.acme.timefmt import rfc3339
from certdepot.testenv import procs
from certdepot.testenv.certmanager_assets import controller_binary, crd_files
from certdepot.testenv.kube import KubeEnv

__all__ = ["CertManagerEnv", "acme_issuer", "ca_cluster_issuer", "ca_secret", "certificate",
           "condition", "eab_secret"]


class CertManagerEnv(procs.Service):
    """The cert-manager controller against ``kube``; its config and log in ``workdir``."""

    PROCESSES = ("controller",)

    def __init__(
        self,
        kube: KubeEnv,
        workdir: Path | None = None,
        *,
        cluster_resource_namespace: str = "cert-manager",
        extra_args: Sequence[str] = (),
        start_timeout: float = 60.0,
    ) -> None:
        super().__init__(workdir, "certdepot-cert-manager-")
        self.kube = kube
        self.cluster_resource_namespace = cluster_resource_namespace
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.controller: procs.ManagedProcess | None = None
        self.healthz_port = procs.free_port()
        self.metrics_port = procs.free_port()

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> CertManagerEnv:
        # Resolve first: a missing binary or CRD fails here, before anything changes.
        binary, crds = controller_binary(), crd_files()
        self.apply_crds(crds)
        self.kube.kubectl("create", "namespace", self.cluster_resource_namespace,
                          check=False)
        config = self._write_config()
        self.controller = procs.start(
            "cert-manager-controller",
            [
                binary,
                f"--kubeconfig={self.kube.kubeconfig}",
                f"--config={config}",
                "--leader-elect=false",
                f"--cluster-resource-namespace={self.cluster_resource_namespace}",
                "--namespace=",  # every namespace
                "--enable-certificate-owner-ref=false",
                *self.extra_args,
            ],
            log_path=self.workdir / "cert-manager-controller.log",
        )
        try:
            self.controller.wait_for_url(
                f"http://127.0.0.1:{self.healthz_port}/livez", timeout=self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def apply_crds(self, crds: Sequence[Path] | None = None) -> list[str]:
        """Apply cert-manager's CRDs and wait until they are served; returns their names."""
        files = list(crds) if crds is not None else crd_files()
        names = [str(doc["metadata"]["name"]) for path in files
                 for doc in yaml.safe_load_all(path.read_text())
                 if doc and doc.get("kind") == "CustomResourceDefinition"]
        args = [arg for path in files for arg in ("-f", str(path))]
        self.kube.kubectl("apply", "--server-side", "--force-conflicts", *args)
        self.kube.wait_for_crds(names)
        return names

    # --- objects ---------------------------------------------------------------------

    def apply(self, *objects: dict[str, Any]) -> None:
        """Server-side apply of the given objects (as built by the functions below)."""
        docs = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self.kube.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(docs))

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as JSON, or None when it does not exist."""
        res = self.kube.kubectl("get", kind, "-n", namespace, name, "-o", "json", check=False)
        if res.returncode != 0:
            if "NotFound" in res.stderr:
                return None
            raise RuntimeError(f"kubectl get {kind} {namespace}/{name}: {res.stderr}")
        obj: dict[str, Any] = json.loads(res.stdout)
        return obj

    def wait_for(self, kind: str, namespace: str, name: str,
                 until: Callable[[dict[str, Any]], bool], *, timeout: float = 60.0,
                 what: str = "") -> dict[str, Any]:
        """Poll the object until ``until(obj)``; a timeout quotes its status and the
        controller's log."""
        deadline = time.monotonic() + timeout
        obj: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            if self.controller is not None:
                self.controller.check_running()
            obj = self.get(kind, namespace, name)
            if obj is not None and until(obj):
                return obj
            time.sleep(0.1)
        status = json.dumps((obj or {}).get("status"), indent=1)
        log = self.controller.tail() if self.controller else ""
        raise TimeoutError(f"{kind} {namespace}/{name} not {what or 'as expected'} after "
                           f"{timeout:.0f}s; status: {status}\n--- controller log ---\n{log}")

    def trigger_renewal(self, namespace: str, name: str) -> None:
        """What `cmctl renew` does: add the Issuing condition (reason ManuallyTriggered)."""
        now = rfc3339(time.time())
        patch = [{"op": "add", "path": "/status/conditions/-", "value": {
            "type": "Issuing", "status": "True", "reason": "ManuallyTriggered",
            "message": "Certificate re-issuance manually triggered",
            "lastTransitionTime": now}}]
        self.kube.kubectl("patch", "certificate", "-n", namespace, name, "--type=json",
                          "--subresource=status", "-p", json.dumps(patch))

    def _write_config(self) -> Path:
        # Listeners default to 0.0.0.0; the tests stay on loopback.
        config: dict[str, Any] = {
            "apiVersion": "controller.config.cert-manager.io/v1alpha1",
            "kind": "ControllerConfiguration",
            "healthzListenAddress": f"127.0.0.1:{self.healthz_port}",
            "metricsListenAddress": f"127.0.0.1:{self.metrics_port}",
            "pprofAddress": "127.0.0.1:0",
            "enablePprof": False,
        }
        path = self.workdir / "controller-config.yaml"
        path.write_text(json.dumps(config, indent=2))
        return path


# --- manifests (tests and the benchmark create the same objects) ---------------------------

def eab_secret(namespace: str, name: str, hmac_key: str) -> dict[str, Any]:
    """The Secret an ACME Issuer's externalAccountBinding reads (key ``secret``); the HMAC
    key as the repository prints it (base64url)."""
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque", "stringData": {"secret": hmac_key}}


def acme_issuer(namespace: str, name: str, *, server: str, ca_pem: bytes, eab_kid: str,
                eab_secret_name: str) -> dict[str, Any]:
    """An ACME Issuer with EAB, trusting ``ca_pem`` for the server's HTTPS.

    The solver is required by cert-manager but only used for pending authorizations,
    which the repository does not hand out for a tenant's granted names."""
    return {
        "apiVersion": "cert-manager.io/v1", "kind": "Issuer",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"acme": {
            "server": server,
            "caBundle": base64.b64encode(ca_pem).decode(),
            "privateKeySecretRef": {"name": f"{name}-account-key"},
            "externalAccountBinding": {
                "keyID": eab_kid,
                "keySecretRef": {"name": eab_secret_name, "key": "secret"},
            },
            "solvers": [{"http01": {"ingress": {}}}],
        }},
    }


def ca_secret(namespace: str, name: str, cert_pem: bytes, key_pem: bytes) -> dict[str, Any]:
    """The Secret a CA issuer signs with (in the cluster resource namespace for a
    ClusterIssuer)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"tls.crt": base64.b64encode(cert_pem).decode(),
                     "tls.key": base64.b64encode(key_pem).decode()}}


def ca_cluster_issuer(name: str, secret_name: str) -> dict[str, Any]:
    """A ClusterIssuer that signs locally with the CA in ``secret_name``."""
    return {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
            "metadata": {"name": name}, "spec": {"ca": {"secretName": secret_name}}}


def certificate(namespace: str, name: str, dns_names: Sequence[str], *, issuer: str,
                secret_name: str | None = None, issuer_kind: str = "Issuer",
                **spec: Any) -> dict[str, Any]:
    """A Certificate from the Issuer (or ClusterIssuer) ``issuer`` (ECDSA P-256 key)."""
    return {
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"secretName": secret_name or f"{name}-tls", "dnsNames": list(dns_names),
                 "issuerRef": {"name": issuer, "kind": issuer_kind,
                               "group": "cert-manager.io"},
                 "privateKey": {"algorithm": "ECDSA", "size": 256}, **spec},
    }


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The status condition of type ``kind`` (Ready, Issuing, ...), if the object has one."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            found: dict[str, Any] = cond
            return found
    return None
