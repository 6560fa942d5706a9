"""Start ``certdepot repository serve`` as a real process for integration tests."""

from __future__ import annotations

import base64
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from certdepot.testenv import procs

ROOT = Path(__file__).resolve().parents[2]
CERTDEPOT = [sys.executable, "-m", "certdepot.cli"]
CERTBOT = ROOT / ".venv" / "bin" / "certbot"


@dataclass
class RepoProcess:
    proc: procs.ManagedProcess
    base_url: str
    ca_path: Path  # the self-signed HTTPS certificate to trust
    config_path: Path

    @property
    def directory_url(self) -> str:
        return f"{self.base_url}/directory"

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the repository's self-signed listener certificate."""
        return ssl.create_default_context(cafile=str(self.ca_path))


def write_config(workdir: Path, config: dict[str, Any], name: str = "repository.yaml") -> Path:
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def kek_env(workdir: Path) -> dict[str, str]:
    kek_file = workdir / "kek"
    if not kek_file.exists():
        kek_file.write_text(base64.b64encode(os.urandom(32)).decode())
    return {"CERTDEPOT_KEK": kek_file.read_text()}


def base_config(workdir: Path, port: int, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "baseUrl": f"https://127.0.0.1:{port}",
        "listeners": {"https": {"address": f"127.0.0.1:{port}", "selfSigned": True,
                                "selfSignedCertFile": str(workdir / f"tls-{port}.crt")}},
        "storage": {"url": f"sqlite:///{workdir / 'repo.db'}"},
        "keyEncryptionKey": {"env": "CERTDEPOT_KEK"},
        "renewCheckInterval": "1s",
    }
    cfg.update(extra)
    return cfg


def cli(workdir: Path, config_path: Path, *args: str, check: bool = True
        ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **kek_env(workdir), "PYTHONPATH": str(ROOT / "operator")}
    res = subprocess.run([*CERTDEPOT, "repository", *args, "--config", str(config_path)],
                         capture_output=True, text=True, env=env, timeout=60)
    if check and res.returncode != 0:
        raise AssertionError(f"certdepot repository {' '.join(args)} failed:\n"
                             f"{res.stdout}\n{res.stderr}")
    return res


def create_tenant(workdir: Path, config_path: Path, name: str) -> tuple[str, str]:
    out = cli(workdir, config_path, "tenant", "create", name).stdout
    kid = re.search(r"eab-kid:\s+(\S+)", out)
    key = re.search(r"eab-hmac:\s+(\S+)", out)
    assert kid and key, out
    return kid.group(1), key.group(1)


@contextmanager
def running(workdir: Path, config_path: Path, port: int, name: str = "repository",
            extra_env: dict[str, str] | None = None) -> Iterator[RepoProcess]:
    env = {**kek_env(workdir), "PYTHONPATH": str(ROOT / "operator"), **(extra_env or {})}
    proc = procs.start(name, [*CERTDEPOT, "repository", "serve", "--config", str(config_path)],
                       log_path=workdir / f"{name}.log", extra_env=env)
    try:
        ca = workdir / f"tls-{port}.crt"
        proc.wait_for_port(port, timeout=60)
        proc.wait_for_url(f"https://127.0.0.1:{port}/directory",
                          verify=ssl.create_default_context(cafile=str(ca)))
        yield RepoProcess(proc, f"https://127.0.0.1:{port}", ca, config_path)
    finally:
        proc.stop()


def certbot(workdir: Path, repo: RepoProcess, eab: tuple[str, str], names: list[str],
            extra_env: dict[str, str] | None = None, cert_name: str = "test"
            ) -> subprocess.CompletedProcess[str]:
    if not CERTBOT.exists():
        raise AssertionError(f"certbot not found at {CERTBOT}: pip install certbot into .venv")
    base = workdir / "certbot"
    args = [str(CERTBOT), "certonly", "--non-interactive", "--agree-tos",
            "--register-unsafely-without-email", "--server", repo.directory_url,
            f"--eab-kid={eab[0]}", f"--eab-hmac-key={eab[1]}",
            "--config-dir", str(base / "config"), "--work-dir", str(base / "work"),
            "--logs-dir", str(base / "logs"), "--manual", "--preferred-challenges", "http",
            # Never called: granted names get pre-validated authorizations.
            "--manual-auth-hook", "/bin/false",
            "--key-type", "ecdsa", "--cert-name", cert_name]
    for n in names:
        args += ["-d", n]
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(repo.ca_path), **(extra_env or {})}
    res = subprocess.run(args, capture_output=True, text=True, env=env, timeout=180)
    log = base / "logs" / "letsencrypt.log"
    # certbot prints a summary; the problem documents themselves are in its debug log.
    res.stderr += "\n" + (log.read_text() if log.exists() else "")
    return res
