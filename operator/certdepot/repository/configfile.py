"""Reading the configuration file within bounds, at start and at every live reload.

The file is watched while the server runs (livereload.py), so whatever is put at its path
is read by a long-running process: a directory, a named pipe (an unbounded read would block
a worker thread for ever), a symlink loop, a 100 MB file, bytes that are not UTF-8, or a
"billion laughs" YAML document whose aliases expand a few hundred bytes into billions of
values (PyYAML shares aliased nodes, but everything that walks the result, validation and
its error messages included, expands them). Each is refused with a :class:`ConfigFileError`
saying why; the caller keeps the configuration in force.

Limits: ``configMaxBytes`` (default :data:`MAX_BYTES`, 1 MiB) for the file's size, and
:data:`MAX_ALIAS_EXPANSION` values reached again through YAML aliases (merge keys
``<<: *defaults`` over a handful of issuers stay far below it).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

#: Largest configuration file read (``configMaxBytes``'s default).
MAX_BYTES = 1 << 20
#: The most read at start, before the file's own ``configMaxBytes`` is known.
START_MAX_BYTES = 64 << 20
#: Values a document may reach a second time through YAML aliases.
MAX_ALIAS_EXPANSION = 100_000


class ConfigFileError(ValueError):
    """The file cannot be used; the message says why (never its content)."""


def read_bytes(path: Path, max_bytes: int = MAX_BYTES) -> bytes:
    """The file's content: a regular file (symlinks followed) of at most ``max_bytes``."""
    try:
        # O_NONBLOCK: opening a named pipe must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigFileError(f"{path}: not a regular file")
        data = b""
        while len(data) <= max_bytes and (chunk := os.read(fd, max_bytes + 1 - len(data))):
            data += chunk
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ConfigFileError(f"{path}: larger than {max_bytes} bytes (configMaxBytes)")
    return data


def parse_yaml(data: bytes, path: Path) -> Any:
    """The YAML document in ``data`` (UTF-8), its aliases within bounds."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"{path}: not UTF-8 (byte {exc.start})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigFileError(f"{path}: not valid YAML: nested too deeply") from None
    check_expansion(doc, path)
    return doc


def check_expansion(doc: Any, path: Path, limit: int = MAX_ALIAS_EXPANSION) -> None:
    """ConfigFileError when more than ``limit`` values are reached again through aliases
    (a recursive alias reaches them for ever). The walk never recurses and stops at the
    limit, so it costs at most the document's distinct values plus ``limit``."""
    seen: set[int] = set()
    again = 0
    stack: list[tuple[Any, bool]] = [(doc, False)]
    while stack:
        node, repeated = stack.pop()
        if repeated:
            again += 1
            if again > limit:
                raise ConfigFileError(f"{path}: YAML aliases expand to more than {limit} "
                                      "values")
        if isinstance(node, dict):
            children: list[Any] = [*node.keys(), *node.values()]
        elif isinstance(node, list):
            children = node
        else:
            continue
        repeated = repeated or id(node) in seen
        seen.add(id(node))
        stack.extend((c, repeated) for c in children)
