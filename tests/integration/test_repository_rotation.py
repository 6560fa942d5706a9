"""Rotation of a shared certificate through the real repository over TLS (issue 19) and who
may revoke one (issue 15, item 6): a tenant holding the downloaded key cannot revoke it; the
admin rotates it from the command line and over the admin API; a tenant the policy names
revokes it and it is re-issued at once; renewalInfo answers a fixed past window with an
explanation; the inventory lists the consumers still on the old serial."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID
from repository_harness import RepoProcess, base_config, cli, create_tenant, running, write_config

from certdepot.acme import ari, crypto
from certdepot.acme.client import AcmeClient
from certdepot.acme.problems import AcmeProblem
from certdepot.testenv import procs

WEB = ["web.example.test", "www.example.test"]
TOKEN = "admin-token-" + "x" * 40


async def _download(repo: RepoProcess, client: AcmeClient) -> tuple[str, crypto.PrivateKey]:
    for _ in range(120):  # the local-ca entry is obtained at start
        try:
            return await client.download_certificate(WEB)
        except AcmeProblem as exc:
            if exc.short_type != "orderNotReady":
                raise
            await asyncio.sleep(0.25)
    raise AssertionError("the repository never obtained the certificate\n" + repo.proc.tail(40))


def _inventory(tmp: Path, path: Path, *args: str) -> Any:
    return json.loads(cli(tmp, path, "inventory", "--json", *args).stdout)


def _web(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in entries if e["name"] == "web")


async def _ari(repo: RepoProcess, pem: str, **headers: str) -> httpx.Response:
    cid = ari.cert_id(crypto.parse_pem_chain(pem)[0])
    async with httpx.AsyncClient(verify=repo.ssl_context()) as http:
        return await http.get(f"{repo.base_url}/acme/renewal-info/{cid}", headers=headers)


def _setup(tmp_path: Path) -> tuple[Path, int, dict[str, tuple[str, str]]]:
    port = procs.free_port()
    token = tmp_path / "admin-token"
    token.write_text(TOKEN)
    cfg = base_config(
        tmp_path, port, issuers=[{"name": "local", "type": "local-ca", "lifetime": "2d"}],
        certificates=[{"name": "web", "dnsNames": WEB, "issuer": "local"}],
        tenants=[{"name": "team-a", "download": ["web"]},
                 {"name": "security", "download": ["web"], "revoke": ["web"]}],
        admin={"tokenFile": str(token)})
    path = write_config(tmp_path, cfg)
    return path, port, {t: create_tenant(tmp_path, path, t) for t in ("team-a", "security")}


async def test_rotation_over_tls(tmp_path: Path) -> None:
    path, port, eab = _setup(tmp_path)
    with running(tmp_path, path, port) as repo:
        async with AcmeClient(repo.directory_url, crypto.generate_private_key(),
                              verify=str(repo.ca_path)) as team_a:
            await team_a.new_account(eab=eab["team-a"])
            pem, key = await _download(repo, team_a)
            leaf = crypto.parse_pem_chain(pem)[0]
            before = _web(_inventory(tmp_path, path))

            # Issue 15 item 6: the downloaded key, or the downloading account, revokes nothing.
            for attempt in ({"cert_key": key}, {}):
                with pytest.raises(AcmeProblem) as refused:
                    await team_a.revoke(leaf, 1, **attempt)
                assert refused.value.short_type == "unauthorized", refused.value
                assert refused.value.status == 403
            assert _web(_inventory(tmp_path, path))["certificates"] == before["certificates"]
            normal = (await _ari(repo, pem)).json()
            assert "revoked" not in normal and "explanationURL" not in normal

            # The admin rotates it from the command line.
            out = cli(tmp_path, path, "rotate", "web", "--reason", "keyCompromise").stdout
            serials = dict(re.findall(r"(revoked|new) serial\s+(\S+)", out))
            assert serials["revoked"] == crypto.serial_hex(leaf), out
            assert serials["new"] != serials["revoked"], out
            assert "1 held the revoked serial" in out, out

            first = await _ari(repo, pem, **{"Certdepot-Account": team_a.account_url or ""})
            assert first.status_code == 200 and first.headers["Retry-After"] == "30"
            doc = first.json()
            end = dt.datetime.fromisoformat(doc["suggestedWindow"]["end"])
            assert end < dt.datetime.now(dt.UTC), doc
            assert doc["revoked"]["reason"] == "keyCompromise"
            await asyncio.sleep(1.1)  # a window recomputed per request would move by a second
            assert (await _ari(repo, pem)).json()["suggestedWindow"] == doc["suggestedWindow"]
            async with httpx.AsyncClient(verify=repo.ssl_context()) as http:
                page = await http.get(doc["explanationURL"])
            assert page.status_code == 200 and serials["revoked"] in page.text

            stale = cli(tmp_path, path, "inventory", "--stale").stdout
            assert f"serial {serials['revoked']} (revoked)" in stale, stale
            pem2, _ = await _download(repo, team_a)
            assert crypto.serial_hex(crypto.parse_pem_chain(pem2)[0]) == serials["new"]
            stale = cli(tmp_path, path, "inventory", "--stale").stdout
            assert "no consumer holds a revoked or superseded serial" in stale, stale

            await _admin_api(repo, serials["new"])
            await _policy_revoke(repo, eab["security"], path, tmp_path)
    assert "PRIVATE KEY" not in repo.proc.log_path.read_text()


async def _admin_api(repo: RepoProcess, current: str) -> None:
    url = f"{repo.base_url}/admin/v1/certificates/web/rotate"
    async with httpx.AsyncClient(verify=repo.ssl_context(), timeout=60) as http:
        refused = await http.post(url, json={"reason": "superseded"},
                                  headers={"Authorization": "Bearer wrong" + "x" * 40})
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        done = await http.post(url, json={"reason": "superseded"}, headers=auth)
        assert done.status_code == 200, done.text
        assert done.json()["revokedSerial"] == current
        inv = (await http.get(f"{repo.base_url}/admin/v1/inventory?stale=true",
                              headers=auth)).json()
        assert inv["apiVersion"] == "certdepot.io/inventory/v1"
        assert [c["state"] for c in _web(inv["certificates"])["consumers"]] == ["revoked"]


async def _policy_revoke(repo: RepoProcess, eab: tuple[str, str], path: Path,
                         tmp: Path) -> None:
    async with AcmeClient(repo.directory_url, crypto.generate_private_key(),
                          verify=str(repo.ca_path)) as security:
        await security.new_account(eab=eab)
        pem, _ = await _download(repo, security)
        await security.revoke(crypto.parse_pem_chain(pem)[0], 1)
        old = crypto.serial_hex(crypto.parse_pem_chain(pem)[0])
        for _ in range(100):
            current = _web(_inventory(tmp, path))["current"]["serial"]
            if current != old:
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("a revoked shared certificate was not re-issued at once")
        web = _web(_inventory(tmp, path))
        revoked = next(c for c in web["certificates"] if c["serial"] == old)
        assert revoked["revocation"]["requested_by"].startswith("tenant security")


def _openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("openssl") is None:
        raise AssertionError("openssl not found: apt-get install openssl")
    return subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


async def test_local_ca_publishes_crl_and_ocsp(tmp_path: Path) -> None:
    """Issue 19 (4): the URLs a local-CA leaf names serve a CRL and OCSP answers that
    openssl accepts, and both say "revoked" once the certificate is rotated."""
    path, port, eab = _setup(tmp_path)
    with running(tmp_path, path, port) as repo:
        async with AcmeClient(repo.directory_url, crypto.generate_private_key(),
                              verify=str(repo.ca_path)) as team_a:
            await team_a.new_account(eab=eab["team-a"])
            pem, _ = await _download(repo, team_a)
        certs = crypto.parse_pem_chain(pem)
        leaf, root = certs[0], certs[-1]
        (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        (tmp_path / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
        crl_url = leaf.extensions.get_extension_for_class(
            x509.CRLDistributionPoints).value[0].full_name[0].value
        aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        ocsp_url = next(d.access_location.value for d in aia
                        if d.access_method == AuthorityInformationAccessOID.OCSP)
        assert crl_url.startswith(repo.base_url) and ocsp_url.startswith(repo.base_url)

        assert "Cert Status: good" in await _ocsp_status(repo, ocsp_url, tmp_path)
        cli(tmp_path, path, "rotate", "web", "--reason", "keyCompromise")
        async with httpx.AsyncClient(verify=repo.ssl_context()) as http:
            crl = await http.get(crl_url)
        assert crl.headers["content-type"] == "application/pkix-crl"
        (tmp_path / "crl.der").write_bytes(crl.content)
        shown = _openssl("crl", "-inform", "DER", "-in", "crl.der", "-CAfile", "root.pem",
                         "-noout", "-text", cwd=tmp_path)
        assert shown.returncode == 0 and "verify OK" in shown.stderr + shown.stdout, shown
        assert format(leaf.serial_number, "X") in shown.stdout.upper(), shown.stdout
        assert "Key Compromise" in shown.stdout
        _openssl("crl", "-inform", "DER", "-in", "crl.der", "-out", "crl.pem", cwd=tmp_path)
        verify = _openssl("verify", "-crl_check", "-CRLfile", "crl.pem", "-CAfile", "root.pem",
                          "leaf.pem", cwd=tmp_path)
        assert verify.returncode != 0 and "certificate revoked" in verify.stdout + verify.stderr
        status = await _ocsp_status(repo, ocsp_url, tmp_path)
        assert "Cert Status: revoked" in status and "keyCompromise" in status, status


async def _ocsp_status(repo: RepoProcess, url: str, tmp: Path) -> str:
    """Ask with a request openssl built, and let openssl verify and read the answer."""
    made = _openssl("ocsp", "-issuer", "root.pem", "-cert", "leaf.pem", "-reqout", "req.der",
                    cwd=tmp)
    assert made.returncode == 0, made.stderr
    async with httpx.AsyncClient(verify=repo.ssl_context()) as http:
        r = await http.post(url, content=(tmp / "req.der").read_bytes(),
                            headers={"Content-Type": "application/ocsp-request"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/ocsp-response"
    (tmp / "resp.der").write_bytes(r.content)
    # No -cert here: with -reqin it would add a second CertID and a new nonce to the request.
    read = _openssl("ocsp", "-reqin", "req.der", "-respin", "resp.der", "-CAfile", "root.pem",
                    "-resp_text", cwd=tmp)
    assert read.returncode == 0, read.stdout + read.stderr
    assert "Response verify OK" in read.stderr + read.stdout, read.stdout + read.stderr
    return read.stdout
