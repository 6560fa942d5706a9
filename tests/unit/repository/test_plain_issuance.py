"""The RFC 8555 plain path against the in-process app: EAB, policy, finalize with a CSR."""

from __future__ import annotations

import pytest
from repository_testkit import Env

from certdepot.acme import crypto, jws


async def test_directory_and_nonce(env: Env) -> None:
    r = await env.http.get("/directory")
    assert r.status_code == 200
    d = r.json()
    assert d["meta"]["externalAccountRequired"] is True
    assert d["meta"]["download-enabled"] is True
    assert "Replay-Nonce" in r.headers and 'rel="index"' in r.headers["Link"]
    h = await env.http.head(d["newNonce"])
    assert h.status_code == 200 and h.headers["Replay-Nonce"]
    g = await env.http.get(d["newNonce"])
    assert g.status_code == 204


async def test_eab_required(env: Env) -> None:
    c = env.client()
    r = await c.register(None)
    assert r.status_code == 400
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["type"].endswith(":externalAccountRequired")
    assert r.headers["Replay-Nonce"]


async def test_register_and_issue_local_ca(env: Env) -> None:
    c = await env.tenant_client("team-a")
    r = await c.new_order(["x.a.example.test", "app.example.test"])
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "ready"
    for a in order["authorizations"]:
        az = await c.post(a, None)
        assert az.json()["status"] == "valid"
    key = crypto.generate_private_key()
    csr = crypto.build_csr(key, ["x.a.example.test", "app.example.test"])
    f = await c.post(order["finalize"], {"csr": jws.b64encode(csr)})
    assert f.status_code == 200, f.text
    assert f.json()["status"] == "valid"
    cert = await c.post(f.json()["certificate"], None)
    assert cert.headers["Content-Type"].startswith("application/pem-certificate-chain")
    chain = crypto.parse_pem_chain(cert.text)
    assert sorted(crypto.certificate_dns_names(chain[0])) == ["app.example.test",
                                                             "x.a.example.test"]
    life = chain[0].not_valid_after_utc - chain[0].not_valid_before_utc
    assert life.total_seconds() == 2 * 86400  # local-ca lifetime, exactly
    crypto.verify_chain(chain, [chain[-1]])


async def test_names_outside_policy_rejected(env: Env) -> None:
    c = await env.tenant_client("team-b")
    r = await c.new_order(["x.a.example.test", "y.b.example.test"])
    assert r.status_code == 400
    doc = r.json()
    assert doc["type"].endswith(":rejectedIdentifier")
    assert [s["identifier"]["value"] for s in doc["subproblems"]] == ["x.a.example.test"]


async def test_wildcard_pattern_is_one_label(env: Env) -> None:
    c = await env.tenant_client("team-a")
    r = await c.new_order(["deep.x.a.example.test"])
    assert r.json()["type"].endswith(":rejectedIdentifier")


async def test_replayed_nonce(env: Env) -> None:
    c = await env.tenant_client("team-a")
    n = await c.nonce()
    d = await c.dir()
    r1 = await c.new_order(["x.a.example.test"])
    assert r1.status_code == 201
    payload = {"identifiers": [{"type": "dns", "value": "x.a.example.test"}]}
    r2 = await c.post(d["newOrder"], payload, nonce=n)
    assert r2.status_code == 201
    r3 = await c.post(d["newOrder"], payload, nonce=n)
    assert r3.status_code == 400 and r3.json()["type"].endswith(":badNonce")


async def test_url_must_match(env: Env) -> None:
    c = await env.tenant_client("team-a")
    d = await c.dir()
    body_url = d["newOrder"]
    r = await c.post(body_url, {"identifiers": []}, mutate=None)
    assert r.status_code == 400
    # sign for one URL, post to another
    import json

    body = jws.sign({"identifiers": [{"type": "dns", "value": "x.a.example.test"}]}, c.key,
                    url=d["newAccount"], nonce=await c.nonce(), kid=c.kid)
    r = await env.http.post(body_url, content=json.dumps(body),
                            headers={"Content-Type": "application/jose+json"})
    assert r.status_code == 403 and r.json()["type"].endswith(":unauthorized")


async def test_body_limit(env: Env) -> None:
    d = (await env.http.get("/directory")).json()
    r = await env.http.post(d["newOrder"], content=b"x" * 70000,
                            headers={"Content-Type": "application/jose+json"})
    assert r.status_code == 413


async def test_unknown_path_is_problem(env: Env) -> None:
    r = await env.http.get("/nope")
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "application/problem+json"


async def test_deactivated_account_refused(env: Env) -> None:
    c = await env.tenant_client("team-a")
    assert c.kid
    r = await c.post(c.kid, {"status": "deactivated"})
    assert r.json()["status"] == "deactivated"
    r = await c.new_order(["x.a.example.test"])
    assert r.status_code == 403 and r.json()["type"].endswith(":unauthorized")


async def test_existing_account_returned(env: Env) -> None:
    c = await env.tenant_client("team-a")
    r = await c.post((await c.dir())["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    assert r.status_code == 200 and r.headers["Location"] == c.kid


async def test_key_change(env: Env) -> None:
    c = await env.tenant_client("team-a")
    d = await c.dir()
    new_key = crypto.generate_private_key("ec-p384")
    inner = jws.sign({"account": c.kid, "oldKey": jws.public_jwk(c.key)}, new_key,
                     url=d["keyChange"])
    r = await c.post(d["keyChange"], inner)
    assert r.status_code == 200, r.text
    c.key = new_key
    r = await c.new_order(["x.a.example.test"])
    assert r.status_code == 201


async def test_revoke_by_account(env: Env) -> None:
    c = await env.tenant_client("team-a")
    order = (await c.new_order(["x.a.example.test"])).json()
    csr = crypto.build_csr(crypto.generate_private_key(), ["x.a.example.test"])
    f = (await c.post(order["finalize"], {"csr": jws.b64encode(csr)})).json()
    pem = (await c.post(f["certificate"], None)).text
    from cryptography.hazmat.primitives.serialization import Encoding

    der = crypto.parse_pem_chain(pem)[0].public_bytes(Encoding.DER)
    d = await c.dir()
    r = await c.post(d["revokeCert"], {"certificate": jws.b64encode(der)})
    assert r.status_code == 200, r.text
    r = await c.post(d["revokeCert"], {"certificate": jws.b64encode(der)})
    assert r.json()["type"].endswith(":alreadyRevoked")


async def test_stuck_processing_order_fails(env: Env) -> None:
    from certdepot.repository import orders
    from certdepot.repository import store as tables

    c = await env.tenant_client("team-a")
    r = await c.new_order(["x.a.example.test"])
    url = r.headers["Location"]
    row = env.repo.store.get(tables.orders, url.rsplit("/", 1)[-1])
    assert row is not None
    env.repo.store.update(tables.orders, row["id"], status="processing", data={
        **row["data"], "processing_started": env.repo.clock() - orders.PROCESSING_LIMIT - 1})
    o = (await c.post(url, None)).json()
    assert o["status"] == "invalid" and o["error"]["type"].endswith(":serverInternal")


async def test_deactivated_key_cannot_return_account(env: Env) -> None:
    c = await env.tenant_client("team-a")
    assert c.kid
    await c.post(c.kid, {"status": "deactivated"})
    r = await c.post((await c.dir())["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    assert r.status_code == 403 and r.json()["type"].endswith(":unauthorized")


async def test_slow_store_does_not_stall_other_requests(env: Env) -> None:
    """Store work on a network database (PostgreSQL: ``runs_inline`` false) runs in
    worker threads: one request stuck on a slow round trip does not hold up the event
    loop for the others. (SQLite runs it inline: see test_store_unit.py.)"""
    import asyncio
    import time

    c = await env.tenant_client("team-a")
    original = env.repo.store.use_nonce
    env.repo.store.runs_inline = False

    def slow_use_nonce(value: str) -> bool:
        time.sleep(1.0)  # a blocking call, as a slow PostgreSQL would be
        return original(value)

    env.repo.store.use_nonce = slow_use_nonce  # type: ignore[method-assign]
    try:
        nonce = await c.nonce()
        t0 = time.monotonic()
        slow = asyncio.create_task(c.post((await c.dir())["newOrder"], {
            "identifiers": [{"type": "dns", "value": "x.a.example.test"}]}, nonce=nonce))
        await asyncio.sleep(0.1)
        r = await env.http.head("/acme/new-nonce")
        fast = time.monotonic() - t0
        assert r.status_code == 200
        assert fast < 0.7, f"newNonce waited {fast:.2f}s behind a slow request"
        assert (await slow).status_code == 201
    finally:
        env.repo.store.use_nonce = original  # type: ignore[method-assign]
        env.repo.store.runs_inline = True


async def test_csr_policy_refuses_weak_keys_and_ca_usages(env: Env) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    c = await env.tenant_client("team-a")

    async def finalize(csr_der: bytes) -> dict[str, object]:
        order = (await c.new_order(["x.a.example.test"])).json()
        r = await c.post(order["finalize"], {"csr": jws.b64encode(csr_der)})
        assert r.status_code == 400, r.text
        doc: dict[str, object] = r.json()
        return doc

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    der = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("x.a.example.test")]),
                          critical=False)
           .sign(weak, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    doc = await finalize(der)
    assert str(doc["type"]).endswith(":badCSR") and "2048" in str(doc["detail"])
    key = crypto.generate_private_key()
    doc = await finalize(crypto.build_csr(key, ["x.a.example.test"],
                                          key_usage=["digitalSignature", "keyCertSign"]))
    assert str(doc["type"]).endswith(":badCSR") and "keyCertSign" in str(doc["detail"])
    doc = await finalize(crypto.build_csr(key, ["x.a.example.test"],
                                          extended_key_usage=["serverAuth", "codeSigning"]))
    assert str(doc["type"]).endswith(":badCSR") and "extendedKeyUsage" in str(doc["detail"])


async def test_a_failed_local_ca_signature_fails_the_order_in_the_answer(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local CA signs inside the finalize request: its refusal fails the order there
    (invalid, with the issuer's message), the order stays failed, and it is not signed
    again by a second finalize."""
    from certdepot.repository.issuers import IssueRequest, IssuerError

    calls: list[IssueRequest] = []

    def refusing(request: IssueRequest) -> str:
        calls.append(request)
        raise IssuerError("issuer local: lifetime exceeds the root's validity")

    monkeypatch.setattr(env.repo.issuers["local"], "sign_now", refusing)
    c = await env.tenant_client("team-a")
    order = (await c.new_order(["x.a.example.test"])).json()
    csr = crypto.build_csr(crypto.generate_private_key(), ["x.a.example.test"])
    f = await c.post(order["finalize"], {"csr": jws.b64encode(csr)})
    assert f.status_code == 200, f.text
    assert f.json()["status"] == "invalid"
    assert f.json()["error"]["detail"] == ("issuance failed: issuer local: lifetime "
                                           "exceeds the root's validity")
    assert (await c.post(f.headers["Location"], None)).json()["status"] == "invalid"
    again = await c.post(order["finalize"], {"csr": jws.b64encode(csr)})
    assert again.json()["type"].endswith(":orderNotReady")
    assert len(calls) == 1


async def test_a_store_error_after_signing_rolls_the_finalize_back(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Signing, storing the certificate and making the order valid are one transaction
    with the request: a store failure while storing leaves the order ready (nothing
    half-written) and the client may finalize again."""
    import sqlalchemy as sa

    from certdepot.repository import certstore

    original = certstore.save_certificate

    def failing(*args: object, **kwargs: object) -> str:
        raise sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))

    c = await env.tenant_client("team-a")
    created = await c.new_order(["x.a.example.test"])
    order = created.json()
    csr = crypto.build_csr(crypto.generate_private_key(), ["x.a.example.test"])
    monkeypatch.setattr(certstore, "save_certificate", failing)
    f = await c.post(order["finalize"], {"csr": jws.b64encode(csr)})
    assert f.status_code == 503, f.text
    assert f.json()["detail"] == "the certificate store is temporarily unavailable"
    assert (await c.post(created.headers["Location"], None)).json()["status"] == "ready"
    monkeypatch.setattr(certstore, "save_certificate", original)
    again = await c.post(order["finalize"], {"csr": jws.b64encode(csr)})
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "valid"


async def test_a_second_finalize_of_a_claimed_order_signs_nothing_stored(env: Env) -> None:
    """Two finalizes of one order (two replicas, say) both reach issuance: the ready ->
    valid compare-and-set lets one store its certificate; the other is orderNotReady."""
    from certdepot.acme.problems import AcmeProblem
    from certdepot.repository import issuance
    from certdepot.repository import store as tables
    from certdepot.repository.issuers import IssueRequest

    c = await env.tenant_client("team-a")
    created = await c.new_order(["x.a.example.test"])
    order_id = created.headers["Location"].rsplit("/", 1)[1]
    row = env.repo.store.get(tables.orders, order_id)
    assert row is not None and row["status"] == "ready"
    csr = crypto.build_csr(crypto.generate_private_key(), ["x.a.example.test"])
    request = IssueRequest(csr_der=csr, dns_names=["x.a.example.test"])
    first = issuance.issue_for_order(env.repo, row, row["data"], request, row["account_id"])
    assert first["status"] == "valid"
    with pytest.raises(AcmeProblem) as refused:
        issuance.issue_for_order(env.repo, row, row["data"], request, row["account_id"])
    assert refused.value.short_type == "orderNotReady"
    assert [r["id"] for r in env.repo.store.find(tables.certificates, order_id=order_id)] \
        == [first["cert_id"]]
