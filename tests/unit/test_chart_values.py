"""values.yaml documents every value, and the schema covers every value it sets."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "certdepot"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")


def _undocumented_keys(text: str) -> list[str]:
    """Keys with no comment right above them and no documented ancestor or child keys.

    A ``# --`` comment documents a key and everything under it (e.g. ``resources``); a
    section key such as ``ports:`` needs no comment of its own when each child has one.
    """
    lines = text.splitlines()
    entries: list[tuple[int, int, str, bool]] = []  # (line no, indent, key, documented)
    for i, line in enumerate(lines):
        m = KEY.match(line)
        if not m:
            continue
        indent = len(m["indent"])
        above = lines[i - 1] if i else ""
        documented = above.strip().startswith("#") and (
            len(above) - len(above.lstrip()) == indent)
        entries.append((i, indent, m["key"], documented))

    missing: list[str] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    for n, (_, indent, key, documented) in enumerate(entries):
        while stack and stack[-1][0] >= indent:
            stack.pop()
        ancestor_documented = any(d for _, _, d in stack)
        path = ".".join([k for _, k, _ in stack] + [key])
        has_child_keys = n + 1 < len(entries) and entries[n + 1][1] > indent
        if not (documented or ancestor_documented or has_child_keys):
            missing.append(path)
        stack.append((indent, key, documented))
    return missing


def test_every_value_is_commented() -> None:
    missing = _undocumented_keys((CHART / "values.yaml").read_text())
    assert not missing, f"values.yaml keys without a comment: {missing}"


def test_the_checker_can_fail() -> None:
    text = "a:\n  # -- fine\n  b: 1\n  c: 2\n# -- documented tree\nd:\n  e: 1\n"
    assert _undocumented_keys(text) == ["a.c"]


def _schema_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{key}"
        paths.add(path)
        if sub.get("type") == "object" and sub.get("additionalProperties") is False:
            paths |= _schema_paths(sub, path + ".")
    return paths


def _value_paths(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        paths.add(path)
        sub = (schema.get("properties") or {}).get(key) or {}
        if isinstance(value, dict) and sub.get("additionalProperties") is False:
            paths |= _value_paths(value, sub, path + ".")
    return paths


def test_schema_is_strict_where_the_chart_owns_the_shape() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["additionalProperties"] is False
    # Every value in values.yaml is known to the schema, and the schema knows no value that
    # values.yaml does not document (apart from helm's own "global").
    value_paths = _value_paths(values, schema)
    schema_paths = _schema_paths(schema) - {"global"}
    assert value_paths - schema_paths == set(), "values missing from the schema"
    # Children of a value that defaults to {} are documented by its comment's example.
    def parent_is_empty(path: str) -> bool:
        node: Any = values
        for part in path.split(".")[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        return bool(node == {})

    extra = {p for p in schema_paths - value_paths if not parent_is_empty(p)}
    assert extra == set(), "schema entries missing from values.yaml"
