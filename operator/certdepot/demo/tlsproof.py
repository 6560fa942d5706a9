"""Prove a TLS Secret works: serve it with Python's ``ssl`` and complete a verifying handshake.

The server loads ``tls.crt`` and ``tls.key`` exactly as an ingress controller would; the
client trusts only the given root and checks the host name, so a wrong chain, a key that
does not match, or a certificate for another name makes the handshake fail.
"""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509


@dataclass(frozen=True)
class Handshake:
    server_name: str
    port: int
    tls_version: str
    serial: str
    issuer: str
    root: str  # subject of the trust anchor the client verified the chain to


class ProofFailed(RuntimeError):
    pass


def prove(cert_pem: bytes, key_pem: bytes, root_pem: bytes, server_name: str,
          *, scratch: Path, timeout: float = 10.0) -> Handshake:
    """Serve ``cert_pem``/``key_pem`` on 127.0.0.1 and handshake as a client of ``server_name``.

    ``scratch`` holds the key file only while the server context loads it (``ssl`` reads
    keys from files only).
    """
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="tls-proof-") as tmp:
        cert_file, key_file = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        cert_file.write_bytes(cert_pem)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key_pem)
        try:
            server_ctx.load_cert_chain(cert_file, key_file)
        except ssl.SSLError as exc:
            raise ProofFailed(f"the TLS server cannot load the Secret: {exc}") from None
    client_ctx = ssl.create_default_context(cadata=root_pem.decode())
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(timeout)
    port = listener.getsockname()[1]
    server_error: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(timeout)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"certdepot demo\n")
        except (OSError, ssl.SSLError) as exc:
            server_error.append(exc)

    thread = threading.Thread(target=serve, name=f"tls-proof-{server_name}", daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, \
                client_ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            greeting = tls.recv(64)
            der = tls.getpeercert(binary_form=True)
            version = tls.version() or "?"
    except ssl.SSLCertVerificationError as exc:
        raise ProofFailed(f"handshake for {server_name}: certificate not verified: "
                          f"{exc.verify_message}") from None
    except (OSError, ssl.SSLError) as exc:
        raise ProofFailed(f"handshake for {server_name} failed: {exc}") from None
    finally:
        thread.join(timeout)
        listener.close()
    if server_error:
        raise ProofFailed(f"TLS server for {server_name}: {server_error[0]}")
    if not greeting or der is None:
        raise ProofFailed(f"handshake for {server_name}: no data from the server")
    leaf = x509.load_der_x509_certificate(der)
    anchors = x509.load_pem_x509_certificates(root_pem)
    return Handshake(server_name, port, version, format(leaf.serial_number, "x"),
                     leaf.issuer.rfc4514_string() or "(empty issuer name)",
                     anchors[0].subject.rfc4514_string() or "(empty subject)")
