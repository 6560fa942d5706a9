"""certdepot.acme.client against a real Pebble: every flow end to end.

Pebble runs with its default nonce-reject rate (5 %), so badNonce retries happen for real
in every test. The flows allow up to 3 re-sends per request (``FLOW_RETRIES``) because with
the contract's single retry, 0.25 % of requests would still fail on a second rejection and a
suite of a few hundred requests would flake; ``test_bad_nonce_*`` checks the default (exactly
one retry) on its own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from acme_solvers import Dns01Solver, Http01Solver, TlsAlpn01Solver

from certdepot.acme import ari, crypto, jws
from certdepot.acme.client import AcmeClient, CertificateChains
from certdepot.acme.messages import Order
from certdepot.acme.problems import AcmeProblem
from certdepot.testenv.pebble import PebbleEnv

FLOW_RETRIES = 3


def unique_name(prefix: str = "host") -> str:
    return f"{prefix}-{secrets.token_hex(4)}.example.test"


@contextlib.asynccontextmanager
async def acme_for(
    env: PebbleEnv, key: crypto.PrivateKey | None = None, **options: Any
) -> AsyncIterator[AcmeClient]:
    options.setdefault("bad_nonce_retries", FLOW_RETRIES)
    async with AcmeClient(
        env.directory_url,
        key or crypto.generate_private_key(),
        verify=env.ca_path,
        poll_interval=0.2,
        **options,
    ) as client:
        yield client


async def issue(
    acme: AcmeClient, env: PebbleEnv, names: list[str], *, dns: bool = False, **order_options: Any
) -> tuple[Order, CertificateChains, crypto.PrivateKey]:
    order = await acme.new_order(names, **order_options)
    if dns:
        order = await acme.solve(order, Dns01Solver(env.challtestsrv_url))
    else:
        async with Http01Solver(env.http01_port) as solver:
            order = await acme.solve(order, solver)
    assert order.status == "ready"
    key = crypto.generate_private_key()
    order = await acme.finalize(order, crypto.build_csr(key, names))
    assert order.status == "valid" and order.certificate
    chains = await acme.fetch_certificate(order.certificate)
    return order, chains, key


def cert_status(env: PebbleEnv, serial: int) -> dict[str, Any]:
    with env.http() as http:
        response = http.get(f"{env.mgmt_url}/cert-status-by-serial/{serial:x}")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


async def test_account_without_eab(pebble: PebbleEnv) -> None:
    key = crypto.generate_private_key("ec-p384")
    async with acme_for(pebble, key) as acme:
        directory = await acme.directory()
        assert {"default", "shortlived"} <= set(directory.meta.profiles)
        assert directory.renewal_info and directory.key_change
        with pytest.raises(AcmeProblem) as exc:
            await acme.lookup_account()
        assert exc.value.short_type == "accountDoesNotExist"
        account = await acme.new_account(["mailto:ops@example.test"])
        assert account.status == "valid" and acme.account_url
        url = acme.account_url
    async with acme_for(pebble, key) as again:
        found = await again.lookup_account()
        assert again.account_url == url and found.contact == ["mailto:ops@example.test"]
        updated = await again.update_account(contact=["mailto:other@example.test"])
        assert updated.contact == ["mailto:other@example.test"]
        assert (await again.deactivate_account()).status == "deactivated"
        with pytest.raises(AcmeProblem) as exc:
            await again.new_order([unique_name()])
        assert exc.value.short_type == "unauthorized"


async def test_account_with_eab(pebble_eab: PebbleEnv) -> None:
    kid, hmac_key = next(iter(pebble_eab.eab.items()))
    async with acme_for(pebble_eab) as acme:
        assert (await acme.directory()).meta.external_account_required
        with pytest.raises(AcmeProblem) as exc:
            await acme.new_account()
        assert exc.value.short_type == "externalAccountRequired"
        account = await acme.new_account(["mailto:eab@example.test"], eab=(kid, hmac_key))
        assert account.status == "valid"
        await issue(acme, pebble_eab, [unique_name("eab")])


async def test_wrong_eab_mac_is_refused(pebble_eab: PebbleEnv) -> None:
    kid = next(iter(pebble_eab.eab))
    async with acme_for(pebble_eab) as acme:
        with pytest.raises(AcmeProblem) as exc:
            await acme.new_account(eab=(kid, jws.b64encode(secrets.token_bytes(32))))
    assert exc.value.short_type == "unauthorized" and exc.value.status == 403, exc.value
    assert "external account binding" in exc.value.detail and acme.account_url is None


async def test_http01_issuance_chain_verifies_to_pebble_root(pebble: PebbleEnv) -> None:
    names = [unique_name("web"), unique_name("www")]
    async with acme_for(pebble) as acme:
        await acme.new_account()
        # Pebble picks a random profile when an order names none, so ask for one.
        order, chains, key = await issue(acme, pebble, names, profile="default")
    assert order.profile == "default"
    certs = crypto.parse_pem_chain(chains.pem)
    assert sorted(crypto.certificate_dns_names(certs[0])) == sorted(names)
    assert crypto.public_key_matches(key, certs[0])
    crypto.verify_chain(certs, crypto.parse_pem_chain(pebble.roots_pem()))
    lifetime = certs[0].not_valid_after_utc - certs[0].not_valid_before_utc
    assert abs(lifetime.total_seconds() - PebbleEnv.DEFAULT_SECONDS) <= 60


async def test_dns01_issuance_with_wildcard(pebble: PebbleEnv) -> None:
    base = unique_name("zone")
    async with acme_for(pebble) as acme:
        await acme.new_account()
        _, chains, _ = await issue(acme, pebble, [base, f"*.{base}"], dns=True)
    assert sorted(crypto.certificate_dns_names(chains.leaf)) == sorted([base, f"*.{base}"])


async def test_tlsalpn01_issuance(pebble: PebbleEnv, tmp_path: Path) -> None:
    name = unique_name("alpn")
    async with acme_for(pebble) as acme:
        await acme.new_account()
        order = await acme.new_order([name], profile="default")
        async with TlsAlpn01Solver(pebble.tlsalpn01_port, tmp_path) as solver:
            order = await acme.solve(order, solver)
        assert order.status == "ready" and name in solver.handshakes
        order = await acme.finalize(order, crypto.build_csr(crypto.generate_private_key(), [name]))
        assert order.status == "valid"


async def test_shortlived_profile_lifetime(pebble: PebbleEnv) -> None:
    async with acme_for(pebble) as acme:
        await acme.new_account()
        order, chains, _ = await issue(acme, pebble, [unique_name("short")], profile="shortlived")
    assert order.profile == "shortlived"
    leaf = chains.leaf
    lifetime = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds()
    assert abs(lifetime - PebbleEnv.SHORTLIVED_SECONDS) <= 60, lifetime


async def test_ari_window_then_replaces(pebble: PebbleEnv) -> None:
    name = unique_name("ari")
    async with acme_for(pebble) as acme:
        await acme.new_account()
        _, chains, _ = await issue(acme, pebble, [name], profile="shortlived")
        leaf = chains.leaf
        info = await acme.renewal_info(leaf)
        assert leaf.not_valid_before_utc <= info.start < info.end <= leaf.not_valid_after_utc
        assert not info.is_open()  # a fresh certificate is not due yet
        assert info.retry_after is None or info.retry_after > 0
        renewal, renewed, _ = await issue(acme, pebble, [name], profile="shortlived", replaces=leaf)
        assert renewal.replaces == ari.cert_id(leaf)
        assert renewed.leaf.serial_number != leaf.serial_number
        with pytest.raises(AcmeProblem) as exc:
            await acme.new_order([name], replaces=leaf)
        assert exc.value.short_type == "alreadyReplaced" and exc.value.status == 409, exc.value


async def test_revocation_by_account_and_by_certificate_key(pebble: PebbleEnv) -> None:
    async with acme_for(pebble) as acme:
        await acme.new_account()
        _, first, _ = await issue(acme, pebble, [unique_name("rev")])
        _, second, second_key = await issue(acme, pebble, [unique_name("rev")])
        await acme.revoke(first.leaf, reason=4)
        assert cert_status(pebble, first.leaf.serial_number)["Status"] == "Revoked"
        with pytest.raises(AcmeProblem) as exc:
            await acme.revoke(first.leaf)
        assert exc.value.short_type == "alreadyRevoked"
    async with acme_for(pebble) as stranger:
        # No account needed when the certificate's own key signs (RFC 8555 §7.6).
        await stranger.revoke(second.pem, cert_key=second_key)
    assert cert_status(pebble, second.leaf.serial_number)["Status"] == "Revoked"


async def test_key_rollover_then_issuance_with_new_key(pebble: PebbleEnv) -> None:
    old_key = crypto.generate_private_key()
    new_key = crypto.generate_private_key("ec-p384")
    async with acme_for(pebble, old_key) as acme:
        await acme.new_account()
        url = acme.account_url
        await acme.key_change(new_key)
    async with acme_for(pebble, new_key) as again:
        await again.lookup_account()
        assert again.account_url == url
        await issue(again, pebble, [unique_name("rolled")])
    async with acme_for(pebble, old_key) as stale:
        with pytest.raises(AcmeProblem) as exc:
            await stale.lookup_account()
        assert exc.value.short_type == "accountDoesNotExist"


async def test_bad_nonce_retry_happens_for_real_and_only_once(pebble: PebbleEnv) -> None:
    """Pebble's default 5 % rejection: 200 requests see about 10 rejections."""
    posts = 0

    class Counting(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal posts
            posts += request.method == "POST"
            return await super().handle_async_request(request)

    async with AcmeClient(
        pebble.directory_url,
        crypto.generate_private_key(),
        transport=Counting(verify=pebble.ssl_context()),
    ) as acme:
        assert acme.max_bad_nonce_retries == 1
        await acme.new_account()
        failed = 0
        for _ in range(200):
            try:
                await acme.get_account()
            except AcmeProblem as problem:
                # Two rejections in a row: the single retry was spent; nothing more is sent.
                assert problem.short_type == "badNonce", problem
                failed += 1
        retries = acme.bad_nonce_retries
    assert retries >= 1, "Pebble rejected no nonce in 201 requests; is its reject rate 0?"
    assert posts == 201 + retries
    assert failed <= retries


async def test_unknown_profile(pebble: PebbleEnv) -> None:
    async with acme_for(pebble) as acme:
        await acme.new_account()
        with pytest.raises(AcmeProblem) as exc:
            await acme.new_order([unique_name()], profile="no-such-profile")
    assert exc.value.short_type == "invalidProfile" and exc.value.status == 400, exc.value
    assert "no-such-profile" in exc.value.detail


async def test_csr_for_names_not_in_the_order(pebble: PebbleEnv) -> None:
    name = unique_name("csr")
    async with acme_for(pebble) as acme:
        await acme.new_account()
        order = await acme.new_order([name])
        async with Http01Solver(pebble.http01_port) as solver:
            order = await acme.solve(order, solver)
        csr = crypto.build_csr(crypto.generate_private_key(), [name, unique_name("intruder")])
        with pytest.raises(AcmeProblem) as exc:
            await acme.finalize(order, csr)
    # Pebble calls this unauthorized (RFC 8555 would also allow badCSR).
    assert exc.value.short_type == "unauthorized" and exc.value.status == 403, exc.value
    assert "identifiers" in exc.value.detail


async def test_not_before_not_after_shape_the_certificate(pebble: PebbleEnv) -> None:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    end = start + dt.timedelta(days=3)
    async with acme_for(pebble) as acme:
        await acme.new_account()
        order, chains, _ = await issue(
            acme, pebble, [unique_name("nb")], not_before=start, not_after=end
        )
    assert (order.not_before, order.not_after) == (start, end)
    assert (chains.leaf.not_valid_before_utc, chains.leaf.not_valid_after_utc) == (start, end)


@pytest.fixture(scope="module")
def pebble_alternates(pebble_factory: Callable[..., PebbleEnv]) -> PebbleEnv:
    return pebble_factory(alternate_roots=1)


async def test_alternate_chains(pebble_alternates: PebbleEnv) -> None:
    async with acme_for(pebble_alternates) as acme:
        await acme.new_account()
        _, chains, _ = await issue(acme, pebble_alternates, [unique_name("alt")])
    assert len(chains.alternates) == 1
    default = crypto.parse_pem_chain(chains.pem)
    alternate = crypto.parse_pem_chain(chains.alternates[0])
    assert default[0] == alternate[0] and default[-1].issuer != alternate[-1].issuer
    crypto.verify_chain(alternate, crypto.parse_pem_chain(pebble_alternates.roots_pem(1)))


async def test_failed_validation_raises_the_challenge_error(pebble: PebbleEnv) -> None:
    """A wrong http-01 answer turns the authorization invalid; solve() raises why."""

    class WrongAnswer(Http01Solver):
        async def present(self, identifier: Any, challenge: Any, key_authorization: str) -> None:
            await super().present(identifier, challenge, key_authorization + "x")

    name = unique_name("wrong")
    async with acme_for(pebble) as acme:
        await acme.new_account()
        order = await acme.new_order([name], profile="default")
        async with WrongAnswer(pebble.http01_port) as solver:
            with pytest.raises(AcmeProblem) as exc:
                await acme.solve(order, solver)
        assert solver.requests, "Pebble never fetched the challenge"
        assert (await acme.get_order(order)).status == "invalid"
    assert exc.value.short_type in ("unauthorized", "incorrectResponse"), exc.value
    assert exc.value.detail
