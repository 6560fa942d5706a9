"""JWS for ACME (RFC 8555 §6.2): signing for clients, parsing and verification for servers.

Signing uses josepy's algorithms for ES256/ES384/ES512 and RS256; josepy has no EdDSA, so
Ed25519 (``EdDSA``, RFC 8037) signs directly on ``cryptography``.

Client side::

    body = sign(payload, key, url=url, nonce=nonce, kid=account_url)   # flattened JWS dict
    body = sign(None, key, url=url, nonce=nonce, kid=account_url)      # POST-as-GET

Server side (two phases, because a ``kid`` must be looked up before the signature can be
checked)::

    parsed = parse_jws(request_body)          # structure, alg allow-list, kid xor jwk, url, nonce
    parsed.check_url(request_url)             # unauthorized when different (§6.4)
    key = parsed.jwk_key or lookup(parsed.kid)
    parsed.verify(key)                        # malformed on a bad signature
    payload = parsed.payload_json()           # dict, or None for POST-as-GET

``verify_jws(body, url=..., key_for_kid=...) -> (protected, payload_bytes, jwk)`` does all of it
when the lookup is synchronous. Errors are ``AcmeProblem``: ``malformed``,
``badSignatureAlgorithm`` (with ``algorithms`` listing what is accepted), ``badNonce`` (missing
nonce), ``unauthorized`` (url mismatch), ``accountDoesNotExist`` (unknown kid), ``badPublicKey``.

JWK helpers: ``public_jwk(key)`` (dict), ``public_key_from_jwk(jwk)``, ``jwk_thumbprint(jwk)``
(RFC 7638 SHA-256, bytes), ``thumbprint_b64(jwk)``, ``alg_for_key(key)``, ``b64encode`` /
``b64decode`` (unpadded base64url).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from josepy import errors as josepy_errors
from josepy.jwa import ES256, ES384, ES512, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA

from certdepot.acme import jsonparse
from certdepot.acme.crypto import PrivateKey as PrivateKey
from certdepot.acme.crypto import PublicKey as PublicKey
from certdepot.acme.problems import AcmeProblem

#: What servers accept by default: asymmetric algorithms only (§6.2 forbids none and MACs).
DEFAULT_ALGORITHMS: tuple[str, ...] = ("ES256", "ES384", "ES512", "RS256", "EdDSA")

_JOSEPY_ALGS: dict[str, JWASignature] = {
    "ES256": ES256,
    "ES384": ES384,
    "ES512": ES512,
    "RS256": RS256,
}
_EC_ALG = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_EC_CRV = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_CRV_CURVE: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}


#: RSA moduli above this are refused: verifying with them costs the server, not the client.
MAX_RSA_BITS = 8192
#: Header parameters this server understands. RFC 7515 §4.1.11: a ``crit`` naming anything
#: must be refused unless understood, and RFC 8555 §6.2 forbids the unencoded payload
#: (``b64``, RFC 7797), so neither may appear at all.
_FORBIDDEN_HEADERS = ("crit", "b64")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64encode(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """Decode canonical unpadded base64url; ``ValueError`` on anything else.

    RFC 8555 §6.1 (and RFC 7515 §2): no ``=`` padding, no characters outside the URL-safe
    alphabet, no whitespace, and (RFC 4648 §3.5) no set bits in the unused low bits of the
    last character, so every byte string has exactly one accepted text form.
    """
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
    if b64encode(data) != text:
        raise ValueError("not canonical base64url (unused bits set)")
    return data


def check_key_use(jwk: Mapping[str, Any], *, use: str, ops: frozenset[str],
                  what: str = "jwk") -> None:
    """RFC 7517 §4.2/§4.3: a key that says what it is for must say ``use``; ``badPublicKey``
    when its ``use`` differs or its ``key_ops`` allow none of ``ops`` (or are malformed)."""
    if "use" in jwk and jwk["use"] != use:
        raise AcmeProblem("badPublicKey", f"{what} has use {jwk['use']!r}, not {use!r}")
    if "key_ops" in jwk:
        key_ops = jwk["key_ops"]
        if not isinstance(key_ops, list) or not all(isinstance(o, str) for o in key_ops) \
                or len(set(key_ops)) != len(key_ops):
            raise AcmeProblem("badPublicKey", f"{what} key_ops is not a list of unique strings")
        if not ops.intersection(key_ops):
            raise AcmeProblem("badPublicKey",
                              f"{what} key_ops {key_ops} allow none of {sorted(ops)}")


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def alg_for_key(key: PrivateKey | PublicKey) -> str:
    """The JWS algorithm ACME uses for this key type."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if key.curve.name not in _EC_ALG:
            raise ValueError(f"unsupported curve {key.curve.name}")
        return _EC_ALG[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise ValueError(f"unsupported key type {type(key).__name__}")


def public_jwk(key: PrivateKey | PublicKey) -> dict[str, str]:
    """The public JWK of a key, with only the members RFC 7638 needs."""
    pub: PublicKey = (
        key.public_key()
        if isinstance(
            key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
        )
        else key
    )
    if isinstance(pub, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        doc = _josepy_jwk(pub).to_partial_json()
        return {k: str(v) for k, v in doc.items()}
    if isinstance(pub, ed25519.Ed25519PublicKey):
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64encode(raw)}
    raise ValueError(f"unsupported key type {type(pub).__name__}")


def _josepy_jwk(pub: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> JWK:
    if isinstance(pub, ec.EllipticCurvePublicKey):
        if pub.curve.name not in _EC_CRV:
            raise ValueError(f"unsupported curve {pub.curve.name}")
        return JWKEC(key=pub)
    return JWKRSA(key=pub)


def public_key_from_jwk(jwk: Mapping[str, Any]) -> PublicKey:
    """The public key a JWK describes; ``AcmeProblem(badPublicKey)`` if unusable.

    Private members (``d`` and RSA CRT values) are refused: a JWS header must carry a
    public key only.
    """
    if not isinstance(jwk, Mapping):
        raise AcmeProblem("malformed", "jwk is not a JSON object")
    if any(m in jwk for m in ("d", "p", "q", "dp", "dq", "qi", "oth", "k")):
        raise AcmeProblem("badPublicKey", "jwk contains private or secret key material")
    check_key_use(jwk, use="sig", ops=frozenset({"verify"}))
    kty = jwk.get("kty")
    try:
        if kty == "EC":
            crv = jwk.get("crv")
            if crv not in _CRV_CURVE:
                raise AcmeProblem("badPublicKey", f"unsupported EC curve {crv!r}")
            x, y = b64decode(str(jwk["x"])), b64decode(str(jwk["y"]))
            size = (_CRV_CURVE[crv].key_size + 7) // 8
            if len(x) != size or len(y) != size:
                raise AcmeProblem("badPublicKey", "EC coordinates have the wrong length")
            return _ec_public_key(crv, x, y)
        if kty == "RSA":
            n = int.from_bytes(b64decode(str(jwk["n"])), "big")
            e = int.from_bytes(b64decode(str(jwk["e"])), "big")
            if not 2048 <= n.bit_length() <= MAX_RSA_BITS:
                raise AcmeProblem("badPublicKey",
                                  f"RSA keys must have 2048 to {MAX_RSA_BITS} bits")
            return rsa.RSAPublicNumbers(e, n).public_key()
        if kty == "OKP":
            if jwk.get("crv") != "Ed25519":
                raise AcmeProblem("badPublicKey", f"unsupported OKP curve {jwk.get('crv')!r}")
            return ed25519.Ed25519PublicKey.from_public_bytes(b64decode(str(jwk["x"])))
    except AcmeProblem:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise AcmeProblem("badPublicKey", f"invalid {kty} JWK: {type(exc).__name__}") from None
    raise AcmeProblem("badPublicKey", f"unsupported key type {kty!r}")


@functools.lru_cache(maxsize=1024)
def _ec_public_key(crv: str, x: bytes, y: bytes) -> ec.EllipticCurvePublicKey:
    # A server verifies every request of an account with the same key: building it (and
    # checking the point is on the curve) once per account rather than once per request.
    # Key objects are immutable; a point off the curve raises ValueError and is not cached.
    return ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), _CRV_CURVE[crv]
    ).public_key()


def jwk_thumbprint(jwk: Mapping[str, Any]) -> bytes:
    """RFC 7638 SHA-256 thumbprint of a public JWK."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise ValueError(f"no thumbprint rule for kty {jwk.get('kty')!r}")
    try:
        canonical = {m: jwk[m] for m in members}
    except KeyError as exc:
        raise ValueError(f"JWK lacks member {exc.args[0]!r}") from None
    return hashlib.sha256(_json_bytes(canonical)).digest()


def canonical_jwk(jwk: Mapping[str, Any]) -> dict[str, str]:
    """Only the members RFC 7638 names for the key type (what a server stores of a client's
    key: nothing else the client put in its JWK is kept); ``ValueError`` if one lacks."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise ValueError(f"no thumbprint rule for kty {jwk.get('kty')!r}")
    try:
        return {m: str(jwk[m]) for m in members}
    except KeyError as exc:
        raise ValueError(f"JWK lacks member {exc.args[0]!r}") from None


def thumbprint_b64(jwk: Mapping[str, Any]) -> str:
    """base64url of ``jwk_thumbprint`` (the form key authorizations use)."""
    return b64encode(jwk_thumbprint(jwk))


def _sign_bytes(alg: str, key: PrivateKey, message: bytes) -> bytes:
    if alg == "EdDSA":
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError("EdDSA needs an Ed25519 key")
        return key.sign(message)
    if alg not in _JOSEPY_ALGS:
        raise ValueError(f"cannot sign with {alg}")
    return bytes(_JOSEPY_ALGS[alg].sign(key, message))


def _verify_bytes(alg: str, key: PublicKey, message: bytes, signature: bytes) -> bool:
    if alg == "EdDSA":
        if not isinstance(key, ed25519.Ed25519PublicKey):
            return False
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True
    if alg not in _JOSEPY_ALGS:
        return False
    # The algorithm must fit the key: an ES384 header on a P-256 key is a forgery attempt.
    try:
        if alg_for_key(key) != alg:
            return False
    except ValueError:
        return False
    try:
        return bool(_JOSEPY_ALGS[alg].verify(key, message, signature))
    except (ValueError, TypeError, InvalidSignature, josepy_errors.Error):
        return False


def sign(
    payload: Mapping[str, Any] | bytes | None,
    key: PrivateKey,
    *,
    url: str,
    nonce: str | None = None,
    kid: str | None = None,
    jwk: Mapping[str, Any] | None = None,
    alg: str | None = None,
    extra_protected: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """A flattened JWS JSON object (``{"protected", "payload", "signature"}``).

    ``payload=None`` gives the empty payload of POST-as-GET. With ``kid`` the header names the
    account; otherwise it embeds the public ``jwk`` (``newAccount``, ``revokeCert`` by cert
    key, the inner JWS of ``keyChange``). ``nonce=None`` is only right for that inner JWS.
    """
    algorithm = alg or alg_for_key(key)
    protected: dict[str, Any] = {"alg": algorithm, "url": url}
    if nonce is not None:
        protected["nonce"] = nonce
    if kid is not None:
        protected["kid"] = kid
    else:
        protected["jwk"] = dict(jwk) if jwk is not None else public_jwk(key)
    if extra_protected:
        protected.update(extra_protected)
    if payload is None:
        payload_b64 = ""
    elif isinstance(payload, bytes):
        payload_b64 = b64encode(payload)
    else:
        payload_b64 = b64encode(json.dumps(payload, separators=(",", ":")).encode())
    protected_b64 = b64encode(json.dumps(protected, separators=(",", ":")).encode())
    signature = _sign_bytes(algorithm, key, f"{protected_b64}.{payload_b64}".encode("ascii"))
    return {"protected": protected_b64, "payload": payload_b64, "signature": b64encode(signature)}


@dataclass(frozen=True)
class ParsedJws:
    """A structurally valid flattened JWS whose signature is not yet checked."""

    protected: dict[str, Any]
    payload: bytes
    signature: bytes
    signing_input: bytes
    alg: str
    kid: str | None
    jwk: dict[str, Any] | None
    url: str
    nonce: str | None

    @property
    def jwk_key(self) -> PublicKey | None:
        """The embedded public key, if the header carries a ``jwk``."""
        return public_key_from_jwk(self.jwk) if self.jwk is not None else None

    @property
    def is_post_as_get(self) -> bool:
        """True for the empty payload of a POST-as-GET request."""
        return self.payload == b""

    def check_url(self, request_url: str) -> None:
        """RFC 8555 §6.4: the ``url`` header must equal the request URL."""
        if self.url != request_url:
            raise AcmeProblem(
                "unauthorized", f"JWS url header {self.url!r} does not match the request URL"
            )

    def verify(self, key: PublicKey) -> None:
        """Check the signature with ``key``; ``AcmeProblem(malformed)`` when it fails."""
        if not _verify_bytes(self.alg, key, self.signing_input, self.signature):
            raise AcmeProblem("malformed", "JWS signature verification failed")

    def payload_json(self) -> dict[str, Any] | None:
        """The payload as a JSON object, or ``None`` for POST-as-GET."""
        if self.payload == b"":
            return None
        try:
            return jsonparse.loads_object(self.payload, what="JWS payload")
        except jsonparse.JsonError as exc:
            raise AcmeProblem("malformed", f"JWS payload: {exc}") from None


def parse_jws(
    body: bytes | str | Mapping[str, Any],
    *,
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS,
    require_nonce: bool = True,
) -> ParsedJws:
    """Parse a flattened JWS and apply RFC 8555 §6.2's header rules (no signature check).

    Rejects: non-JSON (or JSON with duplicate member names, or nested too deep) or general
    serialization (multiple signatures), an unprotected ``header``, non-canonical base64url,
    ``crit`` or ``b64`` in the header, an ``alg`` outside ``algorithms``
    (``badSignatureAlgorithm``), both or neither of ``kid``/``jwk``, a missing ``url``, and
    (when ``require_nonce``) a missing ``nonce`` or one that is not base64url (``badNonce``).
    """
    doc = _flattened_jws(body)
    protected, payload, signature = _decode_members(doc)
    # _decode_members checked that both are present and strings.
    signing_input = f"{doc['protected']}.{doc['payload']}".encode("ascii")
    alg, kid, jwk, url, nonce = _checked_header(protected, algorithms, require_nonce)
    return ParsedJws(
        protected=protected,
        payload=payload,
        signature=signature,
        signing_input=signing_input,
        alg=alg,
        kid=kid,
        jwk=jwk,
        url=url,
        nonce=nonce,
    )


def _flattened_jws(body: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    """The request body as a flattened JWS object with its three string members."""
    if isinstance(body, Mapping):
        doc: Any = body
    else:
        try:
            doc = jsonparse.loads(body)
        except jsonparse.JsonError as exc:
            raise AcmeProblem("malformed", f"request body: {exc}") from None
    if not isinstance(doc, Mapping):
        raise AcmeProblem("malformed", "request body is not a JSON object")
    if "signatures" in doc:
        raise AcmeProblem("malformed", "JWS must use the flattened JSON serialization")
    if "header" in doc:
        raise AcmeProblem("malformed", "JWS must not have an unprotected header")
    return doc


def _decode_members(doc: Mapping[str, Any]) -> tuple[dict[str, Any], bytes, bytes]:
    """The protected header (a JSON object), payload and signature, base64url-decoded."""
    try:
        protected_b64 = doc["protected"]
        payload_b64 = doc["payload"]
        signature_b64 = doc["signature"]
        if not all(isinstance(v, str) for v in (protected_b64, payload_b64, signature_b64)):
            raise ValueError("JWS members must be strings")
        protected = jsonparse.loads(b64decode(protected_b64))
        payload = b64decode(payload_b64)
        signature = b64decode(signature_b64)
    except KeyError as exc:
        raise AcmeProblem("malformed", f"JWS lacks {exc.args[0]!r}") from None
    except jsonparse.JsonError as exc:
        raise AcmeProblem("malformed", f"JWS protected header: {exc}") from None
    except ValueError:
        raise AcmeProblem("malformed", "JWS members are not valid base64url") from None
    if not isinstance(protected, dict):
        raise AcmeProblem("malformed", "JWS protected header is not a JSON object")
    return protected, payload, signature


def _checked_header(
    protected: dict[str, Any], algorithms: tuple[str, ...], require_nonce: bool
) -> tuple[str, str | None, dict[str, Any] | None, str, str | None]:
    """RFC 8555 §6.2's header rules: ``(alg, kid, jwk, url, nonce)``."""
    _check_header_members(protected)
    alg = protected.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise AcmeProblem(
            "badSignatureAlgorithm",
            f"JWS algorithm {alg!r} is not accepted",
            extra={"algorithms": list(algorithms)},
        )
    kid, jwk = protected.get("kid"), protected.get("jwk")
    if (kid is None) == (jwk is None):
        raise AcmeProblem("malformed", "JWS protected header must have exactly one of kid and jwk")
    if kid is not None and not isinstance(kid, str):
        raise AcmeProblem("malformed", "JWS kid is not a string")
    if jwk is not None and not isinstance(jwk, dict):
        raise AcmeProblem("malformed", "JWS jwk is not a JSON object")
    url = protected.get("url")
    if not isinstance(url, str) or not url:
        raise AcmeProblem("malformed", "JWS protected header lacks url")
    nonce = protected.get("nonce")
    if nonce is not None and not isinstance(nonce, str):
        raise AcmeProblem("badNonce", "JWS nonce is not a string")
    if require_nonce and not nonce:
        raise AcmeProblem("badNonce", "JWS protected header lacks nonce")
    if nonce is not None and not _B64URL.fullmatch(nonce):
        # RFC 8555 §6.5.1: a nonce that is not base64url is refused as badNonce.
        raise AcmeProblem("badNonce", "JWS nonce is not base64url")
    return alg, kid, jwk, url, nonce


def _check_header_members(protected: Mapping[str, Any]) -> None:
    for name in _FORBIDDEN_HEADERS:
        if name in protected:
            raise AcmeProblem("malformed", f"JWS header parameter {name!r} is not supported "
                              "(RFC 7515 §4.1.11, RFC 8555 §6.2)")
    for name in ("url", "kid"):
        if name in protected and not isinstance(protected[name], str):
            raise AcmeProblem("malformed", f"JWS {name} is not a string")


def verify_jws(
    body: bytes | str | Mapping[str, Any],
    *,
    url: str | None = None,
    key_for_kid: Callable[[str], PublicKey | None] | None = None,
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS,
    require_nonce: bool = True,
) -> tuple[dict[str, Any], bytes, dict[str, Any] | None]:
    """Parse, check ``url`` (if given), resolve the key and verify in one call.

    Returns ``(protected_header, payload_bytes, jwk_or_None)``. A ``kid`` header needs
    ``key_for_kid``; a lookup returning ``None`` means ``accountDoesNotExist``.
    """
    parsed = parse_jws(body, algorithms=algorithms, require_nonce=require_nonce)
    if url is not None:
        parsed.check_url(url)
    if parsed.kid is not None:
        if key_for_kid is None:
            raise AcmeProblem("malformed", "this resource requires a jwk, not a kid")
        key = key_for_kid(parsed.kid)
        if key is None:
            raise AcmeProblem("accountDoesNotExist", f"no account {parsed.kid!r}")
    else:
        key = public_key_from_jwk(parsed.jwk or {})
    parsed.verify(key)
    return parsed.protected, parsed.payload, parsed.jwk
