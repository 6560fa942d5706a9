"""A RepositoryTenant's EAB credentials (eabsecrets.py) and the status conditions the
repository writes (kubewatch.ready): the Secret's shape, rotation, ownership."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from certdepot.acme.jws import b64decode
from certdepot.repository import eabsecrets, tenants
from certdepot.repository.keyvault import KeyVault
from certdepot.repository.kubewatch import ready
from certdepot.repository.store import Store


def _store(tmp_path: Path) -> tuple[Store, KeyVault]:
    store = Store(f"sqlite:///{tmp_path / 'repo.db'}")
    store.migrate()
    return store, KeyVault(os.urandom(32))


def test_credentials_are_minted_once_and_rotated_in_place(tmp_path: Path) -> None:
    store, vault = _store(tmp_path)
    try:
        first = eabsecrets.ensure(store, vault, "team")
        assert eabsecrets.ensure(store, vault, "team") == first
        rotated = eabsecrets.rotate(store, vault, "team")
        assert rotated.kid != first.kid and rotated.hmac_key != first.hmac_key
        assert eabsecrets.current(store, vault, "team") == rotated
        # The old key id creates nothing any more; the new one verifies.
        assert tenants.hmac_key_for(store, vault, first.kid) is None
        found = tenants.hmac_key_for(store, vault, rotated.kid)
        assert found is not None and found == ("team", b64decode(rotated.hmac_key))
    finally:
        store.close()


def test_the_secret_has_the_shape_key_secret_ref_reads() -> None:
    creds = tenants.EabCredentials("team", "kid-1", "aGVsbG8")
    body = eabsecrets.secret_body("team-eab", "certdepot", creds, 3)
    assert body["type"] == "Opaque"
    # keySecretRef's default key "secret" holds the base64url HMAC key as text.
    assert base64.b64decode(body["data"]["secret"]).decode() == "aGVsbG8"
    assert base64.b64decode(body["data"]["keyID"]).decode() == "kid-1"
    assert "ownerReferences" not in body["metadata"]  # a copy elsewhere must survive
    assert eabsecrets.minted_for(body) == 3
    assert eabsecrets.ours(body, "team") and not eabsecrets.ours(body, "other")
    foreign = {"metadata": {"name": "team-eab", "annotations": {
        eabsecrets.TENANT_ANNOTATION: "team"}}, "data": {}}
    assert not eabsecrets.ours(foreign, "team"), "an annotation alone does not make it ours"
    assert eabsecrets.minted_for(None) is None


def test_ready_keeps_its_transition_time_while_the_status_holds() -> None:
    first = ready({}, True, "Issued", "ok", 1)[0]
    old = {"conditions": [{**first, "lastTransitionTime": "2020-01-01T00:00:00Z"}]}
    same = ready(old, True, "Issued", "still ok", 2)[0]
    assert same["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    flipped = ready(old, False, "Conflict", "no", 2)[0]
    assert flipped["lastTransitionTime"] != "2020-01-01T00:00:00Z"
    assert flipped["status"] == "False" and flipped["observedGeneration"] == 2
