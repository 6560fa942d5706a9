"""Every JSON object the repository sends parses into its acme.messages type and back unchanged.

The repository renders its wire objects from the same classes the client parses
(repository/views.py). This drives the real repository app (in process, the repository's
own test kit) through the client's flows -- account, download, delegation, STAR, a pending
order's authorization and challenge, lists, renewalInfo, a problem -- records each JSON
answer, and checks ``Type.from_json(body).to_json() == body`` for every one: nothing the
server writes is lost or altered by the client's parser, and the extension members arrive
under the names in acme/fields.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "repository"))
from repository_testkit import BASE, make_config  # type: ignore[import-not-found]

from certdepot.acme import crypto, csr_template, fields
from certdepot.acme.client import AcmeClient
from certdepot.acme.messages import (
    Account,
    Authorization,
    Challenge,
    Delegation,
    Directory,
    Order,
    RenewalInfo,
    UrlList,
)
from certdepot.acme.problems import AcmeProblem
from certdepot.acme.timefmt import rfc3339
from certdepot.repository import renewal
from certdepot.repository.app import create_app
from certdepot.repository.bootstrap import build_repo
from certdepot.repository.tenants import create_tenant

WEB = ["example.test", "www.example.test"]
TEMPLATE: dict[str, Any] = {
    "keyTypes": [
        {
            "PublicKeyType": "id-ecPublicKey",
            "namedCurve": "secp256r1",
            "SignatureType": "ecdsa-with-SHA256",
        }
    ],
    "extensions": {"subjectAltName": {"DNS": ["**"]}},
}

Parse = Callable[[Any], Any]

# Which client type parses the JSON answer of which repository path.
ROUTES: list[tuple[str, str, Parse]] = [
    (r"/directory$", "Directory", Directory.from_json),
    (r"/acme/acct/[^/]+/delegations$", "DelegationList",
     lambda d: UrlList.from_json_member(d, fields.DELEGATIONS)),
    (r"/acme/acct/[^/]+/orders$", "OrderList", lambda d: UrlList.from_json_member(d, "orders")),
    (r"/acme/acct/[^/]+/delegation/[^/]+$", "Delegation", Delegation.from_json),
    (r"/acme/(new-account|acct/[^/]+)$", "Account", Account.from_json),
    (r"/acme/(new-order|order/[^/]+(/finalize)?)$", "Order", Order.from_json),
    (r"/acme/authz/[^/]+$", "Authorization", Authorization.from_json),
    (r"/acme/chall/[^/]+/[^/]+$", "Challenge", Challenge.from_json),
    (r"/acme/renewal-info/[^/]+$", "RenewalInfo", RenewalInfo.from_json),
]


class Recorder(httpx.AsyncBaseTransport):
    """Passes requests to the app and keeps every JSON answer: (path, media type, body)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.answers: list[tuple[str, str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        media = response.headers.get("content-type", "").split(";")[0]
        if media in ("application/json", "application/problem+json"):
            self.answers.append((request.url.path, media, json.loads(body)))
        return httpx.Response(response.status_code, headers=response.headers, content=body,
                              request=request)


@pytest.fixture
async def recorded() -> AsyncIterator[Recorder]:
    config = make_config(
        issuers=[{"name": "local", "type": "local-ca", "lifetime": "2d"}],
        tenants=[{
            "name": "team-a", "download": ["web"], "issue": ["*.a.example.test"],
            "delegations": [{
                "name": "cdn", "csrTemplate": TEMPLATE, "namePatterns": ["cdn-*.example.test"],
                "maxLifetime": "7d", "issuer": "local", "allowCertificateGet": True,
            }],
        }],
        eabRequired=False,  # the directory must still say so: false is a value, not absence
    )
    repo = build_repo(config)
    creds = create_tenant(repo.store, repo.vault, "team-a")
    await renewal.run_once(repo)
    recorder = Recorder(httpx.ASGITransport(app=create_app(repo)))
    acme = AcmeClient(f"{BASE}/directory", crypto.generate_private_key(), transport=recorder,
                      poll_interval=0.01)
    async with acme:
        await acme.new_account(eab=(creds.kid, creds.hmac_key))
        await _walk(acme)
    for task in list(repo.tasks):
        task.cancel()
    repo.store.close()
    yield recorder


async def _walk(acme: AcmeClient) -> None:
    """Every kind of object the repository answers with, through the client's own calls."""
    account = await acme.get_account()
    chain, _ = await acme.download_certificate(WEB)
    await acme.renewal_info(crypto.parse_pem_chain(chain)[0])
    [url] = await acme.list_delegations()
    delegation = await acme.get_delegation(url)
    key = crypto.generate_private_key()
    csr = csr_template.build_csr_for_template(delegation.csr_template, key,
                                              ["cdn-1.example.test"])
    await acme.delegated_order(url, csr)
    end = rfc3339(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    star = await acme.new_order(["cdn-star.example.test"], extra={
        fields.DELEGATION: url,
        fields.AUTO_RENEWAL: {fields.END_DATE: end, fields.LIFETIME: 3600,
                              fields.ALLOW_CERTIFICATE_GET: True}})
    star_csr = csr_template.build_csr_for_template(delegation.csr_template, key,
                                                   ["cdn-star.example.test"])
    await acme.finalize(star, star_csr)
    await acme.post(star.url or "", {"status": "canceled"})
    # A certificate downloadable by proof of control: its authorization carries challenges.
    pending = await acme.new_order(["proof.example.test"], extra={fields.DOWNLOAD: True})
    authz = await acme.get_authorization(pending.authorizations[0])
    await acme.post_as_get(authz.challenges[0].url)  # read, not answered: no validation
    assert account.orders is not None
    await acme.post_as_get(account.orders)
    with pytest.raises(AcmeProblem):
        await acme.new_order(["elsewhere.test"])


def _kind(path: str, media: str) -> tuple[str, Parse]:
    if media == "application/problem+json":
        return "Problem", AcmeProblem.from_json
    for pattern, name, parse in ROUTES:
        if re.search(pattern, path):
            return name, parse
    raise AssertionError(f"no client type for the JSON answer of {path}")


def test_every_answer_survives_client_parse_and_serialise(recorded: Recorder) -> None:
    seen: set[str] = set()
    for path, media, body in recorded.answers:
        name, parse = _kind(path, media)
        seen.add(name)
        assert parse(body).to_json() == body, (path, body)
    assert seen == {name for _, name, _ in ROUTES} | {"Problem"}


def _bodies(recorded: Recorder, name: str) -> list[dict[str, Any]]:
    return [b for p, m, b in recorded.answers if _kind(p, m)[0] == name]


def test_extension_members_arrive_under_the_shared_names(recorded: Recorder) -> None:
    [directory, *_] = _bodies(recorded, "Directory")
    meta = directory["meta"]
    assert meta[fields.DOWNLOAD_ENABLED] is True and meta[fields.DELEGATION_ENABLED] is True
    assert {fields.MIN_LIFETIME, fields.MAX_DURATION, fields.ALLOW_CERTIFICATE_GET} <= set(
        meta[fields.AUTO_RENEWAL])
    assert meta["externalAccountRequired"] is False  # sent even when false
    orders = _bodies(recorded, "Order")
    assert any(fields.PRIVATE_KEY in o and o.get(fields.DOWNLOAD) is True for o in orders)
    assert any(fields.DELEGATION in o and "certificate" in o for o in orders)
    star = [o for o in orders if fields.AUTO_RENEWAL in o]
    assert any(fields.STAR_CERTIFICATE in o and "certificate" not in o for o in star)
    assert star[-1]["status"] == "canceled"
    assert all(fields.DELEGATIONS in a for a in _bodies(recorded, "Account"))
    [delegation] = _bodies(recorded, "Delegation")
    assert delegation[fields.CSR_TEMPLATE] == TEMPLATE
    [info] = _bodies(recorded, "RenewalInfo")
    window = info[fields.SUGGESTED_WINDOW]
    assert window["start"] < window["end"] and window["start"].endswith("Z")
