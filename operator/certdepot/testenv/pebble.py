"""Pebble (Let's Encrypt's ACME test CA) and pebble-challtestsrv on loopback.

    with PebbleEnv(eab=True) as pebble:
        httpx.get(pebble.directory_url, verify=pebble.ssl_context())

Pebble resolves every name through challtestsrv's DNS server, which answers A queries with
127.0.0.1 and AAAA with nothing (``-defaultIPv6 ""``; otherwise validation goes to ::1), so
http-01 validation connects to ``127.0.0.1:<http01_port>`` and tls-alpn-01 to
``127.0.0.1:<tlsalpn01_port>``: a test serves its challenge responses there. challtestsrv's
own challenge responders are disabled so they never hold those ports; its management API
(``challtestsrv_url``: /set-txt, /clear-txt, /add-a, ...) sets DNS answers for dns-01.
With ``dns_server="127.0.0.1:<port>"`` Pebble resolves through that server instead (e.g.
the Knot server of :mod:`certdepot.testenv.dns`).

Pebble's HTTPS listener gets a certificate from a fresh CA (``ca_path``) generated per run.
"""

from __future__ import annotations

import functools
import json
import secrets
import ssl
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import httpx

from certdepot.testenv import procs
from certdepot.testenv.pki import TestCA
from certdepot.testenv.provision import binary

__all__ = ["HostPort", "PebbleEnv"]


class HostPort(Protocol):
    """Anything with ``address`` and ``port``, e.g. a :class:`~certdepot.testenv.dns.DnsServer`."""

    @property
    def address(self) -> str: ...

    @property
    def port(self) -> int: ...


@functools.cache
def _challtestsrv_dns_flag(path: Path) -> str:
    # Pebble 2.4's challtestsrv calls the DNS listener flag -dns01; 2.5+ calls it -dnsserver.
    help_text = subprocess.run(
        [str(path), "-h"], capture_output=True, text=True, timeout=10
    ).stderr
    return "-dnsserver" if "-dnsserver" in help_text else "-dns01"


def _eab_keys(eab: bool | Mapping[str, str]) -> dict[str, str]:
    """``{key id: base64url HMAC key}``: two generated for True, none for False."""
    if eab is True:
        return {f"kid-{i}": secrets.token_urlsafe(32) for i in (1, 2)}
    if eab is False:
        return {}
    return dict(eab)


def _pebble_env(
    *,
    va_sleep: bool,
    nonce_reject: int | None,
    authz_reuse: int | None,
    always_valid: bool,
    alternate_roots: int,
    chain_length: int | None,
    extra_env: Mapping[str, str] | None,
) -> dict[str, str]:
    """Pebble's environment variables for the options of :class:`PebbleEnv`."""
    env: dict[str, str] = {}
    if not va_sleep:
        env["PEBBLE_VA_NOSLEEP"] = "1"
    if nonce_reject is not None:
        env["PEBBLE_WFE_NONCEREJECT"] = str(nonce_reject)
    if authz_reuse is not None:
        env["PEBBLE_AUTHZREUSE"] = str(authz_reuse)
    if always_valid:
        env["PEBBLE_VA_ALWAYS_VALID"] = "1"
    if alternate_roots:
        env["PEBBLE_ALTERNATE_ROOTS"] = str(alternate_roots)
    if chain_length is not None:
        env["PEBBLE_CHAIN_LENGTH"] = str(chain_length)
    env.update(extra_env or {})
    return env


class PebbleEnv(procs.Service):
    """One Pebble instance plus its challtestsrv; see the module docstring."""

    DEFAULT_SECONDS = 90 * 24 * 3600
    #: Validity of the ``shortlived`` profile (6 days, like Let's Encrypt's short-lived
    #: certificates' order of magnitude).
    SHORTLIVED_SECONDS = 6 * 24 * 3600
    #: Validity of the ``tenminutes`` profile, for tests that watch renewals happen.
    TENMINUTES_SECONDS = 600
    #: Validity of the ``oneday`` profile: what a one-day delegation (RFC 9115
    #: maxLifetime) needs upstream, in the demo and the benchmark.
    ONEDAY_SECONDS = 24 * 3600
    # NOTE: Pebble 2.10 gives an order that names no profile a *random* one of these
    # (by design, "chaos"); a client that needs a lifetime must name its profile.
    PROFILES: Mapping[str, int] = {
        "default": DEFAULT_SECONDS,
        "shortlived": SHORTLIVED_SECONDS,
        "tenminutes": TENMINUTES_SECONDS,
        "oneday": ONEDAY_SECONDS,
    }

    PROCESSES = ("pebble", "challtestsrv")

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        eab: bool | Mapping[str, str] = False,
        dns_server: str | HostPort | None = None,
        nonce_reject: int | None = None,
        va_sleep: bool = False,
        authz_reuse: int | None = None,
        always_valid: bool = False,
        strict: bool = False,
        alternate_roots: int = 0,
        chain_length: int | None = None,
        retry_after: tuple[int, int] = (1, 1),
        extra_env: Mapping[str, str] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        """Options map onto Pebble's config file and environment variables:

        ``dns_server``: "host:port" (or a DnsServer) Pebble resolves through instead of
        challtestsrv. ``eab``: require External Account Binding; True generates two key
        ids, a mapping gives ``{key id: base64url HMAC key}``. ``nonce_reject``: percentage of good
        nonces rejected (PEBBLE_WFE_NONCEREJECT; None = Pebble's default). ``va_sleep``:
        keep Pebble's 5 s sleep before each validation (off by default, it only
        slows tests). ``authz_reuse``: PEBBLE_AUTHZREUSE percentage. ``always_valid``:
        skip validation (PEBBLE_VA_ALWAYS_VALID). ``alternate_roots``/``chain_length``:
        PEBBLE_ALTERNATE_ROOTS / PEBBLE_CHAIN_LENGTH. ``retry_after``: Retry-After seconds
        for (authz, order) polling.
        """
        super().__init__(workdir, "certdepot-pebble-")
        self.eab = _eab_keys(eab)
        self.eab_required = bool(self.eab)
        self._allocate_ports()
        self.dns_server = self._resolver(dns_server)
        self.directory_url = f"https://127.0.0.1:{self.port}/dir"
        self.mgmt_url = f"https://127.0.0.1:{self.mgmt_port}"
        self.challtestsrv_url = f"http://127.0.0.1:{self.challtestsrv_port}"
        self.ca_path = self.workdir / "pebble-listener-ca.crt"
        self.strict = strict
        self.retry_after = retry_after
        self.start_timeout = start_timeout
        self.env = _pebble_env(
            va_sleep=va_sleep, nonce_reject=nonce_reject, authz_reuse=authz_reuse,
            always_valid=always_valid, alternate_roots=alternate_roots,
            chain_length=chain_length, extra_env=extra_env,
        )
        self.pebble: procs.ManagedProcess | None = None
        self.challtestsrv: procs.ManagedProcess | None = None

    def _allocate_ports(self) -> None:
        """Free loopback ports for Pebble's listeners and challtestsrv's."""
        self.port = procs.free_port()
        self.mgmt_port = procs.free_port()
        self.http01_port = procs.free_port()
        self.tlsalpn01_port = procs.free_port()
        self.challtestsrv_port = procs.free_port()
        self.challtestsrv_dns_port = procs.free_port(udp_too=True)

    def _resolver(self, dns_server: str | HostPort | None) -> str:
        """The "host:port" Pebble resolves through: challtestsrv's unless one is given."""
        if dns_server is None:
            return f"127.0.0.1:{self.challtestsrv_dns_port}"
        if isinstance(dns_server, str):
            return dns_server
        return f"{dns_server.address}:{dns_server.port}"

    def config(self) -> dict[str, object]:
        """The Pebble config file contents (written by :meth:`start`)."""
        return {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
                "certificate": str(self.workdir / "listener.crt"),
                "privateKey": str(self.workdir / "listener.key"),
                "httpPort": self.http01_port,
                "tlsPort": self.tlsalpn01_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": self.eab_required,
                "externalAccountMACKeys": self.eab,
                "domainBlocklist": ["blocked-domain.example"],
                "retryAfter": {"authz": self.retry_after[0], "order": self.retry_after[1]},
                "keyAlgorithm": "ecdsa",
                "profiles": {
                    name: {"description": f"{name} ({seconds}s)", "validityPeriod": seconds}
                    for name, seconds in self.PROFILES.items()
                },
            }
        }

    def start(self) -> PebbleEnv:
        pebble, challtestsrv = binary("pebble"), binary("pebble-challtestsrv")
        self.workdir.mkdir(parents=True, exist_ok=True)
        ca = TestCA.create(self.workdir, "pebble-listener")  # writes self.ca_path
        ca.issue(self.workdir, "listener", "localhost",
                 dns_names=("localhost", "pebble"), ips=("127.0.0.1",))
        config_path = self.workdir / "pebble-config.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        try:
            self.challtestsrv = procs.start(
                "pebble-challtestsrv",
                [
                    challtestsrv,
                    "-management", f"127.0.0.1:{self.challtestsrv_port}",
                    _challtestsrv_dns_flag(challtestsrv),
                    f"127.0.0.1:{self.challtestsrv_dns_port}",
                    "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
                    "-defaultIPv4", "127.0.0.1",
                    "-defaultIPv6", "",
                ],
                log_path=self.workdir / "challtestsrv.log",
            )
            argv: list[str | Path] = [
                pebble, "-config", config_path, "-dnsserver", self.dns_server
            ]
            if self.strict:
                argv.append("-strict")
            self.pebble = procs.start(
                "pebble", argv, log_path=self.workdir / "pebble.log", extra_env=self.env
            )
            self.challtestsrv.wait_for_port(self.challtestsrv_port, timeout=self.start_timeout)
            self.pebble.wait_for_url(
                self.directory_url, verify=self.ssl_context(), timeout=self.start_timeout
            )
        except BaseException:
            self.stop()
            raise
        return self

    # --- helpers ---------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts Pebble's HTTPS listener (directory, ACME and management API)."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def http(self) -> httpx.Client:
        """An httpx client that trusts Pebble's listener."""
        return httpx.Client(verify=self.ssl_context(), timeout=10)

    def roots_pem(self, index: int = 0) -> str:
        """PEM of Pebble's issuing root (it changes every time Pebble starts)."""
        with self.http() as client:
            response = client.get(f"{self.mgmt_url}/roots/{index}")
            response.raise_for_status()
            return response.text

    def intermediates_pem(self, index: int = 0) -> str:
        with self.http() as client:
            response = client.get(f"{self.mgmt_url}/intermediates/{index}")
            response.raise_for_status()
            return response.text

    def _challtestsrv(self, path: str, body: Mapping[str, object]) -> None:
        response = httpx.post(f"{self.challtestsrv_url}{path}", json=dict(body), timeout=10)
        response.raise_for_status()

    def set_txt(self, host: str, value: str) -> None:
        """Answer TXT queries for ``host`` (FQDN, trailing dot) with ``value`` (dns-01)."""
        self._challtestsrv("/set-txt", {"host": host, "value": value})

    def clear_txt(self, host: str) -> None:
        self._challtestsrv("/clear-txt", {"host": host})

    def add_a(self, host: str, addresses: list[str]) -> None:
        self._challtestsrv("/add-a", {"host": host, "addresses": addresses})
