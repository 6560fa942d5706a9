"""The one DNS-name normaliser: every name the repository compares or signs passes here.

newOrder identifiers, CSR SANs, policy name patterns, delegation templates and managed
certificates' names all meet in equality and pattern checks, so they must all have one
form: A-labels (IDNA 2008, RFC 5891), lower-case ASCII, no trailing dot.

- ``normalize(value, wildcard=True) -> str``: the canonical form, or :class:`InvalidName`
  saying why. Refused: non-strings, empty names and labels (``"."``, ``"a..b"``), ``*``
  anywhere but as the whole leftmost label (``*.example.com``), labels that are neither LDH
  nor valid IDNA 2008 U-labels/A-labels, reserved ``??--`` labels other than ``xn--``,
  labels over 63 and names over 253 octets, and an all-numeric last label (an IPv4
  address is not a DNS name).
- ``normalize_pattern(pattern) -> str``: a policy pattern, where ``*`` may also stand for
  part of one label (``cdn-*.example.com``); the labels without ``*`` are normalised as
  names.
- ``is_wildcard(name)``.

No Unicode case folding or UTS #46 mapping: ASCII letters are lower-cased, every other
character must already be a valid IDNA 2008 code point. So ``K`` (U+212A KELVIN SIGN),
which UTS #46 would fold into ASCII ``k``, is refused rather than silently becoming another
name than the one the client spelled.
"""

from __future__ import annotations

import re

import idna

MAX_NAME = 253
MAX_LABEL = 63
# Checked before any work: longer input cannot be a name in any form.
_MAX_INPUT = 4 * MAX_NAME

_LDH = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_PATTERN_LABEL = re.compile(r"[a-z0-9*](?:[a-z0-9*-]*[a-z0-9*])?")
_ASCII_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class InvalidName(ValueError):
    """Not an acceptable DNS name; the message says why (no more than the name itself)."""


def _ascii_lower(text: str) -> str:
    # str.lower() would also change non-ASCII characters; only ASCII is case-insensitive.
    return text.translate(_ASCII_UPPER)


def _label(label: str) -> str:
    if not label:
        raise InvalidName("empty label")
    if label.isascii():
        if len(label) > MAX_LABEL:
            raise InvalidName(f"label longer than {MAX_LABEL} octets")
        if not _LDH.fullmatch(label):
            raise InvalidName(f"label {label[:MAX_LABEL]!r} is not letters, digits and "
                              "hyphens")
        if label[2:4] != "--":
            return label
        if not label.startswith("xn--"):
            raise InvalidName(f"label {label!r} is a reserved ??-- label")
        try:  # an A-label must be the encoding of a valid U-label, and that encoding exactly
            if idna.alabel(idna.ulabel(label)).decode("ascii") != label:
                raise InvalidName(f"label {label!r} is not a canonical A-label")
        except idna.IDNAError:
            raise InvalidName(f"label {label!r} is not a valid IDNA 2008 A-label") from None
        return label
    try:
        alabel = idna.alabel(label).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise InvalidName("label is not a valid IDNA 2008 U-label") from None
    if len(alabel) > MAX_LABEL:
        raise InvalidName(f"label longer than {MAX_LABEL} octets as an A-label")
    return alabel


def _split(value: object) -> list[str]:
    if not isinstance(value, str):
        raise InvalidName("a DNS name must be a string")
    if len(value) > _MAX_INPUT:
        raise InvalidName(f"longer than {MAX_NAME} octets")
    text = _ascii_lower(value)
    if text.endswith("."):
        text = text[:-1]  # one root dot: "a.example." is "a.example"; "a.example.." is not
    if not text:
        raise InvalidName("empty name")
    return text.split(".")


def _whole(labels: list[str]) -> str:
    name = ".".join(labels)
    if len(name) > MAX_NAME:
        raise InvalidName(f"longer than {MAX_NAME} octets")
    if labels[-1].isdigit():
        raise InvalidName("the last label is numeric (an IP address is not a DNS name)")
    return name


def normalize(value: object, *, wildcard: bool = True) -> str:
    """The canonical form of a DNS name (optionally ``*.`` + name); :class:`InvalidName`."""
    labels = _split(value)
    star = labels[0] == "*" and len(labels) > 1
    if star and not wildcard:
        raise InvalidName("a wildcard is not allowed here")
    rest = labels[1:] if star else labels
    if any("*" in label for label in rest):
        raise InvalidName("'*' is only allowed as the whole leftmost label")
    return _whole((["*"] if star else []) + [_label(label) for label in rest])


def normalize_pattern(pattern: object) -> str:
    """The canonical form of a policy name pattern (``*`` inside one label allowed)."""
    labels = _split(pattern)
    out: list[str] = []
    for label in labels:
        if "*" not in label:
            out.append(_label(label))
        elif len(label) > MAX_LABEL or not _PATTERN_LABEL.fullmatch(label):
            raise InvalidName(f"pattern label {label[:MAX_LABEL]!r} is not letters, digits, "
                              "hyphens and '*'")
        else:
            out.append(label)
    return _whole(out) if "*" not in out[-1] else ".".join(out)


def is_wildcard(name: str) -> bool:
    return name.startswith("*.")
