"""The plugin's reports as pure functions: a Secret decoded, a status summarised, an inventory."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from certdepot.acme import crypto
from certdepot.controller.core import renewrequest
from certdepot.kubectl import api, inventory, report, tables
from certdepot.testenv.pki import TestCA

NOW = dt.datetime.now(dt.UTC)


def _now() -> dt.datetime:
    # The fixture's certificate starts when the test runs, which in a whole suite is minutes
    # after this module was imported (NOW): judge it against the clock of the test itself.
    return dt.datetime.now(dt.UTC)


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
                                        "ca.crt": ca}), _now())
    leaf = crypto.parse_pem_chain(tls["crt"])[0]
    assert out["ok"] is True and out["problems"] == []
    assert out["keyMatches"] is True and out["chainCheck"] == "verified"
    assert out["chain"][0]["serial"] == crypto.serial_hex(leaf)
    assert out["chain"][0]["dnsNames"] == ["www.example.test"]
    without_ca = report.inspect_secret(secret({"tls.crt": tls["crt"], "tls.key": tls["key"]}),
                                       _now())
    assert without_ca["ok"] is True and without_ca["chainCheck"] == "linked"


def test_wrong_key_wrong_ca_expired_and_garbage_are_reported(tls: dict[str, Any],
                                                             tmp_path: Path) -> None:
    other = crypto.private_key_to_pem(crypto.generate_private_key())
    stranger = TestCA.create(tmp_path / "x", "stranger").cert_path.read_bytes()
    out = report.inspect_secret(secret({"tls.crt": tls["crt"], "tls.key": other,
                                        "ca.crt": stranger}), _now())
    assert out["ok"] is False and out["keyMatches"] is False and out["chainCheck"] == "broken"
    assert any("does not match" in p for p in out["problems"])
    assert "PRIVATE" not in repr(out)
    later = report.inspect_secret(secret({"tls.crt": tls["crt"], "tls.key": tls["key"]}),
                                  _now() + dt.timedelta(days=400))
    assert later["expired"] is True and not later["ok"]
    junk = report.inspect_secret(secret({"tls.crt": b"junk", "tls.key": b"junk"}), _now())
    assert junk["ok"] is False and junk["problems"] == ["tls.crt holds no PEM certificate"]
    bad_key = report.inspect_secret(secret({"tls.crt": tls["crt"], "tls.key": b"junk"}), _now())
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


def test_inventory_shows_the_repositorys_consumers() -> None:
    entry = {"name": "web", "current": {"serial": "b2", "not_after": 2e9}, "consumers": [
        {"tenant": "t", "cluster": "eu-1", "resource": "shop/web", "serial": "a1",
         "state": "revoked", "last_checkin": 1.0},
        {"tenant": "t", "cluster": None, "resource": None, "serial": "b2", "state": "current",
         "last_checkin": None}],
        "certificates": [{"serial": "a1", "revoked": True,
                          "revocation": {"reason": "keyCompromise"}, "deliveries": []}]}
    assert inventory.select([entry, {"name": "other"}], "web") == [entry]
    assert inventory.select([entry], "missing") == []
    assert inventory.stale_consumers([entry]) == 1
    text = tables.inventory_text([entry], NOW)
    assert "REVOKED" in text and "eu-1" in text and "shop/web" in text
    assert "yes (keyCompromise)" in text
    assert tables.inventory_text([], NOW, stale=True) == (
        "no consumer holds a revoked or superseded serial")


def test_inventory_source_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert inventory.base_url("https://r.example:8443/directory") == "https://r.example:8443"
    assert inventory.base_url("https://r.example/depot/directory/") == "https://r.example/depot"
    assert inventory.base_url("https://r.example/depot") == "https://r.example/depot"
    token = tmp_path / "token"
    token.write_text("from-file\n")
    assert inventory.token_from(file=str(token), secret_data=None, key="k") == "from-file"
    data = {"admin-token": base64.b64encode(b"from-secret").decode()}
    assert inventory.token_from(file=None, secret_data=data, key="admin-token") == "from-secret"
    assert inventory.token_from(file=None, secret_data=data, key="other") is None
    monkeypatch.setenv(inventory.TOKEN_ENV, "from-env")
    assert inventory.token_from(file=None, secret_data=None, key="k") == "from-env"
    with pytest.raises(inventory.InventoryError, match="token file"):
        inventory.token_from(file=str(tmp_path / "absent"), secret_data=None, key="k")
    with pytest.raises(inventory.InventoryError, match="caBundle"):
        inventory.ca_bundle({"caBundle": "not base64!"})


def test_kind_names() -> None:
    assert api.kind_of("cdl") == api.kind_of("CertificateDownloads") == "CertificateDownload"
    assert api.kind_of("ccrepo") == "ClusterCertificateRepository"
    assert api.kind_of("dcert.certdepot.io") == "DelegatedCertificate"
    with pytest.raises(ValueError, match="unknown kind"):
        api.kind_of("pods")
