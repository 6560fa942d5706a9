"""CertificateDownload end to end: kubectl, the real API server, the real repository process,
the operator as a real process, and a TLS handshake against the Secret it writes."""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from repository_harness import base_config, cli
from test_operator_support import (
    Setup,
    apply,
    get,
    local_ca_issuer,
    namespace,
    operator,
    repository_and_operator,
    secret_files,
    tls_handshake,
    wait_condition,
    wait_for,
)

from certdepot.acme import crypto
from certdepot.testenv import procs
from certdepot.testenv.kube import KubeEnv

NAMES = ["www.example.test", "example.test"]
REPO = "central"


@pytest.fixture(scope="module")
def setup(
    kube: KubeEnv,
    crds_applied: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("operator-download")
    root, issuer = local_ca_issuer(workdir, "depot-root")
    port = procs.free_port()
    cfg = base_config(
        workdir,
        port,
        issuers=[issuer],
        certificates=[
            {"name": "web", "dnsNames": NAMES, "issuer": "local"},
            {"name": "secret-project", "dnsNames": ["hidden.example.test"], "issuer": "local"},
        ],
        tenants=[{"name": "cluster-1", "download": ["web"]}],
    )
    namespaces = [
        namespace("certdepot", {}),
        namespace("team-a", {"team": "a"}),
        namespace("team-b", {"team": "b"}),
    ]
    repository = {
        "name": REPO,
        "namespace": None,
        "secret_name": "central-eab",
        "secret_namespace": "certdepot",
        "namespaceSelector": {"matchLabels": {"team": "a"}},
    }
    with repository_and_operator(
        kube, workdir, cfg, port, tenant="cluster-1", namespaces=namespaces, repository=repository
    ) as (repo, op):
        yield Setup(kube, repo, root, workdir, op)


def download(
    name: str, namespace: str, secret: str, names: list[str] = NAMES, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "certdepot.io/v1alpha1",
        "kind": "CertificateDownload",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "repositoryRef": {"kind": "ClusterCertificateRepository", "name": REPO},
            "dnsNames": names,
            "secretName": secret,
            **spec,
        },
    }


def secret_serial(s: Setup, name: str, namespace: str = "team-a") -> str | None:
    secret = get(s.kube, "secret", name, namespace)
    if secret is None or "tls.crt" not in (secret.get("data") or {}):
        return None
    leaf = crypto.parse_pem_chain(base64.b64decode(secret["data"]["tls.crt"]))[0]
    return crypto.serial_hex(leaf).lower().lstrip("0") or "0"


def test_repository_becomes_ready_with_account(setup: Setup) -> None:
    obj = wait_condition(
        setup.kube, "clustercertificaterepository", REPO, None, status="True", proc=setup.op.proc
    )
    status = obj["status"]
    assert status["accountURL"].startswith(setup.repo.base_url)
    assert status["directory"]["downloadEnabled"] is True
    key_secret = get(setup.kube, "secret", status["accountKeySecretName"], "certdepot")
    assert key_secret is not None and "account.key" in key_secret["data"]


def test_download_is_served_by_a_real_tls_server(setup: Setup) -> None:
    s = setup
    started = time.monotonic()
    apply(s.kube, download("web", "team-a", "web-tls", secretTemplate={"labels": {"app": "web"}}))
    obj = wait_condition(
        s.kube, "certificatedownload", "web", "team-a", status="True", proc=s.op.proc
    )
    print(f"\nmeasured: kubectl apply -> Ready {time.monotonic() - started:.2f}s")
    secret = get(s.kube, "secret", "web-tls", "team-a")
    assert secret is not None and secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["labels"]["app"] == "web"
    assert (
        secret["metadata"]["annotations"]["certdepot.io/owner"] == "CertificateDownload/team-a/web"
    )
    crt, key = secret_files(secret, s.workdir)
    # Verify against the root we gave the repository, not against anything from the Secret.
    peer = tls_handshake(crt, key, s.root.cert_path, "www.example.test")
    assert ("DNS", "www.example.test") in peer["subjectAltName"]
    tls_handshake(crt, key, s.root.cert_path, "example.test")
    ca = base64.b64decode(secret["data"]["ca.crt"])
    assert crypto.parse_pem_chain(ca)[0] == s.root.cert
    # Nothing but status is written onto the resource: no finalizer, no bookkeeping.
    assert not obj["metadata"].get("finalizers")
    assert not any(k.startswith("certdepot.io/") for k in obj["metadata"].get("annotations") or {})
    status = obj["status"]
    assert status["serial"] == secret_serial(s, "web-tls")
    assert status["notAfter"] and status["renewalTime"] and status["fingerprint"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    events = s.kube.kubectl("get", "events", "-n", "team-a", "-o", "json").stdout
    assert "Downloaded" in events
    assert "PRIVATE KEY" not in events and "PRIVATE KEY" not in str(status)
    printed = s.kube.kubectl("get", "cdl", "-n", "team-a").stdout
    assert "web-tls" in printed and "True" in printed


def test_secret_deleted_by_hand_comes_back(setup: Setup) -> None:
    s = setup
    wait_condition(s.kube, "certificatedownload", "web", "team-a", status="True", proc=s.op.proc)
    before = secret_serial(s, "web-tls")
    started = time.monotonic()
    s.kube.kubectl("delete", "secret", "web-tls", "-n", "team-a")
    after = wait_for(
        "the Secret to come back", lambda: secret_serial(s, "web-tls"), timeout=30, proc=s.op.proc
    )
    print(f"\nmeasured: Secret deleted -> back {time.monotonic() - started:.2f}s")
    assert after == before  # the same certificate, downloaded again


def secret_watch_events(kube: KubeEnv) -> int:
    """Secret watch events the API server has sent to all its watchers so far."""
    context = ssl.create_default_context(cafile=str(kube.ca_path))
    context.load_cert_chain(str(kube.admin_cert), str(kube.admin_key))
    text = httpx.get(f"{kube.server}/metrics", verify=context, timeout=30).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("apiserver_watch_events_total{") and 'resource="secrets"' in line
    )


def created_secrets_events(s: Setup, prefix: str, labels: dict[str, str]) -> int:
    """The watch events that creating 10 Secrets with ``labels`` caused, for all watchers."""
    before = secret_watch_events(s.kube)
    for n in range(10):
        meta = {"name": f"{prefix}-{n}", "namespace": "team-b", "labels": labels}
        apply(s.kube, {"apiVersion": "v1", "kind": "Secret", "metadata": meta})
    time.sleep(1)  # the watch cache dispatches within milliseconds
    return secret_watch_events(s.kube) - before


def test_other_secrets_are_filtered_by_the_api_server(setup: Setup) -> None:
    """The operator's Secret watch asks for certdepot's Secrets only (a label selector): of
    10 Secrets labelled as certdepot's and 10 others, only the first reach its watch (the API
    server's own watchers see both alike); its own Secret deleted still comes back."""
    s = setup
    wait_condition(s.kube, "certificatedownload", "web", "team-a", status="True", proc=s.op.proc)
    unrelated = created_secrets_events(s, "unrelated", {"app": "other"})
    labelled = created_secrets_events(s, "labelled", {"app.kubernetes.io/managed-by": "certdepot"})
    assert labelled - unrelated >= 10, (labelled, unrelated)
    serial = secret_serial(s, "web-tls")
    s.kube.kubectl("delete", "secret", "web-tls", "-n", "team-a")
    wait_for(
        "the Secret to come back", lambda: secret_serial(s, "web-tls"), timeout=30, proc=s.op.proc
    )
    assert secret_serial(s, "web-tls") == serial


def test_altered_secret_is_put_right(setup: Setup) -> None:
    s = setup
    wait_condition(s.kube, "certificatedownload", "web", "team-a", status="True", proc=s.op.proc)
    good = secret_serial(s, "web-tls")
    # Someone pastes another certificate over it (here: the repository's own TLS certificate).
    pasted = base64.b64encode(s.repo.ca_path.read_bytes()).decode()
    s.kube.kubectl(
        "patch",
        "secret",
        "web-tls",
        "-n",
        "team-a",
        "--type",
        "merge",
        "-p",
        json.dumps({"data": {"tls.crt": pasted}}),
    )
    wait_for(
        "the certificate to be put back",
        lambda: secret_serial(s, "web-tls") == good,
        timeout=30,
        proc=s.op.proc,
    )


def test_unmanaged_secret_is_not_overwritten(setup: Setup) -> None:
    s = setup
    apply(
        s.kube,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "taken", "namespace": "team-a"},
            "stringData": {"note": "someone else's"},
        },
    )
    apply(s.kube, download("conflict", "team-a", "taken"))
    obj = wait_condition(
        s.kube,
        "certificatedownload",
        "conflict",
        "team-a",
        status="False",
        reason="SecretConflict",
        proc=s.op.proc,
    )
    assert "adoptExistingSecret" in obj["status"]["conditions"][0]["message"]
    secret = get(s.kube, "secret", "taken", "team-a")
    assert secret is not None and set(secret["data"]) == {"note"}
    assert "certdepot.io/owner" not in (secret["metadata"].get("annotations") or {})


def test_namespace_not_admitted_by_the_selector(setup: Setup) -> None:
    s = setup
    apply(s.kube, download("web", "team-b", "web-tls"))
    wait_condition(
        s.kube,
        "certificatedownload",
        "web",
        "team-b",
        status="False",
        reason="RepositoryNotAllowed",
        proc=s.op.proc,
    )
    assert get(s.kube, "secret", "web-tls", "team-b") is None


def test_not_granted_certificate_is_refused(setup: Setup) -> None:
    s = setup
    apply(s.kube, download("hidden", "team-a", "hidden-tls", names=["hidden.example.test"]))
    obj = wait_condition(
        s.kube, "certificatedownload", "hidden", "team-a", status="False", proc=s.op.proc
    )
    assert ready_reason(obj) in {"Unauthorized", "RejectedIdentifier"}
    assert get(s.kube, "secret", "hidden-tls", "team-a") is None


def ready_reason(obj: dict[str, Any]) -> str:
    return str(obj["status"]["conditions"][0]["reason"])


def test_renewal_at_the_repository_reaches_the_secret(setup: Setup) -> None:
    s = setup
    wait_condition(s.kube, "certificatedownload", "web", "team-a", status="True", proc=s.op.proc)
    before = secret_serial(s, "web-tls")
    started = time.monotonic()
    cli(s.workdir, s.repo.config_path, "renew", "web")
    after = wait_for(
        "the renewed certificate in the Secret",
        lambda: (serial := secret_serial(s, "web-tls")) != before and serial,
        timeout=60,
        proc=s.op.proc,
    )
    print(f"\nmeasured: repository renew -> new serial in Secret {time.monotonic() - started:.2f}s")
    assert after and after != before


def test_metrics_and_health(setup: Setup) -> None:
    s = setup
    text = (
        urllib.request.urlopen(f"http://127.0.0.1:{s.op.metrics_port}/metrics", timeout=10)
        .read()
        .decode()
    )
    assert (
        'certdepot_certificate_ready_status{condition="True",kind="CertificateDownload",'
        'name="web",namespace="team-a"} 1.0'
        in text
    )
    assert "certdepot_certificate_expiration_timestamp_seconds" in text
    assert "certdepot_acme_client_requests_total" in text
    assert "certdepot_operator_leader 1.0" in text
    # Private keys never reach the log (the Secret's key, base64 or PEM).
    secret = get(s.kube, "secret", "web-tls", "team-a")
    assert secret is not None
    log = (s.workdir / "operator.log").read_text()
    assert "PRIVATE KEY" not in log and secret["data"]["tls.key"][:40] not in log
    for path in ("healthz", "readyz"):
        with urllib.request.urlopen(
            f"http://127.0.0.1:{s.op.health_port}/{path}", timeout=10
        ) as resp:
            assert resp.status == 200


def test_annotated_ingress_gets_a_certificate_download(setup: Setup) -> None:
    s = setup
    ingress: dict[str, Any] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "shop",
            "namespace": "team-a",
            "annotations": {"certdepot.io/cluster-repository": REPO},
        },
        "spec": {
            "tls": [{"hosts": NAMES, "secretName": "shop-tls"}],
            "rules": [
                {
                    "host": "www.example.test",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "shop", "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ],
        },
    }
    apply(s.kube, ingress)
    obj = wait_condition(
        s.kube, "certificatedownload", "shop-tls", "team-a", status="True", proc=s.op.proc
    )
    owner = obj["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Ingress", "shop")
    assert sorted(obj["spec"]["dnsNames"]) == sorted(NAMES)
    secret = get(s.kube, "secret", "shop-tls", "team-a")
    assert secret is not None
    crt, key = secret_files(secret, s.workdir)
    tls_handshake(crt, key, s.root.cert_path, "www.example.test")
    # Dropping the tls entry removes the CertificateDownload the shim made for it ...
    ingress["spec"]["tls"] = [
        {"hosts": NAMES, "secretName": "shop-tls"},
        {"hosts": NAMES, "secretName": "shop-2-tls"},
    ]
    apply(s.kube, ingress)
    wait_for(
        "the second CertificateDownload",
        lambda: get(s.kube, "certificatedownload", "shop-2-tls", "team-a") is not None,
        timeout=30,
        proc=s.op.proc,
    )
    ingress["spec"]["tls"] = [{"hosts": NAMES, "secretName": "shop-tls"}]
    apply(s.kube, ingress)
    wait_for(
        "the dropped entry's CertificateDownload to go",
        lambda: get(s.kube, "certificatedownload", "shop-2-tls", "team-a") is None,
        timeout=30,
        proc=s.op.proc,
    )
    # ... and so does removing the annotation.
    s.kube.kubectl(
        "annotate", "ingress", "shop", "-n", "team-a", "certdepot.io/cluster-repository-"
    )
    wait_for(
        "the shim's CertificateDownload to go",
        lambda: get(s.kube, "certificatedownload", "shop-tls", "team-a") is None,
        timeout=30,
        proc=s.op.proc,
    )


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no-ca-bundle", "TLSError"),
        ("wrong-eab", None),
        ("unreachable", "ConnectionError"),
    ],
)
def test_repository_says_why_it_is_not_ready(setup: Setup, case: str, reason: str | None) -> None:
    s = setup
    spec: dict[str, Any] = {
        "url": s.repo.directory_url,
        "caBundle": base64.b64encode(s.repo.ca_path.read_bytes()).decode(),
        "externalAccountBinding": {"keyID": "no-such-kid", "keySecretRef": {"name": "bad-eab"}},
    }
    if case == "no-ca-bundle":
        del spec["caBundle"]
    if case == "unreachable":
        spec["url"] = f"https://127.0.0.1:{procs.free_port()}/directory"
    apply(
        s.kube,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "bad-eab", "namespace": "team-a"},
            "stringData": {"secret": "c2VjcmV0LWJ1dC13cm9uZw"},
        },
        {
            "apiVersion": "certdepot.io/v1alpha1",
            "kind": "CertificateRepository",
            "metadata": {"name": case, "namespace": "team-a"},
            "spec": spec,
        },
    )
    obj = wait_condition(
        s.kube,
        "certificaterepository",
        case,
        "team-a",
        status="False",
        reason=reason,
        proc=s.op.proc,
    )
    cond = obj["status"]["conditions"][0]
    assert cond["message"]
    if case == "wrong-eab":
        assert cond["reason"] in {"Unauthorized", "ExternalAccountRequired", "AcmeError"}, cond
        assert "c2VjcmV0LWJ1dC13cm9uZw" not in str(obj)  # the HMAC key never shows


def test_deleting_the_resource_keeps_the_secret(setup: Setup) -> None:
    s = setup
    apply(s.kube, download("short-lived", "team-a", "short-lived-tls"))
    wait_condition(
        s.kube, "certificatedownload", "short-lived", "team-a", status="True", proc=s.op.proc
    )
    s.kube.kubectl(
        "delete", "certificatedownload", "short-lived", "-n", "team-a", "--wait=true", timeout=30
    )
    # As with cert-manager, the Secret outlives its resource (consumers keep serving).
    assert secret_serial(s, "short-lived-tls") is not None


def test_restart_resumes_without_downloading_again(setup: Setup) -> None:
    """Last in this module: it replaces the operator process."""
    s = setup
    wait_condition(s.kube, "certificatedownload", "web", "team-a", status="True", proc=s.op.proc)
    before = get(s.kube, "secret", "web-tls", "team-a")
    assert before is not None
    repo_before = get(s.kube, "clustercertificaterepository", REPO)
    assert repo_before is not None
    key_before = get(s.kube, "secret", repo_before["status"]["accountKeySecretName"], "certdepot")
    s.op.proc.stop()
    with operator(s.kube, s.workdir, name="operator-restarted") as op:
        wait_for(
            "the restarted operator to look at the resource",
            lambda: "UpToDate" in op.proc.tail(200) or _reconciled_after_restart(s),
            timeout=30,
            proc=op.proc,
        )
        after = get(s.kube, "secret", "web-tls", "team-a")
        assert after is not None
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        # The account (and its key) are reused, not registered anew.
        repo_after = wait_condition(
            s.kube, "clustercertificaterepository", REPO, None, status="True", proc=op.proc
        )
        assert repo_after["status"]["accountURL"] == repo_before["status"]["accountURL"]
        key_after = get(
            s.kube, "secret", repo_before["status"]["accountKeySecretName"], "certdepot"
        )
        assert key_after == key_before


def _reconciled_after_restart(s: Setup) -> bool:
    obj = get(s.kube, "certificatedownload", "web", "team-a")
    return ready_condition_reason(obj) == "UpToDate"


def ready_condition_reason(obj: dict[str, Any] | None) -> str:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("reason"))
    return ""
