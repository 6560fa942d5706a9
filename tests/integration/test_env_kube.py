"""The Kubernetes test environment is real: CRD schemas validate, kubectl works, RBAC is on,
TokenRequest works, and the API server survives a restart."""

from __future__ import annotations

import json
import subprocess

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from certdepot.testenv.kube import KubectlError, KubeEnv

NAMESPACE = "env-kube"

VALID = """
apiVersion: certdepot.io/v1alpha1
kind: CertificateDownload
metadata: {name: www, namespace: env-kube}
spec:
  repositoryRef: {name: central}
  dnsNames: [www.example.test, example.test]
  secretName: www-tls
"""


@pytest.fixture(scope="module")
def namespace(kube: KubeEnv, crds_applied: list[str]) -> str:
    kube.kubectl("create", "namespace", NAMESPACE)
    return NAMESPACE


def test_crds_are_established_and_listed(kube: KubeEnv, crds_applied: list[str]) -> None:
    assert {
        "certificatedownloads.certdepot.io",
        "delegatedcertificates.certdepot.io",
        "certificaterepositories.certdepot.io",
        "clustercertificaterepositories.certdepot.io",
    } <= set(crds_applied)
    out = kube.kubectl("get", "crd", "-o", "name").stdout.split()
    assert all(f"customresourcedefinition.apiextensions.k8s.io/{n}" in out for n in crds_applied)


def test_valid_object_is_stored_with_defaults_and_listed(kube: KubeEnv, namespace: str) -> None:
    kube.kubectl("apply", "-f", "-", input=VALID)
    listed = kube.kubectl("get", "certificatedownloads", "-n", namespace, "-o", "json").stdout
    items = json.loads(listed)["items"]
    assert [i["metadata"]["name"] for i in items] == ["www"]
    # Defaults come from the structural schema, applied by the API server.
    assert items[0]["spec"]["repositoryRef"]["kind"] == "CertificateRepository"
    # The short name and the printer columns work for a human too.
    table = kube.kubectl("get", "cdl", "-n", namespace).stdout
    assert "www" in table and "www-tls" in table and "SECRET" in table


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"dnsNames": []}, "spec.dnsNames"),
        ({"dnsNames": ["Not A Name!"]}, "spec.dnsNames[0]"),
        ({"secretName": None}, "spec.secretName"),
        ({"renewBefore": "soon"}, "spec.renewBefore"),
        ({"repositoryRef": {"name": "central", "kind": "Issuer"}}, "spec.repositoryRef.kind"),
    ],
)
def test_invalid_object_is_rejected_by_the_schema(
    kube: KubeEnv, namespace: str, patch: dict[str, object], message: str
) -> None:
    import yaml

    doc = yaml.safe_load(VALID)
    doc["metadata"]["name"] = "invalid"
    for key, value in patch.items():
        if value is None:
            del doc["spec"][key]
        else:
            doc["spec"][key] = value
    with pytest.raises(KubectlError) as info:
        kube.kubectl("create", "-f", "-", input=yaml.safe_dump(doc))
    assert "is invalid" in info.value.stderr
    assert message in info.value.stderr
    got = kube.kubectl("get", "certificatedownload", "invalid", "-n", namespace, check=False)
    assert got.returncode != 0 and "NotFound" in got.stderr


def test_rbac_is_enforced_for_a_fresh_service_account(kube: KubeEnv, namespace: str) -> None:
    kubeconfig = kube.kubeconfig_for(namespace, "nobody-special")
    denied = kube.kubectl("get", "secrets", "-n", namespace, kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr
    assert "system:serviceaccount:env-kube:nobody-special" in denied.stderr
    # The same request through the Python client, with a bare token.
    token = kube.token_for(namespace, "nobody-special")
    config = client.Configuration()
    config.host = kube.server
    config.ssl_ca_cert = str(kube.ca_path)
    config.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(config) as api, pytest.raises(ApiException) as info:
        client.CoreV1Api(api).list_namespaced_secret(namespace)
    assert info.value.status == 403


def test_rbac_grant_takes_effect(kube: KubeEnv, namespace: str) -> None:
    kube.kubectl("create", "role", "secret-reader", "-n", namespace,
                 "--verb=list", "--resource=secrets")
    kube.kubectl("create", "rolebinding", "secret-reader", "-n", namespace,
                 "--role=secret-reader", f"--serviceaccount={namespace}:reader")
    kubeconfig = kube.kubeconfig_for(namespace, "reader")
    allowed = kube.kubectl("get", "secrets", "-n", namespace, kubeconfig=kubeconfig)
    assert allowed.returncode == 0


def test_admin_api_client_and_restart(kube: KubeEnv, namespace: str) -> None:
    with kube.api_client() as api:
        names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
    assert NAMESPACE in names
    kube.restart()
    # Data survives (etcd kept running) and the same kubeconfig still works.
    out = kube.kubectl("get", "certificatedownload", "www", "-n", namespace, "-o", "name")
    assert out.stdout.strip() == "certificatedownload.certdepot.io/www"


def test_kubectl_version_matches_pin(kube: KubeEnv) -> None:
    from certdepot.testenv.provision import KUBERNETES_VERSION

    out = json.loads(kube.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == KUBERNETES_VERSION
    assert isinstance(kube.kubectl("get", "ns"), subprocess.CompletedProcess)
