"""AcmeClient against an in-process fake ACME server (wire behaviour, faults, extensions)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from acme_fake_server import BASE, FakeAcme

from certdepot.acme import ari, crypto, csr_template, jws
from certdepot.acme.client import (
    AcmeClient,
    AcmeClientError,
    AcmeTimeout,
    parse_links,
    retry_after_seconds,
)
from certdepot.acme.messages import Challenge, Identifier
from certdepot.acme.problems import AcmeProblem
from certdepot.acme.transport_errors import ConnectError, ProtocolError, Timeout

DIR = f"{BASE}/dir"


class AlwaysReady:
    challenge_type = "http-01"

    def __init__(self) -> None:
        self.presented: list[str] = []
        self.cleaned: list[str] = []

    async def present(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        self.presented.append(key_authorization)

    async def cleanup(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        self.cleaned.append(key_authorization)


@pytest.fixture
def fake() -> FakeAcme:
    return FakeAcme()


@contextlib.asynccontextmanager
async def client_for(
    fake: FakeAcme, key: crypto.PrivateKey | None = None, **kw: Any
) -> AsyncIterator[AcmeClient]:
    transport = httpx.ASGITransport(app=fake.app())
    async with AcmeClient(
        DIR, key or crypto.generate_private_key(), transport=transport, poll_interval=0.01, **kw
    ) as c:
        yield c


async def test_directory_and_account_lifecycle(fake: FakeAcme) -> None:
    key = crypto.generate_private_key()
    async with client_for(fake, key) as acme:
        d = await acme.directory()
        assert d.meta.profiles["shortlived"] == "6 days" and d.meta.download_enabled
        with pytest.raises(AcmeProblem) as exc:
            await acme.lookup_account()
        assert exc.value.short_type == "accountDoesNotExist"
        account = await acme.new_account(["mailto:a@example.test"])
        assert account.status == "valid" and acme.account_url and account.url == acme.account_url
        first_url = acme.account_url
    async with client_for(fake, key) as again:
        found = await again.lookup_account()
        assert again.account_url == first_url and found.contact == ["mailto:a@example.test"]
        updated = await again.update_account(contact=["mailto:b@example.test"])
        assert updated.contact == ["mailto:b@example.test"]
        assert (await again.get_account()).contact == ["mailto:b@example.test"]
        assert (await again.deactivate_account()).status == "deactivated"


async def test_eab_account(fake: FakeAcme) -> None:
    fake.eab_keys = {"kid-1": b"k" * 32}
    async with client_for(fake) as acme:
        with pytest.raises(AcmeProblem) as exc:
            await acme.new_account()
        assert exc.value.short_type == "externalAccountRequired"
        with pytest.raises(AcmeProblem) as exc:
            await acme.new_account(eab=("kid-1", jws.b64encode(b"x" * 32)))
        assert exc.value.short_type == "unauthorized"
        account = await acme.new_account(
            eab={"kid": "kid-1", "hmac_key": jws.b64encode(b"k" * 32)}, eab_alg="HS512"
        )
        assert account.status == "valid"


async def test_bad_nonce_is_retried_exactly_once(fake: FakeAcme) -> None:
    async with client_for(fake) as acme:
        fake.reject_nonces = 1
        await acme.new_account()
        assert acme.bad_nonce_retries == 1
        fake.reject_nonces = 2
        with pytest.raises(AcmeProblem) as exc:
            await acme.get_account()
        assert exc.value.short_type == "badNonce"
        assert acme.bad_nonce_retries == 2
        posts = [p for m, p in fake.requests if m == "POST"]
        assert len(posts) == 4  # 2 for new_account, 2 for get_account: never a third try


async def test_order_flow_with_polling_finalize_and_alternates(fake: FakeAcme) -> None:
    solver = AlwaysReady()
    async with client_for(fake) as acme:
        await acme.new_account()
        order = await acme.new_order(
            ["a.example.test"], profile="shortlived", replaces="aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
        )
        assert order.status == "pending" and order.profile == "shortlived" and order.replaces
        order = await acme.solve(order, solver)
        assert order.status == "ready" and solver.presented == solver.cleaned
        assert solver.presented[0].startswith("tok") and solver.presented[0].endswith(
            jws.thumbprint_b64(acme.jwk)
        )
        key = crypto.generate_private_key()
        order = await acme.finalize(order, crypto.build_csr(key, ["a.example.test"]))
        assert order.status == "valid" and order.certificate
        chains = await acme.fetch_certificate(order.certificate)
        assert crypto.public_key_matches(key, chains.leaf)
        assert len(chains.alternates) == 1
        assert (
            crypto.parse_pem_chain(chains.alternates[0])[1].subject
            != crypto.parse_pem_chain(chains.pem)[1].subject
        )


async def test_unknown_profile_and_csr_mismatch_are_problems(fake: FakeAcme) -> None:
    async with client_for(fake) as acme:
        await acme.new_account()
        with pytest.raises(AcmeProblem) as exc:
            await acme.new_order(["a.example.test"], profile="no-such-profile")
        assert exc.value.short_type == "invalidProfile" and "no-such-profile" in exc.value.detail
        order = await acme.solve(await acme.new_order(["a.example.test"]), AlwaysReady())
        with pytest.raises(AcmeProblem) as exc:
            await acme.finalize(
                order, crypto.build_csr(crypto.generate_private_key(), ["other.example.test"])
            )
        assert exc.value.short_type == "badCSR"


async def test_polling_gives_up_with_a_timeout_naming_the_url(fake: FakeAcme) -> None:
    fake.order_polls_until_valid = 10_000
    fake.retry_after = "1"
    async with client_for(fake, max_poll_interval=0.05) as acme:
        await acme.new_account()
        order = await acme.solve(await acme.new_order(["a.example.test"]), AlwaysReady())
        started = time.monotonic()
        with pytest.raises(AcmeTimeout) as exc:
            await acme.finalize(
                order,
                crypto.build_csr(crypto.generate_private_key(), ["a.example.test"]),
                max_wait=0.3,
            )
        assert time.monotonic() - started < 2  # Retry-After: 1 was capped by max_poll_interval
        assert order.url is not None and order.url in str(exc.value)
        assert isinstance(exc.value, TimeoutError) and isinstance(exc.value, AcmeProblem)


async def test_500_without_problem_document_is_server_internal(fake: FakeAcme) -> None:
    async with client_for(fake) as acme:
        with pytest.raises(AcmeProblem) as exc:
            await acme.get(f"{BASE}/boom")
        assert exc.value.short_type == "serverInternal" and exc.value.status == 500
        assert f"{BASE}/boom" in exc.value.detail and "exploded" in exc.value.detail


async def test_request_timeout_names_the_url() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/dir"
    try:
        async with AcmeClient(url, crypto.generate_private_key(), timeout=0.3) as acme:
            started = time.monotonic()
            with pytest.raises(Timeout, match=url):
                await acme.directory()
            assert time.monotonic() - started < 3
    finally:
        server.close()


async def test_refused_connection_names_the_url() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    url = f"http://127.0.0.1:{port}/dir"
    async with AcmeClient(url, crypto.generate_private_key(), timeout=2) as acme:
        with pytest.raises(ConnectError, match=url) as exc:
            await acme.directory()
    assert isinstance(exc.value.__cause__, httpx.ConnectError)


async def test_key_change_then_requests_use_the_new_key(fake: FakeAcme) -> None:
    async with client_for(fake) as acme:
        await acme.new_account()
        url = acme.account_url
        new_key = crypto.generate_private_key("ec-p384")
        await acme.key_change(new_key)
        assert acme.key is new_key
        assert (await acme.get_account()).status == "valid"
    async with client_for(fake, new_key) as again:
        await again.lookup_account()
        assert again.account_url == url


async def test_revoke_by_account_and_by_certificate_key(fake: FakeAcme) -> None:
    async with client_for(fake) as acme:
        await acme.new_account()
        order = await acme.solve(await acme.new_order(["a.example.test"]), AlwaysReady())
        key = crypto.generate_private_key()
        order = await acme.finalize(order, crypto.build_csr(key, ["a.example.test"]))
        assert order.certificate
        chains = await acme.fetch_certificate(order.certificate, alternates=False)
        await acme.revoke(chains.pem, reason=4)
        with pytest.raises(AcmeProblem) as exc:
            await acme.revoke(chains.leaf, cert_key=key)
        assert exc.value.short_type == "alreadyRevoked"


async def test_renewal_info(fake: FakeAcme) -> None:
    async with client_for(fake) as acme:
        info = await acme.renewal_info("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE")
        assert (
            info.retry_after == 3600
            and info.explanation_url
            and info.explanation_url.endswith(".AIdlQyE")
        )
        assert info.end > info.start


async def test_download_certificate_unwraps_and_checks_the_key(fake: FakeAcme) -> None:
    async with client_for(fake) as acme:
        await acme.new_account()
        chain, key = await acme.download_certificate(["www.example.test"], pin_root=fake.root[0])
        assert crypto.public_key_matches(key, crypto.parse_pem_chain(chain)[0])
        assert fake.download_key is not None
        assert crypto.private_key_to_pkcs8_der(key) == crypto.private_key_to_pkcs8_der(
            fake.download_key
        )
        order_doc = next(iter(fake.orders.values()))["doc"]
        assert order_doc["download"] is True
        with pytest.raises(AcmeClientError, match="pinned root") as exc:
            await acme.download_certificate(["www.example.test"], pin_root=fake.alt_root[0])
        assert exc.value.short_type.endswith("untrustedChain")
        fake.wrong_download_key = True
        with pytest.raises(AcmeClientError) as exc:
            await acme.download_certificate(["www.example.test"])
        assert exc.value.short_type.endswith("keyMismatch")


async def test_download_needs_the_extension(fake: FakeAcme) -> None:
    fake.download_enabled = False
    async with client_for(fake) as acme:
        await acme.new_account()
        with pytest.raises(AcmeClientError, match="download"):
            await acme.download_certificate(["www.example.test"])


async def test_delegation_helpers(fake: FakeAcme) -> None:
    async with client_for(fake) as acme:
        await acme.new_account()
        urls = await acme.list_delegations()
        assert urls == [f"{BASE}/delegation/1"]
        delegation = await acme.get_delegation(urls[0])
        assert delegation.cname_map
        key = crypto.generate_private_key()
        csr = csr_template.build_csr_for_template(
            delegation.csr_template, key, ["cdn.example.test"]
        )
        order = await acme.delegated_order(urls[0], csr)
        assert order.status == "valid" and order.get("delegation") == urls[0]
        assert order.identifiers == [Identifier.dns("cdn.example.test")]


async def test_requests_need_an_account(fake: FakeAcme) -> None:
    async with client_for(fake) as acme:
        with pytest.raises(AcmeClientError, match="new_account"):
            await acme.new_order(["a.example.test"])


def test_link_and_retry_after_parsing() -> None:
    request = httpx.Request("POST", "https://ca.test/cert/1")
    response = httpx.Response(
        200,
        request=request,
        headers=[
            ("Link", '<https://ca.test/cert/1/1>;rel="alternate", </dir>; rel="index"'),
            ("Link", "<alt2>;rel=alternate"),
            ("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ],
    )
    assert parse_links(response) == [
        ("https://ca.test/cert/1/1", "alternate"),
        ("https://ca.test/dir", "index"),
        ("https://ca.test/cert/alt2", "alternate"),
    ]
    assert retry_after_seconds(response) == 0.0
    moment = 1445412480.0 - 30
    assert retry_after_seconds(response, now=moment) == 30.0
    assert retry_after_seconds(httpx.Response(200, headers={"Retry-After": "7"})) == 7.0
    assert retry_after_seconds(httpx.Response(200, headers={"Retry-After": "soon"})) is None
    assert ari.cert_id_from_parts(b"\x01", 1) == "AQ.AQ"


async def _closing_server(answer_after: int) -> tuple[asyncio.Server, str, list[int]]:
    """A loopback HTTP server that reads each request and hangs up without an answer on
    its first ``answer_after`` connections, then answers a directory."""
    seen: list[int] = []
    body = b'{"newNonce": "http://x/n", "newAccount": "http://x/a", "newOrder": "http://x/o"}'

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(len(seen))
        await reader.readuntil(b"\r\n\r\n")
        if len(seen) > answer_after:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/dir", seen


async def test_a_connection_closed_without_answer_is_retried_once() -> None:
    server, url, seen = await _closing_server(answer_after=1)
    try:
        async with AcmeClient(url, crypto.generate_private_key(), timeout=5) as acme:
            directory = await acme.directory()
            assert directory.new_order == "http://x/o"
            assert acme.reconnects == 1 and len(seen) == 2
    finally:
        server.close()


async def test_a_server_that_keeps_hanging_up_fails_after_one_retry() -> None:
    server, url, seen = await _closing_server(answer_after=10)
    try:
        async with AcmeClient(url, crypto.generate_private_key(), timeout=5) as acme:
            with pytest.raises(ProtocolError, match="RemoteProtocolError") as exc:
                await acme.directory()
            assert isinstance(exc.value.__cause__, httpx.RemoteProtocolError)
            assert acme.reconnects == 1 and len(seen) == 2
    finally:
        server.close()
