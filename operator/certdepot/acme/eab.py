"""External Account Binding (RFC 8555 §7.3.4): the MAC'd JWS inside ``newAccount``.

- ``create_eab(account_key, key_id, hmac_key_b64, url, alg="HS256") -> dict``: the flattened
  JWS to put in ``externalAccountBinding``; payload = the account's public JWK.
- ``verify_eab(eab, *, account_jwk, url, hmac_key_for) -> str``: server side; returns the EAB
  key id after checking structure, ``alg`` (HS256/384/512), ``url`` = the newAccount URL,
  no ``nonce``, payload = the outer JWS's ``jwk`` and the MAC (constant time).
  ``hmac_key_for(kid)`` returns the raw HMAC key bytes or ``None`` (unknown kid).

Errors are ``AcmeProblem``: ``malformed`` for structure, ``unauthorized`` for an unknown key
id, a wrong MAC or a payload that names another key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any

from certdepot.acme import jsonparse
from certdepot.acme.crypto import PrivateKey
from certdepot.acme.jws import b64decode, b64encode, jwk_thumbprint, public_jwk
from certdepot.acme.problems import AcmeProblem

EAB_ALGORITHMS: dict[str, Callable[[], Any]] = {
    "HS256": hashlib.sha256,
    "HS384": hashlib.sha384,
    "HS512": hashlib.sha512,
}


def decode_hmac_key(hmac_key_b64: str) -> bytes:
    """The raw HMAC key from its base64url form (how CAs hand them out)."""
    try:
        # Padding is tolerated here (an operator's configuration, not a request).
        key = b64decode(hmac_key_b64.strip().rstrip("="))
    except ValueError:
        raise ValueError("EAB HMAC key is not base64url") from None
    if not key:
        raise ValueError("EAB HMAC key is empty")
    return key


def create_eab(
    account_key: PrivateKey, key_id: str, hmac_key_b64: str, url: str, alg: str = "HS256"
) -> dict[str, str]:
    """The ``externalAccountBinding`` value binding ``account_key`` to ``key_id``."""
    if alg not in EAB_ALGORITHMS:
        raise ValueError(f"EAB algorithm must be one of {', '.join(EAB_ALGORITHMS)}")
    protected = b64encode(
        json.dumps({"alg": alg, "kid": key_id, "url": url}, separators=(",", ":")).encode()
    )
    payload = b64encode(json.dumps(public_jwk(account_key), separators=(",", ":")).encode())
    mac = hmac.new(
        decode_hmac_key(hmac_key_b64), f"{protected}.{payload}".encode(), EAB_ALGORITHMS[alg]
    )
    return {"protected": protected, "payload": payload, "signature": b64encode(mac.digest())}


def verify_eab(
    eab: Any,
    *,
    account_jwk: Mapping[str, Any],
    url: str,
    hmac_key_for: Callable[[str], bytes | None],
) -> str:
    """Check an ``externalAccountBinding`` object and return its key id."""
    if not isinstance(eab, Mapping):
        raise AcmeProblem("malformed", "externalAccountBinding is not a JWS object")
    try:
        protected_b64, payload_b64, sig_b64 = eab["protected"], eab["payload"], eab["signature"]
        # The same strict, bounded parser as the outer JWS: duplicate names, deep nesting
        # and non-canonical base64url are refused here too.
        protected = jsonparse.loads(b64decode(protected_b64))
        payload = jsonparse.loads(b64decode(payload_b64))
        signature = b64decode(sig_b64)
    except KeyError as exc:
        raise AcmeProblem("malformed", f"externalAccountBinding lacks {exc.args[0]!r}") from None
    except (ValueError, TypeError):
        raise AcmeProblem(
            "malformed", "externalAccountBinding is not valid base64url JSON"
        ) from None
    if not isinstance(protected, dict) or not isinstance(payload, dict):
        raise AcmeProblem("malformed", "externalAccountBinding header/payload must be objects")
    alg = protected.get("alg")
    if alg not in EAB_ALGORITHMS:
        raise AcmeProblem(
            "badSignatureAlgorithm",
            f"externalAccountBinding algorithm {alg!r} is not a MAC algorithm",
            extra={"algorithms": list(EAB_ALGORITHMS)},
        )
    if "nonce" in protected:
        raise AcmeProblem("malformed", "externalAccountBinding must not carry a nonce")
    if "crit" in protected or "b64" in protected:
        raise AcmeProblem("malformed", "externalAccountBinding header parameters crit/b64 "
                          "are not supported")
    if set(eab) - {"protected", "payload", "signature"}:
        raise AcmeProblem("malformed", "externalAccountBinding must be a flattened JWS with "
                          "only protected, payload and signature")
    kid = protected.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AcmeProblem("malformed", "externalAccountBinding lacks kid")
    if protected.get("url") != url:
        raise AcmeProblem("unauthorized", "externalAccountBinding url is not the newAccount URL")
    key = hmac_key_for(kid)
    if key is None:
        raise AcmeProblem("unauthorized", f"unknown external account key id {kid!r}")
    expected = hmac.new(
        key, f"{protected_b64}.{payload_b64}".encode(), EAB_ALGORITHMS[alg]
    ).digest()
    if not hmac.compare_digest(expected, signature):
        raise AcmeProblem("unauthorized", "externalAccountBinding MAC does not verify")
    try:
        same_key = jwk_thumbprint(payload) == jwk_thumbprint(account_jwk)
    except ValueError:
        same_key = False
    if not same_key:
        raise AcmeProblem("unauthorized", "externalAccountBinding binds a different account key")
    return kid
