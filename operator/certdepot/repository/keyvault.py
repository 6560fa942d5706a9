"""Private keys at rest: AES-256-GCM envelope under the configured key-encryption key.

Each secret gets its own random data key (DEK); the DEK is wrapped with the KEK and both
ciphertexts are bound to a purpose label through the AAD, so a blob moved to another row
or column fails to open. Format (bytes): b"cd1" | nonce(12) | wrapped DEK(48) | nonce(12) | ct.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_MAGIC = b"cd1"


class KeyVaultError(Exception):
    """A sealed blob could not be opened (wrong KEK, wrong label, or tampering)."""


class KeyVault:
    def __init__(self, kek: bytes) -> None:
        if len(kek) != 32:
            raise ValueError("key-encryption key must be 32 bytes")
        self._kek = AESGCM(kek)

    def seal(self, plaintext: bytes, label: str) -> bytes:
        aad = label.encode()
        dek = AESGCM.generate_key(bit_length=256)
        n1, n2 = os.urandom(12), os.urandom(12)
        wrapped = self._kek.encrypt(n1, dek, b"dek:" + aad)
        return _MAGIC + n1 + wrapped + n2 + AESGCM(dek).encrypt(n2, plaintext, aad)

    def open(self, blob: bytes, label: str) -> bytes:
        if not blob.startswith(_MAGIC) or len(blob) < 3 + 12 + 48 + 12 + 16:
            raise KeyVaultError("not a sealed blob")
        aad = label.encode()
        n1, wrapped, n2, ct = blob[3:15], blob[15:63], blob[63:75], blob[75:]
        try:
            dek = self._kek.decrypt(n1, wrapped, b"dek:" + aad)
            return AESGCM(dek).decrypt(n2, ct, aad)
        except InvalidTag:
            raise KeyVaultError(f"cannot open sealed blob for {label!r}") from None
