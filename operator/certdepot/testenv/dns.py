"""A real authoritative DNS server (Knot DNS) accepting RFC 2136 updates signed with TSIG.

    with DnsServer() as dns_server:
        update = dns.update.UpdateMessage(dns_server.zone, keyring=dns_server.keyring(),
                                          keyalgorithm=dns_server.tsig_algorithm)
        update.add("_acme-challenge.www", 60, "TXT", "token")
        dns.query.tcp(update, dns_server.address, port=dns_server.port)

knotd gets a generated config in a temporary directory: one zone (``example.test.`` by
default) with an SOA, NS and ``ns1``/``*`` A records pointing at 127.0.0.1, a TSIG key, and
an ACL that allows updates only with that key. It listens on UDP and TCP 127.0.0.1:<port>.
"""

from __future__ import annotations

import base64
import secrets
import time
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring

from certdepot.testenv import procs
from certdepot.testenv.provision import ProvisionError
from certdepot.testenv.system import find_knotd, give_to, service_user

__all__ = ["DnsServer"]


class DnsServer(procs.Service):
    PROCESSES = ("process",)

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        zone: str = "example.test.",
        tsig_name: str = "certdepot-update.",
        start_timeout: float = 30.0,
    ) -> None:
        knotd = find_knotd()
        if knotd is None:
            raise ProvisionError(
                "knotd not found: install the `knot` package (`make provision` does it as "
                "root on Debian), or set KNOTD to the knotd executable."
            )
        self.knotd = knotd
        super().__init__(workdir, "certdepot-dns-")
        self.zone = zone if zone.endswith(".") else zone + "."
        self.tsig_name = tsig_name
        self.tsig_algorithm = "hmac-sha256"
        self.tsig_secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self.address = "127.0.0.1"
        self.port = procs.free_port(udp_too=True)
        self.start_timeout = start_timeout
        self.process: procs.ManagedProcess | None = None
        self._os_user = service_user("knot")

    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        """A dnspython keyring holding the update key."""
        keyring: dict[dns.name.Name, dns.tsig.Key] = dns.tsigkeyring.from_text(
            {self.tsig_name: (self.tsig_algorithm, self.tsig_secret)}
        )
        return keyring

    def _write_config(self) -> Path:
        zones = self.workdir / "zones"
        zones.mkdir(parents=True, exist_ok=True)
        (self.workdir / "db").mkdir(exist_ok=True)
        (zones / f"{self.zone}zone").write_text(
            f"$ORIGIN {self.zone}\n$TTL 60\n"
            f"@    SOA ns1 hostmaster 1 3600 600 86400 60\n"
            f"@    NS  ns1\n"
            f"ns1  A   127.0.0.1\n"
            f"*    A   127.0.0.1\n"
        )
        config = self.workdir / "knot.conf"
        config.write_text(
            f"""server:
    rundir: "{self.workdir}"
    listen: {self.address}@{self.port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1

log:
  - target: stdout
    any: info

database:
    storage: "{self.workdir / 'db'}"

control:
    listen: "{self.workdir / 'knot.sock'}"

key:
  - id: {self.tsig_name}
    algorithm: {self.tsig_algorithm}
    secret: {self.tsig_secret}

acl:
  - id: update-with-key
    key: {self.tsig_name}
    action: update

template:
  - id: default
    storage: "{zones}"
    file: "%s.zone"
    semantic-checks: off

zone:
  - domain: {self.zone}
    acl: update-with-key
"""
        )
        config.chmod(0o600)
        give_to(self.workdir, self._os_user)
        return config

    def start(self) -> DnsServer:
        config = self._write_config()
        self.process = procs.start(
            "knotd",
            [self.knotd, "-c", config],
            log_path=self.workdir / "knotd.log",
            user=self._os_user,
            cwd=self.workdir,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        query = dns.message.make_query(self.zone, "SOA")
        last = "no answer"
        while True:
            self.process.check_running()
            try:
                response = dns.query.udp(query, self.address, port=self.port, timeout=1)
                if response.rcode() == dns.rcode.NOERROR and response.answer:
                    return
                last = dns.rcode.to_text(response.rcode())
            except (OSError, dns.exception.Timeout) as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                raise self.process.fail(f"zone {self.zone} not served: {last}")
            time.sleep(0.1)

    def query(self, name: str, rdtype: str = "TXT") -> dns.message.Message:
        """Ask the server directly (TCP) — what a validator asking the authority sees."""
        query = dns.message.make_query(name, rdtype)
        response: dns.message.Message = dns.query.tcp(
            query, self.address, port=self.port, timeout=5
        )
        return response
