"""The parsing rules every ACME resource in :mod:`messages` shares.

A member with the wrong type, or a required one missing, is ``AcmeProblem(malformed)``
naming it, never a ``KeyError``; unknown members are kept (``Resource.extra``) so extension
fields survive a round trip.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from certdepot.acme.problems import AcmeProblem
from certdepot.acme.timefmt import parse_rfc3339

T = TypeVar("T")


def parse_time(value: Any, name: str = "time") -> dt.datetime | None:
    """RFC 3339 text to an aware datetime (``None`` stays ``None``)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise AcmeProblem("malformed", f"{name} is not an RFC 3339 string")
    try:
        return parse_rfc3339(value)
    except ValueError:
        raise AcmeProblem("malformed", f"{name} {value!r} is not an RFC 3339 time") from None


def member(
    doc: Mapping[str, Any], key: str, kind: type[T], what: str, required: bool = False
) -> T | None:
    """``doc[key]`` if it is a ``kind`` (``None`` when absent and not ``required``)."""
    value = doc.get(key)
    if value is None:
        if required:
            raise AcmeProblem("malformed", f"{what} lacks {key!r}")
        return None
    if kind is int and isinstance(value, bool):
        raise AcmeProblem("malformed", f"{what} {key!r} must be an integer")
    if not isinstance(value, kind):
        raise AcmeProblem(
            "malformed", f"{what} {key!r} must be {kind.__name__}, not {type(value).__name__}"
        )
    return value


def str_list(doc: Mapping[str, Any], key: str, what: str) -> list[str]:
    """``doc[key]`` as a list of strings (empty when absent)."""
    value = member(doc, key, list, what) or []
    if not all(isinstance(v, str) for v in value):
        raise AcmeProblem("malformed", f"{what} {key!r} must be a list of strings")
    return list(value)


def missing_list(key: str) -> list[str]:
    """Raise: a list resource without its one member."""
    raise AcmeProblem("malformed", f"{key} list lacks {key!r}")


def require_object(doc: Any, what: str) -> Mapping[str, Any]:
    """``doc`` if it is a JSON object."""
    if not isinstance(doc, Mapping):
        raise AcmeProblem("malformed", f"{what} is not a JSON object")
    return doc


def problem_member(doc: Mapping[str, Any], key: str, what: str) -> AcmeProblem | None:
    """``doc[key]`` parsed as a problem document, if present."""
    value = member(doc, key, dict, what)
    return AcmeProblem.from_json(value) if value is not None else None


@dataclass
class Resource:
    """Shared extension-field access; ``url`` is where the object lives (Location), if known."""

    KNOWN: ClassVar[frozenset[str]] = frozenset()

    def _extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = getattr(self, "extra", {})
        return extra

    def get(self, key: str, default: Any = None) -> Any:
        """An extension (unknown to this model) member, e.g. ``order.get("download")``."""
        return self._extra().get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._extra()[key]

    def __contains__(self, key: str) -> bool:
        return key in self._extra()

    @classmethod
    def _unknown(cls, doc: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if k not in cls.KNOWN}
