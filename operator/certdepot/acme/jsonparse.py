"""The one JSON parser for everything a client sends (RFC 8259, strictly, with bounds).

Python's ``json.loads`` recurses once per nesting level, so 3,000 ``[`` raise
``RecursionError`` (not ``ValueError``) and every caller that catches only ``ValueError``
answers 500. It also keeps the last of duplicate member names (RFC 7515 §4 and RFC 8259 §4
say a JWS with duplicates must be rejected, or the signer and the verifier may read
different headers), accepts ``NaN``/``Infinity`` and guesses UTF-16/32 from bytes.

:func:`loads` is ``json.loads`` with those holes closed:

- size: at most ``max_bytes`` (default :data:`MAX_BYTES`) before anything is parsed;
- depth: at most ``max_depth`` nested arrays/objects (default :data:`MAX_DEPTH`), measured
  by a scan that never recurses, before the parser (which does) sees the text;
- encoding: bytes must be UTF-8 without a byte-order mark;
- duplicate member names, ``NaN``, ``Infinity``, ``-Infinity`` are errors.

Every failure is a :class:`JsonError` (a ``ValueError``), so callers map one exception to
``malformed``.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Deepest nesting a client document may have. ACME's deepest (a newOrder payload's
#: identifiers, a JWS header's jwk, a keyChange's inner JWS) is 4; RFC 9115 CSR templates
#: reach 5.
MAX_DEPTH = 32
#: Largest document accepted by default; the server's own body limit is usually smaller.
MAX_BYTES = 1 << 20

# Strings (whose brackets do not count) and the brackets themselves, in one C-level scan.
# A string runs to its closing quote or to the end of the text (possessive, so an
# unterminated one is scanned once, never re-scanned from each later quote).
_TOKENS = re.compile(r'"(?:[^"\\]|\\.?)*+(?:"|\Z)|[\[\]{}]', re.DOTALL)


class JsonError(ValueError):
    """The text is not a JSON document this parser accepts; the message says why."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonError(f"duplicate member name {key[:40]!r}")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise JsonError(f"{name} is not JSON")


def _depth_ok(text: str, max_depth: int) -> bool:
    # Cheap common case: fewer opening brackets in total than the limit.
    if text.count("[") + text.count("{") <= max_depth:
        return True
    depth = 0
    for m in _TOKENS.finditer(text):
        tok = m.group()
        if tok in ("[", "{"):
            depth += 1
            if depth > max_depth:
                return False
        elif tok in ("]", "}"):
            depth -= 1
    return True


def decode_text(data: bytes | str, *, max_bytes: int = MAX_BYTES) -> str:
    """``data`` as text: UTF-8 without BOM, at most ``max_bytes``; ``JsonError`` otherwise."""
    if isinstance(data, str):
        if len(data) > max_bytes:
            raise JsonError(f"document larger than {max_bytes} bytes")
        return data
    if not isinstance(data, bytes | bytearray | memoryview):
        raise JsonError("document is not bytes or text")
    raw = bytes(data)
    if len(raw) > max_bytes:
        raise JsonError(f"document larger than {max_bytes} bytes")
    if raw.startswith(b"\xef\xbb\xbf"):
        raise JsonError("a byte-order mark is not allowed")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonError("document is not UTF-8") from None


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_BYTES) -> Any:
    """Parse one JSON document strictly and within bounds; :class:`JsonError` otherwise."""
    text = decode_text(data, max_bytes=max_bytes)
    if not _depth_ok(text, max_depth):
        raise JsonError(f"document nested deeper than {max_depth} levels")
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except JsonError:
        raise
    except (ValueError, RecursionError) as exc:
        # RecursionError cannot happen after the depth scan; kept so that no input, even
        # one that fools the scan, escapes as anything but JsonError.
        raise JsonError(f"not JSON: {type(exc).__name__}") from None


def loads_object(data: bytes | str, *, what: str = "document", max_depth: int = MAX_DEPTH,
                 max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """:func:`loads` for documents that must be a JSON object."""
    doc = loads(data, max_depth=max_depth, max_bytes=max_bytes)
    if not isinstance(doc, dict):
        raise JsonError(f"{what} is not a JSON object")
    return doc
