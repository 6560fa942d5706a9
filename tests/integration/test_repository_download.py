"""Certificate download through a real repository process (issue 5, seed Fig. 1):
an imported certificate is downloaded by an allowed tenant; http-01 proof of control
lets an ungranted client download where the certificate's policy allows it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from acme_solvers import Http01Solver
from repository_harness import base_config, cli, create_tenant, running, write_config

from certdepot.acme import crypto
from certdepot.acme.client import AcmeClient
from certdepot.acme.problems import AcmeProblem
from certdepot.testenv import procs
from certdepot.testenv.pki import TestCA


async def test_imported_certificate_download(tmp_path: Path) -> None:
    ca = TestCA.create(tmp_path, "corp")
    crt, key = ca.issue(tmp_path, "shop", "shop.example.test",
                        dns_names=("shop.example.test", "www.shop.example.test"))
    other_crt, other_key = ca.issue(tmp_path, "other", "x", dns_names=("x.example.test",))
    http_port = procs.free_port()
    port = procs.free_port()
    cfg = base_config(
        tmp_path, port,
        issuers=[{"name": "imported", "type": "imported"},
                 {"name": "local", "type": "local-ca"}],
        validation={"httpPort": http_port, "resolveTo": "127.0.0.1", "timeoutSeconds": 5},
        certificates=[
            {"name": "shop", "dnsNames": ["shop.example.test", "www.shop.example.test"],
             "issuer": "imported"},
            {"name": "open", "dnsNames": ["open.example.test"], "issuer": "local",
             "downloadByProof": True},
            {"name": "closed", "dnsNames": ["closed.example.test"], "issuer": "local"}],
        tenants=[{"name": "shop-team", "download": ["shop"]}, {"name": "stranger"}])
    path = write_config(tmp_path, cfg)
    # key/cert mismatch is refused, and names must match the declared entry
    bad = cli(tmp_path, path, "import", "--name", "shop", "--cert", str(crt), "--key",
              str(other_key), check=False)
    assert bad.returncode != 0 and "does not match" in bad.stderr
    assert "PRIVATE KEY" not in bad.stderr + bad.stdout
    wrong = cli(tmp_path, path, "import", "--name", "shop", "--cert", str(other_crt),
                "--key", str(other_key), check=False)
    assert wrong.returncode != 0 and "differ" in wrong.stderr
    out = cli(tmp_path, path, "import", "--name", "shop", "--cert", str(crt), "--key",
              str(key), "--chain", str(ca.cert_path)).stdout
    assert "imported shop" in out
    eab_shop = create_tenant(tmp_path, path, "shop-team")
    eab_stranger = create_tenant(tmp_path, path, "stranger")
    original = crypto.load_certificate(crt.read_bytes())
    with running(tmp_path, path, port) as repo:
        async with AcmeClient(repo.directory_url, crypto.generate_private_key(),
                              verify=str(repo.ca_path)) as client:
            await client.new_account(eab=eab_shop)
            chain, got_key = await client.download_certificate(
                ["www.shop.example.test", "shop.example.test"],
                pin_root=ca.cert_path.read_bytes())
            leaf = crypto.parse_pem_chain(chain)[0]
            assert leaf.serial_number == original.serial_number
            assert crypto.public_key_matches(got_key, leaf)
            assert crypto.private_key_to_pkcs8_der(got_key) == crypto.private_key_to_pkcs8_der(
                crypto.load_private_key(key.read_bytes()))

        async with AcmeClient(repo.directory_url, crypto.generate_private_key(),
                              verify=str(repo.ca_path)) as stranger:
            await stranger.new_account(eab=eab_stranger)
            with pytest.raises(AcmeProblem) as refused:
                await stranger.download_certificate(["shop.example.test",
                                                     "www.shop.example.test"])
            assert refused.value.short_type == "unauthorized"
            async with Http01Solver(http_port) as solver:
                with pytest.raises(AcmeProblem) as closed:
                    await stranger.download_certificate(["closed.example.test"],
                                                        solver=solver)
                assert closed.value.short_type == "unauthorized"
                for _ in range(60):  # the local-ca entry is obtained at start
                    try:
                        chain, got_key = await stranger.download_certificate(
                            ["open.example.test"], solver=solver)
                        break
                    except AcmeProblem as exc:
                        if exc.short_type != "orderNotReady":
                            raise
                        await asyncio.sleep(0.5)
                assert solver.requests, "the repository never fetched the http-01 token"
            assert crypto.public_key_matches(got_key, crypto.parse_pem_chain(chain)[0])
        log = repo.proc.log_path.read_text()
    assert "PRIVATE KEY" not in log
    assert crypto.private_key_to_pem(got_key).decode().splitlines()[1] not in log
    inv = cli(tmp_path, path, "inventory").stdout
    assert "shop  [shop.example.test, www.shop.example.test]  issuer imported" in inv, inv
    assert "-> tenant shop-team" in inv and "-> tenant stranger" in inv
