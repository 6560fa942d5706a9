"""Issue 15 items 1, 2 and 7 through a real ``certdepot repository serve`` over TLS.

1. Delegation limits: the issue's STAR order with notBefore 2020 / notAfter 2036 on a
   delegation with maxLifetime 1d, backdating, an over-long STAR lifetime: all refused.
2. Withdrawn grants: team-a opens a download order, finalizes another and fetches its key,
   runs a STAR order; the admin removes the download grant and the delegation from the
   file and restarts; the managed certificate is renewed. The earlier order's finalize,
   the key fetch, the certificate fetch and the STAR certificate are refused, the refusals
   show in /metrics and in the log, without key material.
7. STAR lifecycle: the last certificate ends at end-date; a ready order cannot be canceled.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import httpx
from hostile import TEMPLATE, WEB, RClient, check_problem
from repository_harness import base_config, cli, create_tenant, running, write_config

from certdepot.acme import crypto, csr_template, jws, keywrap
from certdepot.repository import certstore
from certdepot.repository import store as tables
from certdepot.repository.store import Store
from certdepot.repository.tenants import EabCredentials
from certdepot.testenv import procs


def _config(tmp: Path, port: int, *, granted: bool) -> dict[str, Any]:
    team_a: dict[str, Any] = {"name": "team-a", "issue": ["*.a.example.test"]}
    if granted:
        team_a["download"] = ["web"]
        team_a["delegations"] = [{"name": "cdn", "csrTemplate": TEMPLATE,
                                  "namePatterns": ["cdn-*.example.test"], "maxLifetime": "1d",
                                  "issuer": "local", "allowCertificateGet": True}]
    return base_config(tmp, port, starMinLifetime="2s",
                       issuers=[{"name": "local", "type": "local-ca", "lifetime": "2d"}],
                       defaultIssuer="local",
                       certificates=[{"name": "web", "dnsNames": WEB, "issuer": "local",
                                      "lifetime": "3d"}],
                       tenants=[team_a, {"name": "team-b", "issue": ["*.b.example.test"]}])


def _at(offset: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _csr(names: list[str]) -> str:
    return jws.b64encode(csr_template.build_csr_for_template(
        TEMPLATE, crypto.generate_private_key(), names))


async def _wait(what: str, check: Any, seconds: float = 60) -> None:
    for _ in range(int(seconds * 4)):
        if await check():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


async def _limits_and_star(a: RClient, deleg: str, http: httpx.AsyncClient) -> None:
    """Items 1 and 7, while granted."""
    star_2036 = await a.new_order(["cdn-1.example.test"], delegation=deleg, **{
        "notBefore": "2020-01-01T00:00:00Z", "notAfter": "2036-01-01T00:00:00Z",
        "auto-renewal": {"end-date": "2036-01-01T00:00:00Z", "lifetime": 86400}})
    check_problem(star_2036, 400, "malformed")
    for extra in ({"notBefore": "2020-01-01T00:00:00Z", "notAfter": "2036-01-01T00:00:00Z"},
                  {"notBefore": _at(-3600), "notAfter": _at(3600)},
                  {"auto-renewal": {"end-date": _at(9 * 86400), "lifetime": 2 * 86400}}):
        check_problem(await a.new_order(["cdn-1.example.test"], delegation=deleg, **extra),
                      400, "malformed")
    ok = await a.new_order(["cdn-1.example.test"], delegation=deleg)
    f = await a.post(ok.json()["finalize"], {"csr": _csr(["cdn-1.example.test"])})
    leaf = crypto.parse_pem_chain((await a.post(f.json()["certificate"], None)).text)[0]
    now = dt.datetime.now(dt.UTC)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= dt.timedelta(days=1)
    assert leaf.not_valid_before_utc >= now - dt.timedelta(minutes=6)

    ready = await a.new_order(["cdn-r.example.test"], delegation=deleg, **{
        "auto-renewal": {"end-date": _at(3600), "lifetime": 3600}})
    check_problem(await a.post(ready.headers["Location"], {"status": "canceled"}),
                  400, "autoRenewalCancellationInvalid")

    end = _at(8)
    end_ts = dt.datetime.fromisoformat(end.replace("Z", "+00:00"))
    s = await a.new_order(["cdn-end.example.test"], delegation=deleg, **{"auto-renewal": {
        "end-date": end, "lifetime": 4, "allow-certificate-get": True}})
    f = await a.post(s.json()["finalize"], {"csr": _csr(["cdn-end.example.test"])})
    url = f.json()["star-certificate"]
    seen: dict[int, dt.datetime] = {}

    async def reached_end() -> bool:
        r = await http.get(url)
        if r.status_code == 200:
            leaf = crypto.parse_pem_chain(r.text)[0]
            seen[leaf.serial_number] = leaf.not_valid_after_utc
        return bool(seen) and max(seen.values()) >= end_ts

    await _wait("the STAR certificate that ends at end-date", reached_end)
    assert len(seen) >= 2 and all(v <= end_ts for v in seen.values()), seen


async def test_policy_through_real_process(tmp_path: Path) -> None:
    port = procs.free_port()
    path = write_config(tmp_path, _config(tmp_path, port, granted=True))
    creds = {t: EabCredentials(t, *create_tenant(tmp_path, path, t))
             for t in ("team-a", "team-b")}
    store = Store(f"sqlite:///{tmp_path / 'repo.db'}")
    eph, jwk = keywrap.generate_ephemeral()
    with running(tmp_path, path, port) as proc:
        async def web_held() -> bool:
            return certstore.current_managed(store, "web") is not None
        await _wait("the managed certificate", web_held)
        trust = ssl.create_default_context(cafile=str(proc.ca_path))
        async with httpx.AsyncClient(verify=trust, timeout=30) as http:
            a = RClient(http, base=proc.base_url)
            assert (await a.register(creds["team-a"])).status_code == 201
            acct = (await a.post(a.kid or "", None)).json()
            deleg = (await a.post(acct["delegations"], None)).json()["delegations"][0]
            await _limits_and_star(a, deleg, http)
            # Item 2, before the grant goes: one order opened, one finalized and fetched.
            opened = (await a.new_order(WEB, download=True)).json()
            done = (await a.new_order(WEB, download=True)).json()
            done = (await a.post(done["finalize"], {"ephemeral-jwk": jwk})).json()
            key = await a.post(done["private-key"], None)
            assert key.status_code == 200, key.text
            key_der = crypto.private_key_to_pkcs8_der(keywrap.unwrap_private_key(key.text, eph))
            s = await a.new_order(["cdn-s.example.test"], delegation=deleg, **{
                "auto-renewal": {"end-date": _at(3600), "lifetime": 3600,
                                 "allow-certificate-get": True}})
            star_url = (await a.post(s.json()["finalize"], {"csr": _csr(
                ["cdn-s.example.test"])})).json()["star-certificate"]
            assert (await http.get(star_url)).status_code == 200
    first_web = certstore.current_managed(store, "web")
    assert first_web is not None

    # The admin withdraws the download grant and the delegation, restarts, renews "web".
    write_config(tmp_path, _config(tmp_path, port, granted=False))
    with running(tmp_path, path, port, name="repository-2") as proc:
        cli(tmp_path, path, "renew", "web")

        async def renewed() -> bool:
            cur = certstore.current_managed(store, "web")
            return cur is not None and cur["id"] != first_web["id"]
        await _wait("the renewed managed certificate", renewed)
        trust = ssl.create_default_context(cafile=str(proc.ca_path))
        async with httpx.AsyncClient(verify=trust, timeout=30) as http:
            a.http = http
            refused = [await a.post(opened["finalize"], {"ephemeral-jwk": jwk}),
                       await a.post(done["private-key"], None),
                       await a.post(done["certificate"], None)]
            for r in refused:
                check_problem(r, 403, "unauthorized")
            gone = await http.get(star_url)
            assert gone.status_code == 403, gone.text  # unauthorized, or canceled by the loop
            assert gone.json()["type"].endswith((":unauthorized", ":autoRenewalCanceled"))
            metrics = (await http.get(f"{proc.base_url}/metrics")).text
        log = proc.proc.log_path.read_text(errors="replace")
    deliveries = store.find(tables.deliveries, account_id=(a.kid or "").rsplit("/", 1)[1])
    store.close()
    assert len(deliveries) == 1, "a key left after the grant was withdrawn"
    for step in ("finalize", "private-key", "certificate"):
        assert f'certdepot_repository_policy_refusals_total{{reason="download-grant-withdrawn"'\
               f',step="{step}"}} 1.0' in metrics, metrics
    assert log.count("policy refused") >= 3, log[-3000:]
    assert "PRIVATE KEY" not in log
    assert base64.b64encode(key_der).decode()[:48] not in log
