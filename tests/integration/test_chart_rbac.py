"""The chart's RBAC is enough for the operator and no more, proven on the real API server.

The chart is installed with helm into the test kube-apiserver (RBAC authorizer on). The
operator then runs as a real process with the exact command line the chart renders, but
authenticated as the chart's ServiceAccount (a TokenRequest token, as in a pod), and takes a
CertificateDownload from a real repository process to a Ready kubernetes.io/tls Secret that
a real TLS handshake verifies. Its log must show no request the API server refused. Then the
same identity tries what its role does not allow, and the API server forbids it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from repository_harness import RepoProcess, base_config, create_tenant, running, write_config
from test_operator_support import (
    apply,
    eab_repository,
    get,
    local_ca_issuer,
    secret_files,
    tls_handshake,
    wait_condition,
    wait_for,
)

from certdepot.testenv import procs
from certdepot.testenv.kube import KubeEnv
from certdepot.testenv.pki import TestCA
from certdepot.testenv.provision import binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "certdepot"
RELEASE = "rbac"
NAMESPACE = "chart-rbac"  # where the chart (and the operator's ServiceAccount) lives
APP = "chart-rbac-app"  # where a team asks for a certificate
OPERATOR = "rbac-certdepot-operator"  # the chart's names for release "rbac"
SUBJECT = f"system:serviceaccount:{NAMESPACE}:{OPERATOR}"
NAMES = ["shop.rbac.test"]


def helm(home: Path, kube: KubeEnv, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    proc = subprocess.run(
        [str(binary("helm")), *args, "--kubeconfig", str(kube.kubeconfig)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@dataclass
class Release:
    kube: KubeEnv
    home: Path
    workdir: Path
    args: list[str]  # the operator's command line, as the chart renders it
    as_operator: Path  # kubeconfig with the ServiceAccount's token

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.kube.kubectl(*args, input=input, check=False, kubeconfig=self.as_operator)


@pytest.fixture(scope="module")
def release(
    kube: KubeEnv, crds_applied: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    home = tmp_path_factory.mktemp("helm-rbac")
    workdir = tmp_path_factory.mktemp("chart-rbac")
    values = ["--set", "repository.enabled=false"]
    helm(
        home,
        kube,
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        *values,
    )
    try:
        manifest = helm(home, kube, "get", "manifest", RELEASE, "--namespace", NAMESPACE).stdout
        deploy = next(d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "Deployment")
        container = deploy["spec"]["template"]["spec"]["containers"][0]
        assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == OPERATOR
        kube.kubectl("create", "namespace", APP)
        as_operator = kube.kubeconfig_for(NAMESPACE, OPERATOR, workdir / "operator.kubeconfig")
        yield Release(kube, home, workdir, list(container["args"]), as_operator)
    finally:
        kube.kubectl("delete", "namespace", APP, "--wait=false", check=False)
        helm(home, kube, "uninstall", RELEASE, "--namespace", NAMESPACE)
        kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_the_token_authenticates_as_the_charts_service_account(release: Release) -> None:
    proc = release.kubectl("auth", "whoami", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"]["userInfo"]["username"] == SUBJECT


@dataclass
class Depot:
    repo: RepoProcess
    root: TestCA


@pytest.fixture(scope="module")
def depot(release: Release) -> Iterator[Depot]:
    """A real repository (local CA) with a tenant that may download shop.rbac.test."""
    workdir = release.workdir
    root, issuer = local_ca_issuer(workdir, "rbac-root")
    port = procs.free_port()
    cfg = base_config(
        workdir,
        port,
        issuers=[issuer],
        certificates=[{"name": "shop", "dnsNames": NAMES, "issuer": "local"}],
        tenants=[{"name": "rbac-cluster", "download": ["shop"]}],
    )
    cfg_path = write_config(workdir, cfg)
    kid, hmac_key = create_tenant(workdir, cfg_path, "rbac-cluster")
    with running(workdir, cfg_path, port, name="rbac-repository") as repo:
        apply(
            release.kube,
            *eab_repository(
                repo, kid, hmac_key, name="depot", namespace=APP, secret_name="depot-eab"
            ),
        )
        yield Depot(repo, root)


@contextmanager
def operator_process(release: Release, name: str) -> Iterator[procs.ManagedProcess]:
    """`certdepot operator run` with the chart's own arguments, as the chart's identity.

    Appended is only what differs outside a pod: loopback listeners, the token kubeconfig
    (in a pod: the mounted token), the replica's name (in a pod: $(POD_NAME), expanded by
    the kubelet), faster rechecks for the test."""
    metrics_port, health_port = procs.free_port(), procs.free_port()
    argv = [sys.executable, "-m", "certdepot.cli", *release.args,
            "--bind", "127.0.0.1", "--metrics-port", str(metrics_port),
            "--health-port", str(health_port), "--kubeconfig", str(release.as_operator),
            "--identity", name, "--recheck-seconds", "5", "--backoff-base-seconds", "1",
            "--backoff-cap-seconds", "5"]
    # The chart sets POD_NAMESPACE from the downward API; the Lease and the Secrets of
    # cluster-scoped repositories live there.
    env = {"POD_NAMESPACE": NAMESPACE, "PYTHONPATH": str(ROOT / "operator")}
    proc = procs.start(name, argv, log_path=release.workdir / f"{name}.log", extra_env=env)
    try:
        proc.wait_for_port(health_port, timeout=60)
        # A standby is ready too (it waits for the Lease), so this holds for both roles.
        proc.wait_for_url(f"http://127.0.0.1:{health_port}/readyz", timeout=60)
        yield proc
    finally:
        proc.stop()


def delete_our_resources(release: Release) -> None:
    # While an operator still runs to remove its finalizers, so nothing of this module is
    # left for the operators of other tests to reconcile.
    release.kube.kubectl("delete", "ingresses,certificatedownloads,certificaterepositories",
                         "--all", "-n", APP, "--timeout=30s", check=False, timeout=60)


@pytest.fixture(scope="module")
def operator_as_service_account(release: Release, depot: Depot) -> Iterator[procs.ManagedProcess]:
    with operator_process(release, "operator-a") as proc:
        try:
            yield proc
        finally:
            if proc.running:
                delete_our_resources(release)


# kopf and the reconcilers name the status; the Lease elector logs only the exception type.
# A 403 right after a comma is the milliseconds of a log timestamp ("08:10:53,403").
FORBIDDEN_IN_LOG = re.compile(r"forbidden|(?<!,)\b403\b|ApiException", re.IGNORECASE)


def refused_by_the_api_server(log: str, repository_url: str) -> list[str]:
    """Log lines reporting a request the Kubernetes API refused.

    The ACME client logs the repository's own 403 answers (orderNotReady, unauthorized):
    those are about ACME, not RBAC, and are left out."""
    return [line for line in log.splitlines()
            if FORBIDDEN_IN_LOG.search(line) and repository_url not in line
            and "AcmeError" not in line]


def test_operator_as_the_charts_identity_delivers_a_certificate(
    release: Release,
    depot: Depot,
    operator_as_service_account: procs.ManagedProcess,
) -> None:
    kube, op = release.kube, operator_as_service_account
    wait_condition(kube, "certificaterepository", "depot", APP, status="True", proc=op, timeout=90)
    apply(
        kube,
        {
            "apiVersion": "certdepot.io/v1alpha1",
            "kind": "CertificateDownload",
            "metadata": {"name": "shop", "namespace": APP},
            "spec": {
                "repositoryRef": {"name": "depot"},
                "dnsNames": NAMES,
                "secretName": "shop-tls",
            },
        },
    )
    obj = wait_condition(
        kube, "certificatedownload", "shop", APP, status="True", proc=op, timeout=90
    )
    secret = get(kube, "secret", "shop-tls", APP)
    assert secret is not None and secret["type"] == "kubernetes.io/tls"
    crt, key = secret_files(secret, release.workdir)
    peer = tls_handshake(crt, key, depot.root.cert_path, NAMES[0])
    assert ("DNS", NAMES[0]) in peer["subjectAltName"]
    assert obj["status"]["serial"]
    # The Lease named after the release: leader election works under the Role.
    lease = get(kube, "lease", OPERATOR, NAMESPACE)
    assert lease is not None and lease["spec"]["holderIdentity"]
    # The ingress-shim works with read-only access to Ingresses: an annotated Ingress gets
    # its CertificateDownload, and nothing is written onto the Ingress.
    apply(
        kube,
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "shop",
                "namespace": APP,
                "annotations": {"certdepot.io/repository": "depot"},
            },
            "spec": {
                "tls": [{"hosts": NAMES, "secretName": "shop-ingress-tls"}],
                "defaultBackend": {"service": {"name": "shop", "port": {"number": 80}}},
            },
        },
    )
    shimmed = wait_condition(
        kube, "certificatedownload", "shop-ingress-tls", APP, status="True", proc=op, timeout=90
    )
    assert shimmed["metadata"]["ownerReferences"][0]["kind"] == "Ingress"
    # Events were posted (kopf and the reconcilers), under the same identity.
    events = json.loads(kube.kubectl("get", "events", "-n", APP, "-o", "json").stdout)
    assert events["items"], "the operator posted no Event"
    log = op.tail(100000)
    refused = refused_by_the_api_server(log, depot.repo.base_url)
    assert not refused, "the API server refused the operator:\n" + "\n".join(refused[:20])


# Verbs the operator's role must grant (checked by the API server's authorizer).
ALLOWED = [
    ("list", "certificatedownloads.certdepot.io", "--all-namespaces"),
    ("patch", "certificatedownloads.certdepot.io", f"-n={APP} --subresource=status"),
    ("watch", "clustercertificaterepositories.certdepot.io", ""),
    ("create", "secrets", f"-n={APP}"),
    ("watch", "secrets", "--all-namespaces"),
    ("get", "namespaces", ""),
    ("create", "events", f"-n={APP}"),
    ("watch", "ingresses.networking.k8s.io", f"-n={APP}"),
    ("create", "leases.coordination.k8s.io", f"-n={NAMESPACE}"),
    ("update", f"leases.coordination.k8s.io/{OPERATOR}", f"-n={NAMESPACE}"),
]

# What it must not be able to do.
FORBIDDEN = [
    ("list", "configmaps", "--all-namespaces"),
    ("delete", "namespaces", ""),
    ("create", "namespaces", ""),
    ("get", "pods", f"-n={APP}"),
    ("create", "pods", f"-n={NAMESPACE}"),
    ("create", "deployments.apps", f"-n={NAMESPACE}"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""),
    ("create", "serviceaccounts/token", f"-n={NAMESPACE}"),
    ("delete", "certificaterepositories.certdepot.io", f"-n={APP}"),
    ("create", "clustercertificaterepositories.certdepot.io", ""),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("update", "leases.coordination.k8s.io/kube-controller-manager", "-n=kube-system"),
    ("update", "leases.coordination.k8s.io/some-other-lease", f"-n={NAMESPACE}"),
    ("create", "leases.coordination.k8s.io", f"-n={APP}"),
    ("delete", "ingresses.networking.k8s.io", f"-n={APP}"),
    # The operator writes only status on what it watches (and never patches a Secret).
    ("patch", "ingresses.networking.k8s.io", f"-n={APP}"),
    ("patch", "certificatedownloads.certdepot.io", f"-n={APP}"),
    ("patch", "certificaterepositories.certdepot.io", f"-n={APP}"),
    ("patch", "clustercertificaterepositories.certdepot.io", ""),
    ("patch", "secrets", f"-n={APP}"),
    ("update", "certificatedownloads.certdepot.io", f"-n={APP} --subresource=status"),
    ("update", "certificaterepositories.certdepot.io", f"-n={APP}"),
    ("create", "delegatedcertificates.certdepot.io", f"-n={APP}"),
    ("create", "events.events.k8s.io", f"-n={APP}"),
]


def test_the_log_filter_keeps_api_refusals() -> None:
    log = ("POST https://127.0.0.1:1/acme/order/x/finalize \"HTTP/1.1 403 Forbidden\"\n"
           "AcmeError: repository: unauthorized (403)\n"
           'secrets is forbidden: User "system:serviceaccount:a:b" cannot list resource\n'
           "[2026-12-01 08:10:53,403] kopf.objects [INFO] Handler 'x' succeeded.\n"
           "Kubernetes API error 403 (lease)\n")
    lines = log.splitlines()
    assert refused_by_the_api_server(log, "https://127.0.0.1:1") == [lines[2], lines[4]]


def _can_i(
    release: Release, verb: str, resource: str, scope: str
) -> subprocess.CompletedProcess[str]:
    # resource/name checks one object by name; --subresource checks e.g. status.
    return release.kubectl("auth", "can-i", verb, resource, *scope.split())


@pytest.mark.parametrize(
    ("verb", "resource", "scope"), ALLOWED, ids=[f"{v} {r}" for v, r, _ in ALLOWED]
)
def test_the_role_grants(release: Release, verb: str, resource: str, scope: str) -> None:
    proc = _can_i(release, verb, resource, scope)
    assert proc.stdout.strip() == "yes", (proc.stdout, proc.stderr)


@pytest.mark.parametrize(
    ("verb", "resource", "scope"), FORBIDDEN, ids=[f"{v} {r}" for v, r, _ in FORBIDDEN]
)
def test_the_role_does_not_grant(release: Release, verb: str, resource: str, scope: str) -> None:
    proc = _can_i(release, verb, resource, scope)
    assert proc.stdout.strip() == "no", (proc.stdout, proc.stderr)


def test_listing_configmaps_cluster_wide_is_forbidden(release: Release) -> None:
    proc = release.kubectl("get", "configmaps", "--all-namespaces")
    assert proc.returncode != 0
    assert "forbidden" in proc.stderr.lower() and SUBJECT in proc.stderr, proc.stderr


def test_deleting_a_namespace_is_forbidden(release: Release) -> None:
    proc = release.kubectl("delete", "namespace", APP)
    assert proc.returncode != 0
    assert "forbidden" in proc.stderr.lower(), proc.stderr
    assert get(release.kube, "namespace", APP) is not None


def test_reading_pods_is_forbidden(release: Release) -> None:
    proc = release.kubectl("get", "pods", "-n", NAMESPACE)
    assert proc.returncode != 0 and "forbidden" in proc.stderr.lower(), proc.stderr


def test_watching_some_namespaces_grants_secrets_only_there(
    release: Release, kube: KubeEnv
) -> None:
    # A second release that watches only APP: Secrets there and in its own namespace, not
    # elsewhere.
    ns = "chart-rbac-scoped"
    helm(
        release.home,
        kube,
        "install",
        "scoped",
        str(CHART),
        "--namespace",
        ns,
        "--create-namespace",
        "--set",
        "repository.enabled=false",
        "--set",
        f"operator.watchNamespaces={{{APP}}}",
    )
    try:
        subject = f"system:serviceaccount:{ns}:scoped-certdepot-operator"

        def can(verb: str, resource: str, namespace: str | None) -> str:
            scope = ["-n", namespace] if namespace else []
            out: str = kube.kubectl(
                "auth", "can-i", verb, resource, *scope, "--as", subject, check=False
            ).stdout.strip()
            return out

        assert can("create", "secrets", APP) == "yes"
        assert can("create", "secrets", ns) == "yes"
        assert can("create", "secrets", NAMESPACE) == "no"
        assert can("create", "secrets", "default") == "no"
        assert can("list", "certificatedownloads.certdepot.io", "default") == "no"
        # Cluster-scoped repositories are watched whatever the namespaces.
        assert can("watch", "clustercertificaterepositories.certdepot.io", None) == "yes"
    finally:
        helm(release.home, kube, "uninstall", "scoped", "--namespace", ns)
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _lease_holder(release: Release) -> str:
    lease = get(release.kube, "lease", OPERATOR, NAMESPACE)
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def test_a_second_replica_takes_over_under_the_same_role(
        release: Release, depot: Depot, operator_as_service_account: procs.ManagedProcess,
) -> None:
    """HA (operator.replicas=2): the standby waits on the Lease, takes it when the leader
    goes, and then reconciles, all within the chart's RBAC (the Lease rules are the narrow
    ones: get/update only on the release's Lease)."""
    kube, primary = release.kube, operator_as_service_account
    wait_condition(kube, "certificatedownload", "shop", APP, status="True", proc=primary)
    assert _lease_holder(release) == "operator-a"
    with operator_process(release, "operator-b") as standby:
        try:
            time.sleep(6)  # a few Lease attempts while the leader renews
            assert _lease_holder(release) == "operator-a"
            assert "acquired lease" not in standby.tail(100000)
            primary.stop()  # SIGTERM, as on a rollout: the leader releases the Lease
            wait_for("operator-b to hold the Lease",
                     lambda: _lease_holder(release) == "operator-b", timeout=60, proc=standby)
            # The new leader reconciles: a deleted Secret comes back.
            kube.kubectl("delete", "secret", "shop-tls", "-n", APP)
            wait_for("shop-tls to be written again by operator-b",
                     lambda: get(kube, "secret", "shop-tls", APP), timeout=60, proc=standby)
            refused = refused_by_the_api_server(standby.tail(100000), depot.repo.base_url)
            assert not refused, "the API server refused the standby:\n" + "\n".join(refused[:20])
        finally:
            delete_our_resources(release)
