"""dehydrated (Debian's package) against a real repository process over TLS: EAB account,
a wildcard certificate, renewal, revocation, and a refused name."""

from __future__ import annotations

from pathlib import Path

from acme_clients import Dehydrated, is_revoked, output, repository_root, verify_chain
from repository_harness import base_config, create_tenant, running, write_config

from certdepot.acme import crypto
from certdepot.testenv import procs

NAMES = ["*.d.example.test", "d.example.test"]
ALIAS = "wild-d"  # dehydrated needs a directory name for a wildcard certificate


def _config(tmp_path: Path, port: int) -> Path:
    cfg = base_config(tmp_path, port,
                      issuers=[{"name": "local", "type": "local-ca", "lifetime": "36h"}],
                      defaultIssuer="local",
                      tenants=[{"name": "team-d", "issue": NAMES}])
    return write_config(tmp_path, cfg)


def _issue(names: list[str], alias: str) -> list[str]:
    args = ["--cron", "--alias", alias]
    for name in names:
        args += ["--domain", name]
    return args


def test_dehydrated_issue_renew_revoke(tmp_path: Path) -> None:
    port = procs.free_port()
    path = _config(tmp_path, port)
    eab = create_tenant(tmp_path, path, "team-d")
    with running(tmp_path, path, port) as repo:
        client = Dehydrated(tmp_path, repo, eab)
        res = client("--register", "--accept-terms")
        assert res.returncode == 0, output(res) + repo.proc.tail()
        res = client(*_issue(NAMES, ALIAS))
        assert res.returncode == 0, output(res) + repo.proc.tail()
        live = client.cert_dir(ALIAS)
        chain_pem = (live / "fullchain.pem").read_bytes()
        first = crypto.parse_pem_chain(chain_pem)[0]
        assert sorted(crypto.certificate_dns_names(first)) == sorted(NAMES)
        key = crypto.load_private_key((live / "privkey.pem").read_bytes())
        assert crypto.public_key_matches(key, first)
        root = repository_root(tmp_path)
        verify_chain(chain_pem, root, tmp_path)

        # RENEW_DAYS=30 and a 36 h certificate: the next cron run renews on its own.
        res = client(*_issue(NAMES, ALIAS))
        assert res.returncode == 0, output(res) + repo.proc.tail()
        renewed_pem = (live / "fullchain.pem").read_bytes()
        renewed = crypto.parse_pem_chain(renewed_pem)[0]
        assert crypto.serial_hex(renewed) != crypto.serial_hex(first), output(res)
        verify_chain(renewed_pem, root, tmp_path)

        assert not is_revoked(tmp_path, renewed_pem)
        res = client("--revoke", str(live / "cert.pem"))
        assert res.returncode == 0, output(res) + repo.proc.tail()
        assert is_revoked(tmp_path, renewed_pem)
        assert not is_revoked(tmp_path, chain_pem), "revoked more than it was asked to"

        refused = client(*_issue(["www.b.example.test"], "refused"))
        assert refused.returncode != 0
        assert "rejectedIdentifier" in refused.stdout + refused.stderr, output(refused)
