"""The install path for real: `helm install` of charts/certdepot on the one-node cluster, as
users run it, in both topologies (central repository + operator; operator-only consumer
pointing at it), then the resources users create, all Ready."""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from certdepot.testenv import procs
from certdepot.testenv.node import NodeCluster
from certdepot.testenv.pki import TestCA
from certdepot.testenv.provision import binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "certdepot"
DEPOT_NS, CONSUMER_NS = "depot", "consumer"
REPO_SERVICE = "depot-certdepot-repository"
REPO_HOST = f"{REPO_SERVICE}.{DEPOT_NS}.svc"
IMAGE = {"repository": "certdepot", "tag": "dev", "pullPolicy": "Never"}


def depot_values() -> dict[str, Any]:
    return {
        "image": IMAGE,
        # Its operator looks after its own namespace; the consumer's after the consumer's.
        "operator": {"watchNamespaces": [DEPOT_NS], "verbose": True},
        "repository": {
            "baseUrl": f"https://{REPO_HOST}",
            "tls": {"secretName": "depot-tls"},
            "storage": {"sqlite": {"existingClaim": "depot-data"}},
            "config": {
                "renewCheckInterval": "5s",
                "certificates": [{"name": "www", "dnsNames": ["www.demo.test"], "issuer": "local"}],
                "tenants": [{
                    "name": "consumer",
                    "download": ["www"],
                    "delegations": [{
                        "name": "edge",
                        "issuer": "local",
                        "namePatterns": ["edge-*.demo.test"],
                        "maxLifetime": "1d",
                        "csrTemplate": {
                            "keyTypes": [{"PublicKeyType": "id-ecPublicKey",
                                          "namedCurve": "secp256r1",
                                          "SignatureType": "ecdsa-with-SHA256"}],
                            "subject": {"commonName": "*"},
                            "extensions": {"subjectAltName": {"DNS": ["**"]},
                                           "keyUsage": ["digitalSignature"],
                                           "extendedKeyUsage": ["serverAuth"]},
                        },
                    }],
                }],
            },
        },
    }


def consumer_values(**operator: Any) -> dict[str, Any]:
    return {"image": IMAGE, "repository": {"enabled": False},
            "operator": {"watchNamespaces": [CONSUMER_NS], "verbose": True,
                         # Ask the repository about renewals often, so a renewal shows soon.
                         "extraArgs": ["--renewal-info-seconds=5", "--recheck-seconds=10"],
                         **operator}}


class Helm:
    def __init__(self, cluster: NodeCluster) -> None:
        self.cluster = cluster
        self.workdir = cluster.workdir / "helm"
        self.workdir.mkdir(exist_ok=True)

    def __call__(self, *args: str, timeout: float = 600) -> str:
        env = {"HOME": str(self.workdir), "PATH": "/usr/bin:/bin",
               "HELM_CACHE_HOME": str(self.workdir / "cache"),
               "HELM_CONFIG_HOME": str(self.workdir / "config"),
               "HELM_DATA_HOME": str(self.workdir / "data")}
        argv = [str(binary("helm")), f"--kubeconfig={self.cluster.kube.kubeconfig}", *args]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
        assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def values(self, name: str, values: dict[str, Any]) -> str:
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        return str(path)


def apply(cluster: NodeCluster, *docs: dict[str, Any]) -> None:
    cluster.kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def wait_ready(cluster: NodeCluster, kind: str, name: str, ns: str | None,
               timeout: float = 240) -> dict[str, Any]:
    where = ["-n", ns] if ns else []
    deadline = time.monotonic() + timeout
    obj: dict[str, Any] = {}
    while time.monotonic() < deadline:
        out = cluster.kube.kubectl("get", kind, name, *where, "-o", "json", check=False)
        if out.returncode == 0:
            obj = json.loads(out.stdout)
            conds = obj.get("status", {}).get("conditions", [])
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                return obj
        time.sleep(2)
    raise AssertionError(f"{kind} {name} not Ready after {timeout}s: {obj.get('status')}\n"
                         + _diagnose(cluster))


def _diagnose(cluster: NodeCluster) -> str:
    k = cluster.kube.kubectl
    parts = [k("get", "pods", "-A", "-o", "wide", check=False).stdout]
    for ns in (DEPOT_NS, CONSUMER_NS):
        parts.append(k("logs", "-n", ns, "-l", "app.kubernetes.io/name=certdepot",
                       "--all-containers", "--tail=40", "--prefix", check=False).stdout)
    return "\n".join(parts)


def wait_pods_ready(cluster: NodeCluster, ns: str, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = json.loads(cluster.kube.kubectl("get", "pods", "-n", ns, "-o", "json").stdout)
        ready = [p for p in pods["items"] if p["status"].get("phase") == "Running" and all(
            c.get("ready") for c in p["status"].get("containerStatuses", []))]
        if len(ready) >= count and len(pods["items"]) == len(ready):
            return
        time.sleep(2)
    raise AssertionError(f"pods of {ns} not all Running and Ready\n" + _diagnose(cluster))


def _storage(cluster: NodeCluster) -> list[dict[str, Any]]:
    # No dynamic provisioner: a hostPath PersistentVolume bound to the claim that the
    # chart is told to use (repository.storage.sqlite.existingClaim).
    data = cluster.workdir / "pv-depot"
    data.mkdir(exist_ok=True)
    import os

    os.chown(data, 10001, 10001)
    return [
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "depot-data"},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                  "storageClassName": "", "hostPath": {"path": str(data)},
                  "claimRef": {"namespace": DEPOT_NS, "name": "depot-data"}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": "depot-data", "namespace": DEPOT_NS},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                  "volumeName": "depot-data", "resources": {"requests": {"storage": "1Gi"}}}},
    ]


def _tls_secret(cluster: NodeCluster) -> tuple[dict[str, Any], TestCA]:
    pki = cluster.workdir / "depot-pki"
    ca = TestCA.create(pki, "depot-https")
    crt, key = ca.issue(pki, "depot", REPO_HOST, dns_names=(REPO_HOST,))
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
              "metadata": {"name": "depot-tls", "namespace": DEPOT_NS},
              "data": {"tls.crt": base64.b64encode(crt.read_bytes()).decode(),
                       "tls.key": base64.b64encode(key.read_bytes()).decode()}}
    return secret, ca


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


@pytest.fixture(scope="module")
def installed(node_cluster: NodeCluster) -> Iterator[tuple[Helm, TestCA]]:
    helm = Helm(node_cluster)
    secret, ca = _tls_secret(node_cluster)
    apply(node_cluster, _namespace(DEPOT_NS), _namespace(CONSUMER_NS))
    apply(node_cluster, secret, *_storage(node_cluster))
    helm("install", "depot", str(CHART), "-n", DEPOT_NS, "-f", helm.values("depot", depot_values()))
    helm("install", "consumer", str(CHART), "-n", CONSUMER_NS,
         "-f", helm.values("consumer", consumer_values()))
    yield helm, ca


def test_both_releases_run_ready(node_cluster: NodeCluster,
                                 installed: tuple[Helm, TestCA]) -> None:
    wait_pods_ready(node_cluster, DEPOT_NS, 2)
    wait_pods_ready(node_cluster, CONSUMER_NS, 1)


def _eab(cluster: NodeCluster) -> tuple[str, str]:
    out = cluster.kube.kubectl(
        "exec", "-n", DEPOT_NS, f"deploy/{REPO_SERVICE}", "--", "certdepot", "repository",
        "tenant", "create", "--config", "/etc/certdepot/config/config.yaml", "consumer",
        timeout=120).stdout
    kid = re.search(r"eab-kid:\s+(\S+)", out)
    hmac = re.search(r"eab-hmac:\s+(\S+)", out)
    assert kid and hmac, out
    return kid.group(1), hmac.group(1)


def test_the_consumer_gets_its_certificates(node_cluster: NodeCluster,
                                            installed: tuple[Helm, TestCA]) -> None:
    _, https_ca = installed
    wait_pods_ready(node_cluster, DEPOT_NS, 2)
    kid, hmac = _eab(node_cluster)
    ns = CONSUMER_NS
    apply(
        node_cluster,
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "depot-eab", "namespace": ns},
         "stringData": {"secret": hmac}},
        {"apiVersion": "certdepot.io/v1alpha1", "kind": "ClusterCertificateRepository",
         "metadata": {"name": "depot"},
         "spec": {"url": f"https://{REPO_HOST}/directory",
                  "caBundle": base64.b64encode(https_ca.cert_path.read_bytes()).decode(),
                  "externalAccountBinding": {"keyID": kid,
                                             "keySecretRef": {"name": "depot-eab",
                                                              "key": "secret"}},
                  "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}},
    )
    wait_ready(node_cluster, "clustercertificaterepository", "depot", None)
    ref = {"kind": "ClusterCertificateRepository", "name": "depot"}
    apply(
        node_cluster,
        {"apiVersion": "certdepot.io/v1alpha1", "kind": "CertificateDownload",
         "metadata": {"name": "www", "namespace": ns},
         "spec": {"repositoryRef": ref, "dnsNames": ["www.demo.test"], "secretName": "www-tls"}},
        {"apiVersion": "certdepot.io/v1alpha1", "kind": "DelegatedCertificate",
         "metadata": {"name": "edge-1", "namespace": ns},
         "spec": {"repositoryRef": ref, "delegation": "edge", "dnsNames": ["edge-1.demo.test"],
                  "duration": "24h", "renewBefore": "8h", "secretName": "edge-1-tls"}},
        _ingress(ns),
    )
    wait_ready(node_cluster, "certificatedownload", "www", ns)
    wait_ready(node_cluster, "delegatedcertificate", "edge-1", ns)
    # The ingress-shim's CertificateDownload, named after the Ingress's TLS Secret.
    wait_ready(node_cluster, "certificatedownload", "shop-tls", ns)


def _ingress(ns: str) -> dict[str, Any]:
    backend = {"service": {"name": "consumer-certdepot-operator-metrics",
                           "port": {"number": 9402}}}
    rule = {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "namespace": ns,
                     "annotations": {"certdepot.io/cluster-repository": "depot"}},
        "spec": {"tls": [{"hosts": ["www.demo.test"], "secretName": "shop-tls"}],
                 "rules": [{**rule, "host": "www.demo.test"}]},
    }


TRAEFIK_RBAC = [
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
     "metadata": {"name": "test-traefik"},
     "rules": [{"apiGroups": ["", "discovery.k8s.io", "networking.k8s.io"],
                "resources": ["services", "endpoints", "endpointslices", "secrets", "nodes",
                              "ingresses", "ingressclasses", "ingresses/status"],
                "verbs": ["get", "list", "watch", "update"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
     "metadata": {"name": "test-traefik"},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                 "name": "test-traefik"},
     "subjects": [{"kind": "ServiceAccount", "name": "traefik", "namespace": CONSUMER_NS}]},
]


@pytest.fixture(scope="module")
def traefik(node_cluster: NodeCluster, installed: tuple[Helm, TestCA]) -> Iterator[int]:
    """Traefik out of the cluster, as an ingress controller with a ServiceAccount token,
    serving HTTPS on 127.0.0.1 for the cluster's Ingresses."""
    kube = node_cluster.kube
    apply(node_cluster, *TRAEFIK_RBAC)
    token = kube.token_for(CONSUMER_NS, "traefik")
    port = procs.free_port()
    proc = procs.start("traefik", [
        binary("traefik"),
        f"--entrypoints.websecure.address=127.0.0.1:{port}",
        "--entrypoints.websecure.http.tls=true",
        "--providers.kubernetesingress=true",
        f"--providers.kubernetesingress.endpoint={kube.server}",
        f"--providers.kubernetesingress.token={token}",
        f"--providers.kubernetesingress.certauthfilepath={kube.ca_path}",
        f"--providers.kubernetesingress.namespaces={CONSUMER_NS}",
        "--global.checknewversion=false",
        "--global.sendanonymoususage=false",
        "--log.level=DEBUG",
    ], log_path=node_cluster.workdir / "traefik.log", cwd=node_cluster.workdir)
    try:
        proc.wait_for_port(port, timeout=60)
        yield port
    finally:
        proc.stop()


def _secret_pem(cluster: NodeCluster, name: str, key: str) -> str:
    out = cluster.kube.kubectl("get", "secret", name, "-n", CONSUMER_NS, "-o",
                               f"jsonpath={{.data.{key.replace('.', chr(92) + '.')}}}").stdout
    return base64.b64decode(out).decode()


def _served_leaf(port: int, host: str, ca_pem: str) -> bytes:
    """The leaf Traefik presents for ``host``, through a verifying TLS client."""
    ctx = ssl.create_default_context(cadata=ca_pem)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        assert tls.recv(12).startswith(b"HTTP/1.1")
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def _leaf_der(pem: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.split("-----END CERTIFICATE-----")[0]
                                    + "-----END CERTIFICATE-----\n")


def _wait_served(port: int, host: str, ca_pem: str, want: bytes, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            if _served_leaf(port, host, ca_pem) == want:
                return
            last = "a different certificate"
        except (OSError, AssertionError) as exc:  # Traefik's default cert fails to verify
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(2)
    raise AssertionError(f"Traefik did not serve the Secret's certificate for {host}: {last}")


def test_traefik_serves_the_secrets_and_follows_a_renewal(
        node_cluster: NodeCluster, installed: tuple[Helm, TestCA], traefik: int) -> None:
    wait_ready(node_cluster, "certificatedownload", "shop-tls", CONSUMER_NS)
    ca = _secret_pem(node_cluster, "shop-tls", "ca.crt")
    first = _leaf_der(_secret_pem(node_cluster, "shop-tls", "tls.crt"))
    _wait_served(traefik, "www.demo.test", ca, first)
    # A renewal on the repository, as its administrator asks for it: nobody touches the
    # consumer's objects, yet Traefik's answers change.
    node_cluster.kube.kubectl(
        "exec", "-n", DEPOT_NS, f"deploy/{REPO_SERVICE}", "--", "certdepot", "repository",
        "renew", "--config", "/etc/certdepot/config/config.yaml", "www", timeout=120)
    deadline = time.monotonic() + 240
    renewed = first
    while renewed == first and time.monotonic() < deadline:
        time.sleep(3)
        renewed = _leaf_der(_secret_pem(node_cluster, "shop-tls", "tls.crt"))
    assert renewed != first, "the renewal never reached the consumer's Secret\n" + _diagnose(
        node_cluster)
    _wait_served(traefik, "www.demo.test", ca, renewed)


def _pod_ready(cluster: NodeCluster, ns: str, selector: str) -> tuple[str, bool]:
    pods = json.loads(cluster.kube.kubectl("get", "pods", "-n", ns, "-l", selector,
                                           "-o", "json").stdout)["items"]
    running = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(running) == 1, [p["metadata"]["name"] for p in pods]
    conds = running[0]["status"].get("conditions", [])
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
    return running[0]["status"].get("podIP", ""), ready


def _wait_pod_ready(cluster: NodeCluster, ns: str, selector: str, want: bool,
                    timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while _pod_ready(cluster, ns, selector)[1] != want:
        assert time.monotonic() < deadline, f"{selector} in {ns}: Ready never became {want}"
        time.sleep(2)


def test_an_operator_cut_off_from_the_api_is_not_ready(
        node_cluster: NodeCluster, installed: tuple[Helm, TestCA]) -> None:
    selector = "app.kubernetes.io/instance=consumer,app.kubernetes.io/component=operator"
    _wait_pod_ready(node_cluster, CONSUMER_NS, selector, True)
    pod_ip, _ = _pod_ready(node_cluster, CONSUMER_NS, selector)
    api_port = str(node_cluster.kube.port)
    # The pod's packets to kube-apiserver (the `kubernetes` Service, DNATed by kube-proxy
    # to the node's address) are dropped; the comment lets the cluster's cleanup find it.
    rule = ["INPUT", "-s", pod_ip, "-d", node_cluster.bridge.gateway, "-p", "tcp",
            "--dport", api_port, "-m", "comment", "--comment", "certdepot-node", "-j", "DROP"]
    subprocess.run(["iptables", "-w", "-I", *rule], check=True)
    try:
        _wait_pod_ready(node_cluster, CONSUMER_NS, selector, False)
    finally:
        subprocess.run(["iptables", "-w", "-D", *rule], check=True)
    _wait_pod_ready(node_cluster, CONSUMER_NS, selector, True, timeout=300)


def test_helm_upgrade_and_uninstall(node_cluster: NodeCluster,
                                    installed: tuple[Helm, TestCA]) -> None:
    helm, _ = installed
    helm("upgrade", "consumer", str(CHART), "-n", CONSUMER_NS, "--wait", "--timeout=5m",
         "-f", helm.values("consumer-2", consumer_values(verbose=False)))
    wait_pods_ready(node_cluster, CONSUMER_NS, 1)
    wait_ready(node_cluster, "certificatedownload", "www", CONSUMER_NS)
    for release, ns in (("consumer", CONSUMER_NS), ("depot", DEPOT_NS)):
        helm("uninstall", release, "-n", ns, "--wait", "--timeout=5m")
        # The garbage collector removes the pods after their Deployment, each within its
        # termination grace period.
        deadline = time.monotonic() + 120
        while True:
            left = node_cluster.kube.kubectl(
                "get", "all,configmaps,serviceaccounts,roles,rolebindings", "-n", ns,
                "-l", f"app.kubernetes.io/instance={release}", "-o", "name").stdout.split()
            if not left or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert left == [], left
        cluster_left = node_cluster.kube.kubectl(
            "get", "clusterroles,clusterrolebindings", "-l",
            f"app.kubernetes.io/instance={release}", "-o", "name").stdout.split()
        assert cluster_left == [], cluster_left
