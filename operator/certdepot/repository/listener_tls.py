"""The HTTPS listener's self-signed certificate (``listeners.https.selfSigned: true``).

Generated once and kept in the store, so that a restart (or another replica) serves the
same certificate: every client's trust file (``caBundle``, ``selfSignedCertFile``) keeps
working. The key is sealed with the key vault like every other private key at rest, in the
``blobs`` table; a 0600 file next to the store was the other choice, but a PostgreSQL store
has no "next to", replicas would each have their own certificate, and the file would hold
the key in clear. A new certificate is made only when the stored one is within
``selfSignedRenewBefore`` of its end, or no longer names what the listener serves.

Replicas starting together: the first to store its certificate wins (insert if absent,
replace by compare-and-set), and every replica serves what the store holds afterwards.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from certdepot.acme import crypto
from certdepot.repository import store as tables
from certdepot.repository.keyvault import KeyVault, KeyVaultError
from certdepot.repository.processconfig import HttpsListener
from certdepot.repository.store import Store

log = logging.getLogger("certdepot.repository.server")

#: The blob holding the sealed {"cert": PEM, "key": PEM}; also the seal's label.
BLOB = "listener-tls:https"


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def wanted_names(hosts: list[str]) -> list[x509.GeneralName]:
    """``localhost`` and each host (listener address, baseUrl host), each once."""
    out: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for h in hosts:
        try:
            n = _general_name(h)
        except ValueError:  # not an A-label (x509 takes no Unicode name): not served
            continue
        if h and n not in out:
            out.append(n)
    return out


def _san(cert: x509.Certificate) -> set[x509.GeneralName]:
    try:
        return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return set()


def generate(names: list[x509.GeneralName], validity: dt.timedelta, now: dt.datetime
             ) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a new self-signed certificate for ``names``."""
    key = crypto.generate_private_key("ec-p256")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certdepot repository")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + validity)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), crypto.private_key_to_pem(key)


def _open(vault: KeyVault, blob: bytes | None) -> tuple[bytes, bytes] | None:
    if blob is None:
        return None
    try:
        doc = json.loads(vault.open(blob, BLOB))
        return doc["cert"].encode(), doc["key"].encode()
    except (KeyVaultError, ValueError, KeyError, TypeError, AttributeError):
        # Another key-encryption key, or damage: a new certificate is all that is lost.
        log.warning("the stored HTTPS listener certificate cannot be opened; making a new one")
        return None


def _usable(pair: tuple[bytes, bytes] | None, names: list[x509.GeneralName],
            renew_before: dt.timedelta, now: dt.datetime) -> str | None:
    """Why the stored certificate must be replaced, or None."""
    if pair is None:
        return "none stored"
    cert = x509.load_pem_x509_certificate(pair[0])
    if _san(cert) != set(names):
        return "the listener's names changed"
    if cert.not_valid_after_utc - renew_before <= now:
        return f"it expires {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}"
    return None


def certificate(store: Store, vault: KeyVault, listener: HttpsListener, hosts: list[str],
                now: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) to serve: the stored one while it fits, else a new one,
    stored for the next start."""
    now = now or dt.datetime.now(dt.UTC)
    names = wanted_names(hosts)
    old = store.get_blob(BLOB)
    pair = _open(vault, old)
    why = _usable(pair, names, listener.self_signed_renew_before, now)
    if why is None and pair is not None:
        return pair
    cert, key = generate(names, listener.self_signed_validity, now)
    sealed = vault.seal(json.dumps({"cert": cert.decode(), "key": key.decode()}).encode(),
                        BLOB)
    if old is None:
        store.put_blob(BLOB, sealed, replace=False)
    else:
        store.update(tables.blobs, BLOB, where={"value": old}, value=sealed)
    log.info("HTTPS listener: new self-signed certificate (%s)", why)
    # Whoever won a race: serve what the store holds now.
    return _open(vault, store.get_blob(BLOB)) or (cert, key)


def write_files(workdir: Path, pair: tuple[bytes, bytes], out: Path | None
                ) -> tuple[Path, Path]:
    """The certificate and key as files for the TLS server (the key 0600, in the
    process's private temporary directory); the certificate also to ``out``."""
    cert_path, key_path = workdir / "tls.crt", workdir / "tls.key"
    cert_path.write_bytes(pair[0])
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pair[1])
    if out is not None:  # replaced whole: several workers may write it at once
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_bytes(pair[0])
        os.replace(tmp, out)
    return cert_path, key_path
