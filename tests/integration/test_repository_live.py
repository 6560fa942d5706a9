"""Live configuration through a real repository process over TLS (issue 20, item 2): while
clients keep downloading, the YAML file is edited and the repository follows without a
restart: a new certificate is obtained, a removed grant is refused at the next request, a
changed issuer signs the next renewal, and an invalid file changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from repository_harness import RepoProcess, base_config, cli, create_tenant, running, write_config

from certdepot.acme import crypto
from certdepot.acme.client import AcmeClient
from certdepot.acme.problems import AcmeProblem
from certdepot.testenv import procs

RELOADS = "certdepot_repository_config_reloads_total"


async def download_eventually(client: AcmeClient, names: list[str],
                              within: float = 60.0) -> tuple[str, crypto.PrivateKey]:
    """A download, retried while the repository has not obtained the certificate yet."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await client.download_certificate(names)
        except AcmeProblem as exc:
            if exc.short_type == "unauthorized" or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


def rewrite(path: Path, cfg: dict[str, Any]) -> None:
    # Write a sibling and rename it over the file, as editors and ConfigMap updates do.
    tmp = path.with_suffix(".new")
    tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    tmp.replace(path)


async def busy_client(repo: RepoProcess, eab: tuple[str, str], stop: asyncio.Event,
                      outcomes: list[str]) -> None:
    """Another consumer downloading the first certificate again and again: its requests
    must only ever succeed or be refused with an ACME problem, never fail otherwise."""
    async with AcmeClient(repo.directory_url, crypto.generate_private_key(),
                          verify=str(repo.ca_path)) as client:
        await client.new_account(eab=eab)
        while not stop.is_set():
            try:
                await client.download_certificate(["shop.example.test"])
                outcomes.append("ok")
            except AcmeProblem as exc:
                outcomes.append(exc.short_type)


def metric(repo: RepoProcess, line_start: str) -> float:
    ctx = ssl.create_default_context(cafile=str(repo.ca_path))
    text = httpx.get(f"{repo.base_url}/metrics", verify=ctx).text
    found = [ln for ln in text.splitlines() if ln.startswith(line_start)]
    return float(found[0].rsplit(" ", 1)[1]) if found else 0.0


async def until(check: Any, what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_file_changes_apply_while_clients_are_active(tmp_path: Path) -> None:
    port = procs.free_port()
    cfg = base_config(
        tmp_path, port, configReloadInterval="1s",
        issuers=[{"name": "first", "type": "local-ca", "commonName": "first CA"},
                 {"name": "second", "type": "local-ca", "commonName": "second CA"}],
        certificates=[{"name": "shop", "dnsNames": ["shop.example.test"], "issuer": "first"}],
        tenants=[{"name": "team", "download": ["shop"]}])
    path = write_config(tmp_path, cfg)
    eab = create_tenant(tmp_path, path, "team")
    eab_busy = create_tenant(tmp_path, path, "busy")
    cfg["tenants"].append({"name": "busy", "download": ["shop"]})
    rewrite(path, cfg)
    with running(tmp_path, path, port) as repo:
        async with AcmeClient(repo.directory_url, crypto.generate_private_key(),
                              verify=str(repo.ca_path)) as client:
            await client.new_account(eab=eab)
            await download_eventually(client, ["shop.example.test"])
            stop, outcomes = asyncio.Event(), list[str]()
            busy = asyncio.create_task(busy_client(repo, eab_busy, stop, outcomes))
            try:
                await until(lambda: "ok" in outcomes, "the busy client's first download")

                # 1. a new certificate (and its grant) is obtained without a restart
                cfg["certificates"].append({"name": "blog", "dnsNames": ["blog.example.test"],
                                            "issuer": "first"})
                cfg["tenants"][0]["download"] = ["shop", "blog"]
                rewrite(path, cfg)
                chain, _ = await download_eventually(client, ["blog.example.test"])
                first = crypto.parse_pem_chain(chain)[0]
                assert "first CA" in first.issuer.rfc4514_string()

                # 2. a removed grant is refused at the next request
                cfg["tenants"][0]["download"] = ["blog"]
                rewrite(path, cfg)
                await until_refused(client, ["shop.example.test"])

                # 3. a changed issuer signs the next renewal
                cfg["certificates"][1]["issuer"] = "second"
                rewrite(path, cfg)
                await asyncio.sleep(2.5)  # two polls: the new file is in force
                cli(tmp_path, path, "renew", "blog")
                deadline = time.monotonic() + 60
                while True:
                    chain, _ = await client.download_certificate(["blog.example.test"])
                    leaf = crypto.parse_pem_chain(chain)[0]
                    if leaf.serial_number != first.serial_number:
                        break
                    assert time.monotonic() < deadline, "blog was never renewed"
                    await asyncio.sleep(0.3)
                assert "second CA" in leaf.issuer.rfc4514_string()

                # 4. an invalid file is rejected, counted, and changes nothing
                broken = {**cfg, "tenants": [{"name": "team", "download": ["nothing"]}]}
                rewrite(path, broken)
                rejected = RELOADS + '{result="rejected",source="file"}'
                await until(lambda: metric(repo, rejected) == 1.0, "the rejection's count")
                await client.download_certificate(["blog.example.test"])
            finally:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await busy
        applied = RELOADS + '{result="applied",source="file"}'
        assert metric(repo, applied) == 3  # the three valid edits, nothing else
        log = repo.proc.log_path.read_text()
    rejection = log.split("is not usable", 1)[1].split("\n")[1]
    assert str(path) in rejection and "tenants.0.download: unknown certificate 'nothing'" \
        in rejection, rejection
    assert "previous configuration stays in force" in log
    # The busy client saw only successes: the changes never touched its grant.
    assert outcomes and set(outcomes) == {"ok"}, sorted(set(outcomes))
    assert "internal error" not in log


async def until_refused(client: AcmeClient, names: list[str]) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            await client.download_certificate(names)
        except AcmeProblem as exc:
            assert exc.short_type == "unauthorized", exc
            return
        assert time.monotonic() < deadline, "the withdrawn grant was never refused"
        await asyncio.sleep(0.3)
