"""Keys, CSRs, chains: crypto.py."""

from __future__ import annotations

import datetime as dt

import pytest
from acme_pki import NOW, make_ca, make_leaf, pem
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from certdepot.acme import crypto


# rsa-4096 is left out only because generating it is slow; rsa-2048/3072 cover the RSA path.
@pytest.mark.parametrize("kind", [k for k in crypto.KEY_KINDS if k != "rsa-4096"])
def test_generated_keys_have_the_requested_type_and_roundtrip(kind: str) -> None:
    key = crypto.generate_private_key(kind)
    assert crypto.key_type_name(key) == kind
    again = crypto.load_private_key(crypto.private_key_to_pem(key))
    assert crypto.private_key_to_pkcs8_der(again) == crypto.private_key_to_pkcs8_der(key)
    assert crypto.load_private_key(crypto.private_key_to_pkcs8_der(key)) is not None


def test_unknown_kind_and_short_rsa_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown key kind"):
        crypto.generate_private_key("dsa")
    with pytest.raises(ValueError, match="2048"):
        crypto.generate_private_key("rsa-1024")


def test_encrypted_pem_needs_the_password_and_errors_hide_the_key() -> None:
    key = crypto.generate_private_key()
    data = crypto.private_key_to_pem(key, password=b"s3cret")
    assert b"ENCRYPTED" in data
    with pytest.raises(ValueError) as exc:
        crypto.load_private_key(data)
    assert "PRIVATE" not in str(exc.value)
    assert crypto.load_private_key(data, password=b"s3cret")


def test_csr_has_sans_subject_and_usages() -> None:
    key = crypto.generate_private_key("ec-p384")
    der = crypto.build_csr(
        key,
        ["a.example.test", "b.example.test"],
        common_name="a.example.test",
        subject={"organization": "Acme"},
        key_usage=["digitalSignature"],
        extended_key_usage=["serverAuth", "clientAuth"],
    )
    csr = crypto.load_csr(der)
    assert csr.is_signature_valid
    assert crypto.csr_dns_names(csr) == ["a.example.test", "b.example.test"]
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Acme"
    ku = csr.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment
    assert crypto.load_csr(csr.public_bytes(serialization.Encoding.PEM)).subject == csr.subject


def test_csr_cn_not_in_sans_is_reported_and_bad_input_refused() -> None:
    key = crypto.generate_private_key()
    csr = crypto.load_csr(crypto.build_csr(key, ["a.test"], common_name="Other.test"))
    assert crypto.csr_dns_names(csr) == ["a.test", "other.test"]
    with pytest.raises(ValueError):
        crypto.build_csr(key, [])
    with pytest.raises(ValueError, match="key usages"):
        crypto.build_csr(key, ["a.test"], key_usage=["bogus"])
    with pytest.raises(ValueError, match="not a CSR"):
        crypto.load_csr(b"junk")


def test_ed25519_and_rsa_csrs_sign() -> None:
    for kind in ("ed25519", "rsa-2048"):
        csr = crypto.load_csr(crypto.build_csr(crypto.generate_private_key(kind), ["x.test"]))
        assert csr.is_signature_valid


def test_chain_parsing_fingerprint_serial_and_key_match() -> None:
    root = make_ca("root")
    inter = make_ca("inter", root)
    leaf, leaf_key = make_leaf(inter, ["www.example.test"], serial=0xABC)
    chain_pem = pem(leaf, inter[0])
    certs = crypto.parse_pem_chain(chain_pem)
    assert [c.serial_number for c in certs] == [leaf.serial_number, inter[0].serial_number]
    assert len(crypto.split_pem_chain(chain_pem)) == 2
    assert crypto.split_pem_chain(chain_pem)[0].startswith("-----BEGIN CERTIFICATE-----")
    assert crypto.certificate_dns_names(leaf) == ["www.example.test"]
    assert crypto.serial_hex(leaf) == "abc"
    assert len(crypto.fingerprint_sha256(leaf)) == 64
    assert crypto.public_key_matches(leaf_key, leaf)
    assert not crypto.public_key_matches(crypto.generate_private_key(), leaf)
    assert crypto.verify_chain(certs, [root[0]]) == root[0]
    assert crypto.verify_chain([*certs, root[0]], [root[0]]) == root[0]


def test_chain_to_another_root_or_broken_link_fails() -> None:
    root, other = make_ca("root"), make_ca("other")
    inter = make_ca("inter", root)
    leaf, _ = make_leaf(inter, ["a.test"])
    with pytest.raises(crypto.ChainError, match="pinned root"):
        crypto.verify_chain([leaf, inter[0]], [other[0]])
    with pytest.raises(crypto.ChainError, match="not signed by"):
        crypto.verify_chain([leaf, other[0]], [other[0]])
    with pytest.raises(crypto.ChainError, match="not valid now"):
        crypto.verify_chain([leaf, inter[0]], [root[0]], now=NOW + dt.timedelta(days=400))
    with pytest.raises(crypto.ChainError):
        crypto.verify_chain([], [root[0]])


def test_parse_pem_chain_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        crypto.parse_pem_chain("hello")
