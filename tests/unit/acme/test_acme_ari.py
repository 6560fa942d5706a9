"""RFC 9773 CertID and windows."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from acme_pki import make_ca, make_leaf

from certdepot.acme import ari
from certdepot.acme.problems import AcmeProblem

# RFC 9773 §4.1: AKI keyIdentifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4
# and serial 00:87:65:43:21 give this CertID.
RFC_AKI = bytes.fromhex("69885B6B874640 41E1B37B847BA0AE2CDE01C8D4".replace(" ", ""))
RFC_SERIAL = 0x87654321
RFC_CERT_ID = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


def test_rfc9773_example_from_parts() -> None:
    assert ari.cert_id_from_parts(RFC_AKI, RFC_SERIAL) == RFC_CERT_ID


def test_rfc9773_example_from_a_real_certificate() -> None:
    ca = make_ca("issuer")
    leaf, _ = make_leaf(ca, ["a.test"], serial=RFC_SERIAL, aki=RFC_AKI)
    assert ari.cert_id(leaf) == RFC_CERT_ID
    assert ari.parse_cert_id(RFC_CERT_ID) == (RFC_AKI, RFC_SERIAL)


@pytest.mark.parametrize("serial", [1, 0x7F, 0x80, 0xFF, 0x100, 2**159 - 1])
def test_serial_der_bytes_are_minimal_twos_complement(serial: int) -> None:
    raw = ari.serial_der_bytes(serial)
    assert int.from_bytes(raw, "big") == serial
    assert not raw[0] & 0x80
    assert len(raw) == 1 or raw[0] != 0 or raw[1] & 0x80


@pytest.mark.parametrize("text", ["", "abc", "a.b.c", ".AIdlQyE", "aYhb+.AA", "aYhb.gA"])
def test_bad_cert_ids_are_malformed(text: str) -> None:
    with pytest.raises(AcmeProblem) as exc:
        ari.parse_cert_id(text)
    assert exc.value.short_type == "malformed"


def test_window_is_in_the_last_third_and_choice_within() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    end = start + dt.timedelta(days=90)
    w_start, w_end = ari.default_window(start, end)
    assert w_start == start + dt.timedelta(days=60) and w_end == start + dt.timedelta(days=75)
    for seed in range(20):
        moment = ari.choose_renewal_time(w_start, w_end, random.Random(seed))
        assert w_start <= moment <= w_end
    assert ari.choose_renewal_time(w_end, w_start) == w_end
