"""Configuration validation, the key vault, the store's nonces and leases, policy patterns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from repository_testkit import base_config

from certdepot.repository.config import ConfigError, load_config, parse_duration
from certdepot.repository.keyvault import KeyVault, KeyVaultError
from certdepot.repository.policy import name_matches
from certdepot.repository.store import MIGRATIONS, Store


def _write(tmp_path: Path, cfg: dict[str, object]) -> Path:
    p = tmp_path / "repo.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_valid_config_loads(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, base_config()))
    assert cfg.certificate("web") is not None
    assert cfg.issuer("local").type == "local-ca"


@pytest.mark.parametrize(("mutate", "where", "what"), [
    (lambda c: c["issuers"][0].pop("type"), "issuers.0", "type"),
    (lambda c: c["certificates"][0].update(issuer="nope"), "certificates.0.issuer", "nope"),
    (lambda c: c["certificates"][0].update(renewBefore="soon"), "certificates.0.renewBefore",
     "duration"),
    (lambda c: c["tenants"][0].update(download=["ghost"]), "tenants.0.download", "ghost"),
    (lambda c: c.update(baseUrl="ftp://x"), "baseUrl", "http"),
    (lambda c: c.update(surprise=1), "surprise", "Extra inputs"),
    (lambda c: c["issuers"].append({"name": "up", "type": "acme", "directory": "https://x",
                                    "challenge": {"type": "dns-01"}}),
     "issuers.2.challenge", "dns-01 needs server and zone"),
])
def test_invalid_config_names_file_key_problem(tmp_path: Path, mutate, where: str,
                                               what: str) -> None:
    cfg = base_config()
    mutate(cfg)
    path = _write(tmp_path, cfg)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and where in msg and what in msg, msg


def test_delegation_lifetime_issuer_check(tmp_path: Path) -> None:
    cfg = base_config()
    cfg["issuers"].append({"name": "up", "type": "acme", "directory": "https://x",
                           "maxLifetime": "90d"})
    template = {"keyTypes": [{"PublicKeyType": "id-ecPublicKey", "namedCurve": "secp256r1",
                              "SignatureType": "ecdsa-with-SHA256"}],
                "extensions": {"subjectAltName": {"DNS": ["**"]}}}
    cfg["tenants"][0]["delegations"] = [{"name": "cdn", "csrTemplate": template,
                                         "issuer": "up", "maxLifetime": "7d"}]
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, cfg))
    assert "tenants.0.delegations.0.maxLifetime" in str(err.value)


def test_serve_with_invalid_config_fails_at_start(tmp_path: Path) -> None:
    cfg = base_config()
    cfg["listeners"] = {}
    path = _write(tmp_path, cfg)
    res = subprocess.run([sys.executable, "-m", "certdepot.cli", "repository", "serve",
                          "--config", str(path)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "CERTDEPOT_TEST_KEK": "x"})
    assert res.returncode == 2
    assert str(path) in res.stderr and "listeners" in res.stderr


def test_durations() -> None:
    assert parse_duration("90d").days == 90
    assert parse_duration("36h").total_seconds() == 36 * 3600
    assert parse_duration(45).total_seconds() == 45
    with pytest.raises(ValueError):
        parse_duration("1w")
    # Beyond timedelta's range: a ValueError (a clear config error), not an OverflowError
    # (hypothesis found -86399999913601 as an issuer's lifetime).
    for huge in (-86_399_999_913_601, "99999999999999d"):
        with pytest.raises(ValueError, match="out of range"):
            parse_duration(huge)


def test_keyvault_roundtrip_and_binding() -> None:
    v = KeyVault(os.urandom(32))
    blob = v.seal(b"secret key bytes", "cert-key:1")
    assert b"secret" not in blob
    assert v.open(blob, "cert-key:1") == b"secret key bytes"
    with pytest.raises(KeyVaultError):
        v.open(blob, "cert-key:2")  # moved to another row
    with pytest.raises(KeyVaultError):
        KeyVault(os.urandom(32)).open(blob, "cert-key:1")  # wrong KEK
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(KeyVaultError):
        v.open(tampered, "cert-key:1")


def test_nonces_single_use_and_expiring() -> None:
    s = Store("sqlite://")
    s.migrate()
    n = s.new_nonce(60)
    assert s.use_nonce(n) and not s.use_nonce(n)
    old = s.new_nonce(-1)
    assert not s.use_nonce(old)
    assert not s.use_nonce("never-issued")


def test_lease_exclusive_until_expiry() -> None:
    s = Store("sqlite://")
    s.migrate()
    assert s.acquire_lease("renew:web", "a", 60)
    assert not s.acquire_lease("renew:web", "b", 60)
    assert s.acquire_lease("renew:web", "a", 60)  # holder renews
    s.release_lease("renew:web", "a")
    assert s.acquire_lease("renew:web", "b", -1)  # expired at once
    assert s.acquire_lease("renew:web", "a", 60)


def test_migrations_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert Store(url).migrate() == Store(url).migrate() == len(MIGRATIONS)


@pytest.mark.parametrize(("name", "pattern", "ok"), [
    ("cdn-eu.example.com", "cdn-*.example.com", True),
    ("cdn-.example.com", "cdn-*.example.com", False),
    ("a.cdn-x.example.com", "cdn-*.example.com", False),
    ("cdn-a.b.example.com", "cdn-*.example.com", False),
    ("x.a.example.test", "*.a.example.test", True),
    ("y.x.a.example.test", "*.a.example.test", False),
    ("*.a.example.test", "*.a.example.test", True),
    ("*.a.example.test", "x.a.example.test", False),
    ("APP.example.test", "app.example.test", True),
])
def test_name_patterns(name: str, pattern: str, ok: bool) -> None:
    assert name_matches(name, pattern) is ok


def test_credentials_from_files(tmp_path: Path) -> None:
    (tmp_path / "hmac").write_text("c2VjcmV0\n")
    (tmp_path / "tsig").write_text("dHNpZw==\n")
    cfg = base_config()
    cfg["issuers"].append({
        "name": "up", "type": "acme", "directory": "https://ca.test/dir",
        "eab": {"kid": "k1", "hmacKeyFile": str(tmp_path / "hmac")},
        "challenge": {"type": "dns-01", "server": "127.0.0.1", "zone": "example.test.",
                      "tsig": {"name": "t.", "secretFile": str(tmp_path / "tsig")}}})
    loaded = load_config(_write(tmp_path, cfg))
    up = loaded.issuer("up")
    assert up.type == "acme" and up.eab is not None and up.eab.key == "c2VjcmV0"
    assert up.challenge.tsig is not None and up.challenge.tsig.secret == "dHNpZw=="
    cfg["issuers"][-1]["eab"] = {"kid": "k1", "hmacKeyFile": str(tmp_path / "missing")}
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, cfg))
    assert "issuers.2.eab" in str(err.value) and "cannot read" in str(err.value)


def test_minted_eab_keys_are_cli_safe() -> None:
    from certdepot.repository.tenants import create_tenant

    s = Store("sqlite://")
    s.migrate()
    v = KeyVault(os.urandom(32))
    for i in range(200):
        creds = create_tenant(s, v, f"t{i}")
        assert not creds.hmac_key.startswith("-")


def test_invalid_csr_template_rejected_at_load(tmp_path: Path) -> None:
    cfg = base_config()
    cfg["tenants"][0]["delegations"] = [{"name": "cdn", "issuer": "local",
                                         "csrTemplate": {"keyTypes": "nope"}}]
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, cfg))
    assert "tenants.0.delegations.0.csrTemplate" in str(err.value)


def test_storage_url_from_file(tmp_path: Path) -> None:
    (tmp_path / "db-url").write_text("sqlite://\n")
    cfg = base_config(storage={"urlFile": str(tmp_path / "db-url")})
    assert load_config(_write(tmp_path, cfg)).storage.database_url == "sqlite://"
    assert load_config(_write(tmp_path, base_config(storage={}))).storage.database_url == \
        "sqlite:///certdepot.db"
