"""The one-node cluster itself: a pod runs the project image, resolves cluster names through
CoreDNS, reaches kube-apiserver through the `kubernetes` Service (kube-proxy), and nothing
resolves or routes outside this machine."""

from __future__ import annotations

import json
import time

import yaml

from certdepot.testenv.node import NodeCluster

PROBE = r"""
import json, socket, ssl
out = {}
out["api_ip"] = socket.gethostbyname("kubernetes.default.svc.cluster.local")
ctx = ssl.create_default_context(cafile="/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
with socket.create_connection(("kubernetes.default.svc", 443), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="kubernetes.default.svc") as tls:
        out["api_tls"] = tls.version()
try:
    socket.gethostbyname("pypi.org")
    out["outside_dns"] = "resolved"
except OSError as exc:
    out["outside_dns"] = type(exc).__name__
print(json.dumps(out))
"""


def _run_pod(cluster: NodeCluster, name: str, code: str, timeout: float = 120) -> str:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "probe",
                "image": "certdepot:dev",
                "imagePullPolicy": "Never",
                "command": ["/opt/certdepot/bin/python", "-c", code],
            }],
        },
    }
    cluster.kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(pod))
    deadline = time.monotonic() + timeout
    phase = ""
    while time.monotonic() < deadline:
        phase = cluster.kube.kubectl(
            "get", "pod", name, "-o", "jsonpath={.status.phase}").stdout
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(1)
    logs = cluster.kube.kubectl("logs", name, check=False).stdout
    describe = cluster.kube.kubectl("describe", "pod", name, check=False).stdout
    assert phase == "Succeeded", f"pod {name} is {phase!r}\n{logs}\n{describe}"
    cluster.kube.kubectl("delete", "pod", name, "--wait=false")
    return logs


def test_a_pod_reaches_the_api_through_dns_and_the_service(node_cluster: NodeCluster) -> None:
    out = json.loads(_run_pod(node_cluster, "probe", PROBE).strip().splitlines()[-1])
    assert out["api_ip"] == "10.0.0.1"  # the ClusterIP of `kubernetes`, from CoreDNS
    assert out["api_tls"].startswith("TLSv1.")
    # CoreDNS answers cluster.local only: nothing a pod asks for leaves this machine.
    assert out["outside_dns"] == "gaierror"


def test_the_node_reports_its_runtime(node_cluster: NodeCluster) -> None:
    node = json.loads(node_cluster.kube.kubectl("get", "node", "-o", "json").stdout)["items"][0]
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert info["kubeletVersion"] == "v1.37.2"
    images = {n for i in node["status"].get("images", []) for n in i.get("names", [])}
    assert any(n.endswith("certdepot:dev") for n in images), images
