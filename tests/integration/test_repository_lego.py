"""lego (Debian's package) against a real repository process over TLS: EAB account, a
wildcard certificate, renewal, revocation, and a refused name."""

from __future__ import annotations

from pathlib import Path

from acme_clients import Lego, is_revoked, output, repository_root, verify_chain
from repository_harness import base_config, create_tenant, running, write_config

from certdepot.acme import crypto
from certdepot.testenv import procs

NAMES = ["*.a.example.test", "a.example.test"]


def _config(tmp_path: Path, port: int) -> Path:
    cfg = base_config(tmp_path, port,
                      issuers=[{"name": "local", "type": "local-ca", "lifetime": "36h"}],
                      defaultIssuer="local",
                      tenants=[{"name": "team-a", "issue": NAMES}])
    return write_config(tmp_path, cfg)


def test_lego_issue_renew_revoke(tmp_path: Path) -> None:
    port = procs.free_port()
    path = _config(tmp_path, port)
    eab = create_tenant(tmp_path, path, "team-a")
    with running(tmp_path, path, port) as repo:
        lego = Lego(tmp_path, repo, eab)
        res = lego(NAMES, "run")
        assert res.returncode == 0, output(res) + repo.proc.tail()
        chain_pem = lego.chain_file(NAMES[0]).read_bytes()
        first = crypto.parse_pem_chain(chain_pem)[0]
        assert sorted(crypto.certificate_dns_names(first)) == sorted(NAMES)
        key = crypto.load_private_key(lego.key_file(NAMES[0]).read_bytes())
        assert crypto.public_key_matches(key, first)
        root = repository_root(tmp_path)
        verify_chain(chain_pem, root, tmp_path)

        # A 36 h certificate is inside lego's default 30-day renewal window.
        res = lego(NAMES, "renew", "--no-random-sleep")
        assert res.returncode == 0, output(res) + repo.proc.tail()
        renewed_pem = lego.chain_file(NAMES[0]).read_bytes()
        renewed = crypto.parse_pem_chain(renewed_pem)[0]
        assert crypto.serial_hex(renewed) != crypto.serial_hex(first), "lego did not renew"
        assert sorted(crypto.certificate_dns_names(renewed)) == sorted(NAMES)
        verify_chain(renewed_pem, root, tmp_path)

        assert not is_revoked(tmp_path, renewed_pem)
        res = lego(NAMES, "revoke", "--keep")
        assert res.returncode == 0, output(res) + repo.proc.tail()
        assert is_revoked(tmp_path, renewed_pem)
        assert not is_revoked(tmp_path, chain_pem), "revoked more than it was asked to"
        again = lego(NAMES, "revoke", "--keep")
        assert again.returncode != 0 and "alreadyRevoked" in again.stdout + again.stderr, (
            output(again))

        refused = lego(["www.b.example.test"], "run")
        assert refused.returncode != 0
        assert "rejectedIdentifier" in refused.stdout + refused.stderr, output(refused)
