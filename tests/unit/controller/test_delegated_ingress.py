"""DelegatedCertificate steps, key policy, and the ingress shim's pure mapping."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from certdepot.acme import crypto
from certdepot.acme.csr_template import P256_TLS_SERVER
from certdepot.controller.core import certinfo
from certdepot.controller.kinds import delegated, ingress
from certdepot.controller.kinds.deps import Deps
from certdepot.controller.kube import secrets

from .conftest import Clock, Events
from .fakes import FakeKube, FakeRepository, MiniCA


def body(**spec: Any) -> dict[str, Any]:
    full: dict[str, Any] = {
        "repositoryRef": {"name": "depot"},
        "delegation": "cdn1",
        "dnsNames": ["cdn-1.example.test"],
        "secretName": "cdn-tls",
        "privateKey": {"algorithm": "ECDSA", "encoding": "PKCS1", "rotationPolicy": "Always"},
    }
    full.update(spec)
    return {
        "kind": "DelegatedCertificate",
        "metadata": {"name": "cdn", "namespace": "team-a", "uid": "uid-cdn", "generation": 1},
        "spec": full,
        "status": {},
    }


def secret_key(kube: FakeKube) -> crypto.PrivateKey:
    return crypto.load_private_key(
        base64.b64decode(kube.secrets[("team-a", "cdn-tls")]["data"]["tls.key"])
    )


async def test_issue_generates_key_in_cluster_and_sends_only_a_csr(
    deps: Deps, kube: FakeKube, repo: FakeRepository, events: Events
) -> None:
    step = await delegated.reconcile(body(), deps)
    assert step.status["conditions"][0]["reason"] == "Issued", step.status
    key = secret_key(kube)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    pem = base64.b64decode(kube.secrets[("team-a", "cdn-tls")]["data"]["tls.key"])
    assert pem.startswith(b"-----BEGIN EC PRIVATE KEY")  # PKCS1 = traditional
    csr_key = x509.load_der_x509_csr(repo.csrs[0]).public_key()
    assert crypto.public_key_matches(key, repo.last_issued[0])
    assert isinstance(csr_key, ec.EllipticCurvePublicKey)
    assert csr_key.public_numbers() == key.public_key().public_numbers()
    assert step.status["privateKeyFingerprint"] == crypto.public_key_fingerprint(key)
    assert step.status["delegationURL"].endswith("/cdn1")
    assert events[-1][1] == "Issued"


async def test_template_is_used_and_key_type_checked(deps: Deps, repo: FakeRepository) -> None:
    repo.delegation_list[0] = type(repo.delegation_list[0])(
        repo.delegation_list[0].url, P256_TLS_SERVER
    )
    ok = await delegated.reconcile(body(), deps)
    assert ok.status["conditions"][0]["status"] == "True"
    csr = x509.load_der_x509_csr(repo.csrs[-1])
    assert csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    changed = body(privateKey={"algorithm": "RSA", "size": 2048})
    changed["status"] = ok.status  # the same object, its spec changed after a first step
    bad = await delegated.reconcile(changed, deps)
    cond = bad.status["conditions"][0]
    # The old certificate is still valid and stays; the failure is reported beside it.
    assert (cond["status"], cond["reason"]) == ("True", "RenewalFailed")
    assert "template does not allow key" in bad.status["lastFailureMessage"]
    assert len(repo.csrs) == 1  # refused before anything was sent
    fresh = body(privateKey={"algorithm": "RSA", "size": 2048}, secretName="other-tls")
    cond = (await delegated.reconcile(fresh, deps)).status["conditions"][0]
    assert (cond["status"], cond["reason"]) == ("False", "BadCSR")


async def test_rotation_policy(
    deps: Deps, kube: FakeKube, repo: FakeRepository, clock: Clock
) -> None:
    b = body(privateKey={"algorithm": "ECDSA", "rotationPolicy": "Never"})
    b["status"] = (await delegated.reconcile(b, deps)).status
    first = secret_key(kube)
    clock.now += dt.timedelta(days=5)  # 6-day certificates: past the default third
    b["status"] = {**b["status"], **(await delegated.reconcile(b, deps)).status}
    assert len(repo.csrs) == 2
    assert crypto.public_key_fingerprint(secret_key(kube)) == crypto.public_key_fingerprint(first)
    b["spec"]["privateKey"] = {"algorithm": "ECDSA", "rotationPolicy": "Always"}
    clock.now += dt.timedelta(days=5)
    await delegated.reconcile(b, deps)
    assert crypto.public_key_fingerprint(secret_key(kube)) != crypto.public_key_fingerprint(first)


async def test_spec_change_that_matters_reissues(
    deps: Deps, kube: FakeKube, repo: FakeRepository
) -> None:
    b = body()
    b["status"] = (await delegated.reconcile(b, deps)).status
    b["spec"]["secretTemplate"] = {"labels": {"x": "y"}}
    b["metadata"]["generation"] = 2
    b["status"] = {**b["status"], **(await delegated.reconcile(b, deps)).status}
    assert len(repo.csrs) == 1  # metadata only: rewritten, not re-issued
    assert kube.secrets[("team-a", "cdn-tls")]["metadata"]["labels"]["x"] == "y"
    b["spec"]["privateKey"] = {"algorithm": "RSA", "size": 2048, "encoding": "PKCS8"}
    b["metadata"]["generation"] = 3
    await delegated.reconcile(b, deps)
    assert len(repo.csrs) == 2 and isinstance(secret_key(kube), rsa.RSAPrivateKey)


async def test_auto_renewal_is_followed_with_the_same_key(
    deps: Deps, kube: FakeKube, repo: FakeRepository, clock: Clock
) -> None:
    b = body(autoRenewal={"enabled": True, "lifetime": "48h"})
    b["status"] = (await delegated.reconcile(b, deps)).status
    key = secret_key(kube)
    serial = b["status"]["serial"]
    # The repository re-issued for the same CSR (STAR): same key, new serial.
    leaf = repo.ca._cert(
        "",
        repo.ca.int_key,
        key.public_key(),
        repo.ca.intermediate,
        ca=False,
        names=["cdn-1.example.test"],
        not_before=clock.now,
        lifetime=dt.timedelta(days=6),
    )
    repo.last_issued = [leaf, repo.ca.intermediate, repo.ca.root]
    clock.now += dt.timedelta(days=3, hours=1)
    step = await delegated.reconcile(b, deps)
    assert step.status["conditions"][0]["reason"] == "AutoRenewed"
    assert step.status["serial"] != serial and len(repo.csrs) == 1


def test_order_extra() -> None:
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    assert delegated.order_extra({"duration": "48h"}, now) == {"notAfter": "2026-06-03T00:00:00Z"}
    auto = delegated.order_extra({"autoRenewal": {"enabled": True, "lifetime": "1h"}}, now)
    assert auto["auto-renewal"]["lifetime"] == 3600 and auto["auto-renewal"]["end-date"]


def generate_key(algorithm: str, size: int | None = None) -> crypto.PrivateKey:
    return crypto.generate_private_key(certinfo.key_kind(algorithm, size))


def test_key_generation_per_algorithm() -> None:
    assert isinstance(generate_key("Ed25519"), ed25519.Ed25519PrivateKey)
    assert generate_key("RSA", 3072).key_size == 3072  # type: ignore[union-attr]
    assert generate_key("ECDSA", 384).curve.name == "secp384r1"  # type: ignore[union-attr]
    assert crypto.private_key_to_pem(generate_key("Ed25519"), traditional=True).startswith(
        b"-----BEGIN PRIVATE KEY"
    )


def test_ingress_mapping() -> None:
    ing: dict[str, Any] = {
        "metadata": {
            "name": "shop",
            "namespace": "web",
            "uid": "u1",
            "annotations": {
                ingress.REPOSITORY_ANNOTATION: "depot",
                ingress.RENEW_BEFORE_ANNOTATION: "48h",
            },
        },
        "spec": {
            "tls": [
                {"hosts": ["B.example.test", "a.example.test"], "secretName": "shop-tls"},
                {"hosts": [], "secretName": "empty"},
                {"hosts": ["c.example.test"]},
            ]
        },
    }
    [only] = ingress.desired_downloads(ing)
    assert only["metadata"]["name"] == "shop-tls"
    assert only["spec"] == {
        "repositoryRef": {"kind": "CertificateRepository", "name": "depot"},
        "dnsNames": ["a.example.test", "b.example.test"],
        "secretName": "shop-tls",
        "renewBefore": "48h",
    }
    assert ingress.owned_by(only, "u1") and not ingress.owned_by(only, "u2")
    ing["metadata"]["annotations"] = {}
    assert ingress.desired_downloads(ing) == []


async def test_ingress_sync_never_takes_over_foreign_downloads(kube: FakeKube) -> None:
    kube.customs[("CertificateDownload", "web", "shop-tls")] = {
        "metadata": {"name": "shop-tls", "namespace": "web"},
        "spec": {"secretName": "shop-tls"},
    }
    ing = {
        "metadata": {
            "name": "shop",
            "namespace": "web",
            "uid": "u1",
            "annotations": {ingress.CLUSTER_REPOSITORY_ANNOTATION: "central"},
        },
        "spec": {
            "tls": [
                {"hosts": ["a.example.test"], "secretName": "shop-tls"},
                {"hosts": ["b.example.test"], "secretName": "b-tls"},
            ]
        },
    }
    warnings = await ingress.sync(ing, kube)
    assert warnings and "not owned" in warnings[0]
    assert kube.customs[("CertificateDownload", "web", "shop-tls")]["spec"] == {
        "secretName": "shop-tls"
    }
    assert ("CertificateDownload", "web", "b-tls") in kube.customs


def test_secret_build_keeps_foreign_metadata_but_ours_wins(ca: MiniCA) -> None:
    chain, key = ca.issue(["a.example.test"])
    owner = secrets.Owner("CertificateDownload", "ns", "a", "uid")
    body_ = secrets.build(
        name="a-tls",
        owner=owner,
        chain=chain[:2],
        root=chain[2],
        key=key,
        template={"labels": {"app": "a", secrets.MANAGED_BY_LABEL: "evil"}},
        existing_metadata={
            "labels": {"kept": "1"},
            "resourceVersion": "5",
            "annotations": {secrets.OWNER_ANNOTATION: "x"},
        },
    )
    meta = body_["metadata"]
    assert meta["labels"] == {
        "kept": "1",
        "app": "a",
        secrets.MANAGED_BY_LABEL: "certdepot",
        secrets.OWNER_KIND_LABEL: "CertificateDownload",
        secrets.OWNER_NAME_LABEL: "a",
    }
    assert meta["annotations"][secrets.OWNER_ANNOTATION] == "CertificateDownload/ns/a"
    assert meta["resourceVersion"] == "5"
    state = secrets.inspect(body_, owner)
    assert state.ours and state.info is not None and state.bundle is not None
    assert state.bundle.root == chain[2]
    other = secrets.inspect(body_, secrets.Owner("CertificateDownload", "ns", "b"))
    assert not other.ours and "for CertificateDownload/ns/a" in other.foreign
    broken = dict(
        body_,
        data={
            **body_["data"],
            "tls.key": base64.b64encode(
                crypto.private_key_to_pem(crypto.generate_private_key())
            ).decode(),
        },
    )
    assert "does not match" in secrets.inspect(broken, owner).problem
