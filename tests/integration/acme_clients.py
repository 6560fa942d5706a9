"""Run the distributions' standard ACME clients (lego, dehydrated) against a repository
process from repository_harness, and check what they were issued.

Each client keeps its state (account, keys, certificates) under the test's directory and
trusts only the repository's self-signed listener certificate. The clients come from the
distribution (Debian's ``lego`` and ``dehydrated``); the provisioner installs them as root
on Debian (``certdepot dev provision``), and a missing one fails the test saying so.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from repository_harness import RepoProcess

from certdepot.acme import crypto
from certdepot.testenv import procs
from certdepot.testenv.system import CLIENT_PACKAGES

TIMEOUT = 180


def tool(name: str) -> str:
    """The executable ``name`` on PATH, or a failure saying how to get it."""
    found = shutil.which(name)
    if found is None:
        package = CLIENT_PACKAGES.get(name, name)
        raise AssertionError(
            f"{name} is not installed: `certdepot dev provision` installs it as root on Debian "
            f"(apt-get), or install the package yourself: `apt-get install {package}`")
    return found


def run(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def output(res: subprocess.CompletedProcess[str]) -> str:
    return f"exit {res.returncode}\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"


# --- lego ---------------------------------------------------------------------------------

@dataclass
class Lego:
    """lego with its state in ``workdir/lego``, registered with the tenant's EAB key."""

    workdir: Path
    repo: RepoProcess
    eab: tuple[str, str]

    @property
    def path(self) -> Path:
        return self.workdir / "lego"

    def __call__(self, names: list[str], *command: str) -> subprocess.CompletedProcess[str]:
        args = [tool("lego"), "--server", self.repo.directory_url, "--accept-tos",
                "--email", "ops@example.test", "--path", str(self.path), "--key-type", "ec256",
                # lego 4 refuses every command without --eab when the directory says EAB
                # is required, though it reads the key only to register (`run`).
                "--eab",
                # Needed even though every authorization is already valid: lego refuses
                # to start without a solver. Nothing ever connects to this port.
                "--http", "--http.port", f"127.0.0.1:{procs.free_port()}"]
        if command[:1] == ("run",):
            args += ["--kid", self.eab[0], "--hmac", self.eab[1]]
        for name in names:
            args += ["--domains", name]
        return run([*args, *command], env={"LEGO_CA_CERTIFICATES": str(self.repo.ca_path)})

    def chain_file(self, first_name: str) -> Path:
        # lego names files after the first domain, with '*' spelled '_'.
        return self.path / "certificates" / f"{first_name.replace('*', '_')}.crt"

    def key_file(self, first_name: str) -> Path:
        return self.path / "certificates" / f"{first_name.replace('*', '_')}.key"


# --- dehydrated ---------------------------------------------------------------------------

@dataclass
class Dehydrated:
    """dehydrated with its own config file and state in ``workdir/dehydrated``."""

    workdir: Path
    repo: RepoProcess
    eab: tuple[str, str]

    @property
    def base(self) -> Path:
        return self.workdir / "dehydrated"

    def write_config(self) -> Path:
        wellknown = self.base / "wellknown"
        wellknown.mkdir(parents=True, exist_ok=True)  # dehydrated refuses http-01 without it
        config = self.base / "config"
        config.write_text("\n".join([
            f'BASEDIR="{self.base}"',
            f'CA="{self.repo.directory_url}"',
            f'WELLKNOWN="{wellknown}"',
            # dehydrated speaks through curl: trust the repository's listener only.
            f'CURL_OPTS="--cacert {self.repo.ca_path}"',
            f'EAB_KID="{self.eab[0]}"',
            f'EAB_HMAC_KEY="{self.eab[1]}"',
            'KEY_ALGO="prime256v1"',
            'CHALLENGETYPE="http-01"',
            'RENEW_DAYS="30"',
            'CONTACT_EMAIL="ops@example.test"',
            "",
        ]))
        return config

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        config = self.base / "config"
        if not config.exists():
            self.write_config()
        return run([tool("dehydrated"), "--config", str(config), *args])

    def cert_dir(self, alias: str) -> Path:
        return self.base / "certs" / alias


# --- what was issued ----------------------------------------------------------------------

def repository_root(workdir: Path, issuer: str = "local") -> bytes:
    """The local CA's root as the repository stored it (a plain PEM blob in its store)."""
    with sqlite3.connect(workdir / "repo.db") as db:
        row = db.execute("select value from blobs where name = ?",
                         (f"local-ca:{issuer}:cert",)).fetchone()
    assert row, f"the repository holds no generated root for issuer {issuer!r}"
    return bytes(row[0])


def verify_chain(chain_pem: bytes, root_pem: bytes, workdir: Path) -> None:
    """The leaf verifies to ``root_pem`` with OpenSSL's strict RFC 5280 checks."""
    certs = crypto.parse_pem_chain(chain_pem)
    assert certs, "no certificate in the chain"
    files = workdir / "verify"
    files.mkdir(exist_ok=True)
    (files / "root.pem").write_bytes(root_pem)
    (files / "leaf.pem").write_bytes(_pem(certs[0]))
    # Everything between leaf and root may help build the path, none of it is trusted.
    (files / "untrusted.pem").write_bytes(b"".join(_pem(c) for c in certs[1:]))
    argv = [tool("openssl"), "verify", "-x509_strict", "-purpose", "sslserver",
            "-CAfile", str(files / "root.pem")]
    if len(certs) > 1:
        argv += ["-untrusted", str(files / "untrusted.pem")]
    res = run([*argv, str(files / "leaf.pem")])
    assert res.returncode == 0 and ": OK" in res.stdout, output(res)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def is_revoked(workdir: Path, leaf_pem: bytes) -> bool:
    """The repository's own record of the leaf (by serial)."""
    serial = crypto.serial_hex(crypto.parse_pem_chain(leaf_pem)[0])
    with sqlite3.connect(workdir / "repo.db") as db:
        row = db.execute("select revoked from certificates where serial = ?",
                         (serial,)).fetchone()
    assert row, f"the repository has no certificate with serial {serial}"
    return bool(row[0])
