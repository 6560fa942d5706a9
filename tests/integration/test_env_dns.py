"""The DNS fixture is a real authoritative server taking TSIG-signed RFC 2136 updates."""

from __future__ import annotations

import base64

import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from certdepot.testenv.dns import DnsServer


def _update(dns_server: DnsServer, keyring: object | None = None) -> dns.update.UpdateMessage:
    if keyring is None:
        return dns.update.UpdateMessage(dns_server.zone)
    return dns.update.UpdateMessage(
        dns_server.zone, keyring=keyring, keyname=dns_server.tsig_name,
        keyalgorithm=dns_server.tsig_algorithm,
    )


def _txt(dns_server: DnsServer, name: str) -> list[bytes]:
    response = dns_server.query(name, "TXT")
    assert response.rcode() == dns.rcode.NOERROR
    return [s for rrset in response.answer for r in rrset for s in r.strings]


def test_signed_update_adds_then_deletes_txt(dns_server: DnsServer) -> None:
    assert dns_server.address == "127.0.0.1"
    base64.b64decode(dns_server.tsig_secret, validate=True)
    update = _update(dns_server, dns_server.keyring())
    update.add("_acme-challenge.www", 60, "TXT", "signed-token")
    response = dns.query.tcp(update, dns_server.address, port=dns_server.port, timeout=5)
    assert response.rcode() == dns.rcode.NOERROR
    assert _txt(dns_server, f"_acme-challenge.www.{dns_server.zone}") == [b"signed-token"]
    # Over UDP too, as resolvers ask first.
    udp = dns.query.udp(dns.message.make_query(f"_acme-challenge.www.{dns_server.zone}", "TXT"),
                        dns_server.address, port=dns_server.port, timeout=5)
    assert udp.answer

    delete = _update(dns_server, dns_server.keyring())
    delete.delete("_acme-challenge.www", "TXT")
    response = dns.query.tcp(delete, dns_server.address, port=dns_server.port, timeout=5)
    assert response.rcode() == dns.rcode.NOERROR
    assert _txt(dns_server, f"_acme-challenge.www.{dns_server.zone}") == []


def test_wrong_tsig_secret_is_refused(dns_server: DnsServer) -> None:
    wrong = dns.tsigkeyring.from_text(
        {dns_server.tsig_name: (dns_server.tsig_algorithm, base64.b64encode(b"x" * 32).decode())}
    )
    update = _update(dns_server, wrong)
    update.add("_acme-challenge.forged", 60, "TXT", "forged")
    # Knot answers NOTAUTH/BADSIG, which dnspython reports as the peer rejecting our signature.
    with pytest.raises(dns.tsig.PeerBadSignature):
        dns.query.tcp(update, dns_server.address, port=dns_server.port, timeout=5)
    assert _txt(dns_server, f"_acme-challenge.forged.{dns_server.zone}") == []


def test_unsigned_update_is_refused(dns_server: DnsServer) -> None:
    update = _update(dns_server)
    update.add("_acme-challenge.unsigned", 60, "TXT", "unsigned")
    response = dns.query.tcp(update, dns_server.address, port=dns_server.port, timeout=5)
    assert response.rcode() == dns.rcode.NOTAUTH
    assert _txt(dns_server, f"_acme-challenge.unsigned.{dns_server.zone}") == []
