"""The configuration file read within bounds (configfile.py): what a watched path may turn
into is refused with a ConfigError naming the file, never hangs or grows without bound."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from certdepot.repository import configfile
from certdepot.repository.config import ConfigError, load_config

VALID = {"baseUrl": "https://127.0.0.1:8443", "listeners": {"https": {"selfSigned": True}},
         "keyEncryptionKey": {"env": "X"}}


def test_special_files_are_refused(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, why in ((loop, "cannot read"), (tmp_path, "not a regular file"),
                      (fifo, "not a regular file"), (tmp_path / "none", "cannot read")):
        started = time.monotonic()
        with pytest.raises(configfile.ConfigFileError, match=why):
            configfile.read_bytes(path)
        assert time.monotonic() - started < 5  # a pipe without a writer never blocks


def test_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * 2049)
    assert configfile.read_bytes(path, 2049) == b"#" * 2049
    with pytest.raises(configfile.ConfigFileError, match="larger than 2048 bytes"):
        configfile.read_bytes(path, 2048)


def test_the_files_own_limit_applies_at_start(tmp_path: Path) -> None:
    path = tmp_path / "repository.yaml"
    path.write_text(yaml.safe_dump({**VALID, "configMaxBytes": 1024}) + "#" * 1024 + "\n")
    with pytest.raises(ConfigError, match="larger than configMaxBytes"):
        load_config(path)
    path.write_text(yaml.safe_dump({**VALID, "configMaxBytes": 4096}) + "#" * 1024 + "\n")
    assert load_config(path).config_max_bytes == 4096


@pytest.mark.parametrize(("content", "why"), [
    (b"a: \xff\n", "not UTF-8"),
    (b"a: " + b"[" * 20_000, "not valid YAML"),
    (b"a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\n" + b"".join(
        f"b{i}: &b{i} [{', '.join([f'*{p}'] * 9)}]\n".encode()
        for i, p in enumerate(["a", *(f"b{j}" for j in range(8))])), "aliases expand"),
    (b"a: &r [*r]\n", "aliases expand"),
])
def test_hostile_documents(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "repository.yaml"
    path.write_bytes(content)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=why) as refused:
        load_config(path)
    assert str(path) in str(refused.value)
    assert time.monotonic() - started < 5
    assert len(str(refused.value)) < 2000


def test_ordinary_aliases_and_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "repository.yaml"
    path.write_text(yaml.safe_dump(VALID) + "issuers:\n"
                    "  - &ca {name: a, type: local-ca}\n"
                    "  - {<<: *ca, name: b}\n")
    assert [i.name for i in load_config(path).issuers] == ["a", "b"]
