"""RFC 9115 delegation through real processes: the repository (IdO) orders from Pebble with
the client's CSR under the ``shortlived`` profile; STAR renewal with the local CA."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pytest
from repository_harness import base_config, cli, create_tenant, running, write_config

from certdepot.acme import crypto, csr_template
from certdepot.acme.client import AcmeClient
from certdepot.acme.problems import AcmeProblem
from certdepot.testenv import procs
from certdepot.testenv.pebble import PebbleEnv

TEMPLATE: dict[str, Any] = {
    "keyTypes": [{"PublicKeyType": "id-ecPublicKey", "namedCurve": "secp256r1",
                  "SignatureType": "ecdsa-with-SHA256"}],
    "extensions": {"subjectAltName": {"DNS": ["**"]},
                   "keyUsage": ["digitalSignature"], "extendedKeyUsage": ["serverAuth"]},
}


async def test_delegated_certificates(tmp_path: Path, pebble_eab: PebbleEnv) -> None:
    pebble = pebble_eab
    kid, hmac = list(pebble.eab.items())[-1]
    port = procs.free_port()
    shortlived = f"{PebbleEnv.SHORTLIVED_SECONDS}s"
    cfg = base_config(
        tmp_path, port,
        listeners={"https": {"address": f"127.0.0.1:{port}", "selfSigned": True,
                             "selfSignedCertFile": str(tmp_path / f"tls-{port}.crt")},
                   "http01": {"address": f"127.0.0.1:{pebble.http01_port}"}},
        starMinLifetime="2s",
        issuers=[{"name": "pebble", "type": "acme", "directory": pebble.directory_url,
                  "caBundle": str(pebble.ca_path), "eab": {"kid": kid, "hmacKey": hmac},
                  "maxLifetime": shortlived},
                 {"name": "local", "type": "local-ca"}],
        tenants=[{"name": "cdn", "delegations": [
            {"name": "edge", "csrTemplate": TEMPLATE, "namePatterns": ["cdn-*.example.test"],
             "maxLifetime": "7d", "issuer": "pebble", "profile": "shortlived"},
            {"name": "star", "csrTemplate": TEMPLATE, "namePatterns": ["star-*.example.test"],
             "maxLifetime": "1h", "issuer": "local", "allowCertificateGet": True}]},
            {"name": "other", "delegations": [
                {"name": "theirs", "csrTemplate": TEMPLATE, "namePatterns": ["o-*.example.test"],
                 "issuer": "local"}]}])
    path = write_config(tmp_path, cfg)
    eab_cdn = create_tenant(tmp_path, path, "cdn")
    eab_other = create_tenant(tmp_path, path, "other")
    with running(tmp_path, path, port) as repo:
        async with AcmeClient(repo.directory_url, crypto.generate_private_key(),
                              verify=repo.ssl_context()) as other:
            await other.new_account(eab=eab_other)
            foreign = (await other.list_delegations())[0]
        async with AcmeClient(repo.directory_url, crypto.generate_private_key(),
                              verify=str(repo.ca_path), poll_timeout=120) as client:
            await client.new_account(eab=eab_cdn)
            urls = await client.list_delegations()
            objs = {u.rsplit("/", 1)[-1]: await client.get_delegation(u) for u in urls}
            assert objs["edge"].csr_template == TEMPLATE
            edge = next(u for u in urls if u.endswith("/edge"))
            key = crypto.generate_private_key()
            csr = csr_template.build_csr_for_template(TEMPLATE, key, ["cdn-eu.example.test"])
            order = await client.delegated_order(edge, csr)
            chain = (await client.fetch_certificate(order.certificate or "")).pem
            leaf = crypto.parse_pem_chain(chain)[0]
            assert crypto.certificate_dns_names(leaf) == ["cdn-eu.example.test"]
            assert crypto.public_key_matches(key, leaf)  # the client's key, never sent
            life = leaf.not_valid_after_utc - leaf.not_valid_before_utc
            assert life <= dt.timedelta(days=7), life
            crypto.verify_chain(crypto.parse_pem_chain(chain),
                                crypto.parse_pem_chain(pebble.roots_pem()))

            with pytest.raises(AcmeProblem) as wrong:
                await client.delegated_order(edge, csr_template.build_csr_for_template(
                    TEMPLATE, key, ["www.example.test"]))
            assert wrong.value.short_type == "rejectedIdentifier"
            with pytest.raises(AcmeProblem) as unknown:
                await client.delegated_order(foreign, csr)
            assert unknown.value.short_type == "unknownDelegation"
            refusals = {
                "extra SAN": (crypto.build_csr(
                    key, ["cdn-eu.example.test", "cdn-us.example.test"],
                    key_usage=["digitalSignature"], extended_key_usage=["serverAuth"]),
                    ["cdn-eu.example.test"], "badCSR"),
                "key type": (crypto.build_csr(
                    crypto.generate_private_key("ec-p384"), ["cdn-eu.example.test"],
                    key_usage=["digitalSignature"], extended_key_usage=["serverAuth"]),
                    None, "badCSR"),
                "subject": (crypto.build_csr(
                    key, ["cdn-eu.example.test"], subject={"organization": "Evil"},
                    key_usage=["digitalSignature"], extended_key_usage=["serverAuth"]),
                    None, "badCSR"),
            }
            for what, (bad_csr, idents, expected) in refusals.items():
                with pytest.raises(AcmeProblem) as err:
                    await client.delegated_order(edge, bad_csr, identifiers=idents)
                assert err.value.short_type == expected, (what, err.value)
                assert err.value.subproblems or "differ" in err.value.detail, what
            too_long = dt.datetime.now(dt.UTC) + dt.timedelta(days=8)
            with pytest.raises(AcmeProblem) as err:
                await client.new_order(["cdn-eu.example.test"], not_after=too_long,
                                       extra={"delegation": edge})
            assert err.value.short_type == "malformed" and "maximum" in err.value.detail

            # STAR: a stable URL, a new serial after half the lifetime, then cancellation
            star_url = next(u for u in urls if u.endswith("/star"))
            end = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
            star_csr = csr_template.build_csr_for_template(TEMPLATE, key,
                                                           ["star-1.example.test"])
            sorder = await client.delegated_order(star_url, star_csr, extra={"auto-renewal": {
                "end-date": end, "lifetime": 6, "allow-certificate-get": True}})
            stable = sorder["star-certificate"]
            async with httpx.AsyncClient(verify=repo.ssl_context()) as http:
                first = await http.get(stable)
                assert first.status_code == 200, first.text
                serial1 = crypto.parse_pem_chain(first.text)[0].serial_number
                for _ in range(120):  # generous: the machine may be loaded
                    await asyncio.sleep(0.5)
                    now = await http.get(stable)
                    if crypto.parse_pem_chain(now.text)[0].serial_number != serial1:
                        break
                else:
                    raise AssertionError("STAR certificate not renewed\n" + repo.proc.tail())
                assert "Cert-Not-After" in now.headers
                out = cli(tmp_path, path, "delegation", "cancel", "--tenant", "cdn",
                          "--name", "star").stdout
                assert "1 auto-renewal" in out
                gone = await http.get(stable)
                assert gone.status_code == 403
                assert gone.json()["type"].endswith(":autoRenewalCanceled")
