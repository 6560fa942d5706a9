"""The plugin's reports as pure functions: a Secret decoded, a status summarised, holders."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from certdepot.acme import crypto
from certdepot.controller import renewrequest
from certdepot.kubectl import api, inventory, report, tables
from certdepot.testenv.pki import TestCA

NOW = dt.datetime.now(dt.UTC)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def tls(tmp_path: Path) -> dict[str, Any]:
    ca = TestCA.create(tmp_path, "unit-root")
    crt, key = ca.issue(tmp_path, "leaf", "www.example.test", dns_names=("www.example.test",))
    return {"ca": ca, "crt": crt.read_bytes(), "key": key.read_bytes()}


def secret(data: dict[str, bytes]) -> dict[str, Any]:
    return {"metadata": {"name": "web-tls", "namespace": "a"}, "type": "kubernetes.io/tls",
            "data": {k: _b64(v) for k, v in data.items()}}


def test_a_good_secret(tls: dict[str, Any]) -> None:
    ca = tls["ca"].cert_path.read_bytes()
    out = report.inspect_secret(secret({"tls.crt": tls["crt"], "tls.key": tls["key"],
                                        "ca.crt": ca}), NOW)
    leaf = crypto.parse_pem_chain(tls["crt"])[0]
    assert out["ok"] is True and out["problems"] == []
    assert out["keyMatches"] is True and out["chainCheck"] == "verified"
    assert out["chain"][0]["serial"] == crypto.serial_hex(leaf)
    assert out["chain"][0]["dnsNames"] == ["www.example.test"]
    without_ca = report.inspect_secret(secret({"tls.crt": tls["crt"], "tls.key": tls["key"]}),
                                       NOW)
    assert without_ca["ok"] is True and without_ca["chainCheck"] == "linked"


def test_wrong_key_wrong_ca_expired_and_garbage_are_reported(tls: dict[str, Any],
                                                             tmp_path: Path) -> None:
    other = crypto.private_key_to_pem(crypto.generate_private_key())
    stranger = TestCA.create(tmp_path / "x", "stranger").cert_path.read_bytes()
    out = report.inspect_secret(secret({"tls.crt": tls["crt"], "tls.key": other,
                                        "ca.crt": stranger}), NOW)
    assert out["ok"] is False and out["keyMatches"] is False and out["chainCheck"] == "broken"
    assert any("does not match" in p for p in out["problems"])
    assert "PRIVATE" not in repr(out)
    later = report.inspect_secret(secret({"tls.crt": tls["crt"], "tls.key": tls["key"]}),
                                  NOW + dt.timedelta(days=400))
    assert later["expired"] is True and not later["ok"]
    junk = report.inspect_secret(secret({"tls.crt": b"junk", "tls.key": b"junk"}), NOW)
    assert junk["ok"] is False and junk["problems"] == ["tls.crt holds no PEM certificate"]
    bad_key = report.inspect_secret(secret({"tls.crt": tls["crt"], "tls.key": b"junk"}), NOW)
    assert bad_key["problems"] == ["tls.key is not a readable unencrypted private key"]


def test_status_report_of_a_failing_download_with_a_pending_request() -> None:
    obj = {
        "metadata": {"name": "web", "namespace": "a",
                     "annotations": {renewrequest.ANNOTATION: "t2"}},
        "spec": {"secretName": "web-tls", "dnsNames": ["www.example.test"]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "RenewalFailed",
                            "message": "still good", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            "lastFailureTime": "2026-01-01T00:00:00Z", "lastFailureMessage": "down",
            "failedAttempts": 2, renewrequest.STATUS_FIELD: "t1",
        },
    }
    events = [{"type": "Warning", "reason": f"R{i}", "message": "m", "count": 1,
               "lastTimestamp": f"2026-01-01T00:00:{i:02d}Z"} for i in range(15)]
    out = report.status_report("CertificateDownload", obj, None, events, NOW)
    assert out["ready"] == "True" and out["reason"] == "RenewalFailed"
    assert out["lastFailure"] == {"time": "2026-01-01T00:00:00Z", "reason": "RenewalFailed",
                                  "message": "down", "failedAttempts": 2}
    assert out["renewal"] == {"requested": "t2", "lastHonoured": "t1", "pending": True}
    assert out["secret"] == {"name": "web-tls", "exists": False}
    assert [e["reason"] for e in out["events"]] == [f"R{i}" for i in range(5, 15)]
    text = tables.status_text(out, NOW)
    assert "RenewalFailed" in text and "does not exist" in text and "t2 (pending)" in text


def test_holders_are_the_latest_delivery_per_tenant_and_account() -> None:
    entry = {"name": "web", "current": {"serial": "b2", "not_after": 2e9}, "certificates": [
        {"serial": "a1", "deliveries": [{"tenant": "t", "account_id": "x", "delivered": 1.0},
                                        {"tenant": "t", "account_id": "y", "delivered": 2.0}]},
        {"serial": "b2", "deliveries": [{"tenant": "t", "account_id": "x", "delivered": 3.0}]},
    ]}
    holders = inventory.holders(entry)
    assert [(h["account"], h["serial"], h["current"]) for h in holders] == [
        ("x", "b2", True), ("y", "a1", False)]
    [out] = inventory.report([entry, {"name": "other"}], "web")
    assert "SUPERSEDED" in tables.inventory_text([out], NOW)
    assert inventory.report([entry], "missing") == []


def test_kind_names() -> None:
    assert api.kind_of("cdl") == api.kind_of("CertificateDownloads") == "CertificateDownload"
    assert api.kind_of("ccrepo") == "ClusterCertificateRepository"
    assert api.kind_of("dcert.certdepot.io") == "DelegatedCertificate"
    with pytest.raises(ValueError, match="unknown kind"):
        api.kind_of("pods")
