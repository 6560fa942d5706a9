"""What every part of the repository's configuration is built from: the pydantic base model
(camelCase keys, unknown keys refused), durations, key types, the one error type, and
credentials given inline or as a mounted file."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic.alias_generators import to_camel

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """``"90d"``, ``"12h"``, ``"30m"``, ``"45s"`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return timedelta(seconds=value)
        if isinstance(value, str):
            m = _DURATION.match(value)
            if m:
                return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    except OverflowError:  # beyond timedelta's ±999999999 days: a ValueError names the key
        raise ValueError(f"duration out of range: {value!r}") from None
    raise ValueError(f"not a duration (use e.g. 90d, 12h, 30m, 45s): {value!r}")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
KeyType = Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"]


class ConfigError(Exception):
    """Configuration is unusable; the message names file, key path and problem."""


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


def secret_from(value: str | None, path: Path | None, what: str) -> str:
    """A credential given inline or (for Kubernetes Secrets mounted as files) by path."""
    if (value is None) == (path is None):
        raise ValueError(f"give exactly one of {what} and {what}File")
    if path is not None:
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"{what}File: cannot read {path}: {exc.strerror}") from None
    assert value is not None
    return value
