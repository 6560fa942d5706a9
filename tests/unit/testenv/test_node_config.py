"""The one-node cluster's generated configuration and images (no root needed)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from certdepot.testenv.node import _toml
from certdepot.testenv.nodehost import Bridge
from certdepot.testenv.nodeimages import docker_archive


def test_containerd_toml_nests_tables_and_quotes_values() -> None:
    out = _toml('plugins."cri"', {"sandbox_image": "x/pause:1", "restrict": True,
                                  "cni": {"bin_dir": "/usr/lib/cni"}})
    assert out.splitlines() == [
        '[plugins."cri"]', '  sandbox_image = "x/pause:1"', "  restrict = true",
        '[plugins."cri".cni]', '  bin_dir = "/usr/lib/cni"',
    ]


def test_bridge_gateway_is_the_first_host() -> None:
    assert Bridge(subnet="10.213.0.0/24").gateway == "10.213.0.1"


def test_docker_archive_is_what_docker_save_writes(tmp_path: Path) -> None:
    out = docker_archive({"/pause": (b"\x7fELF", 0o755)}, "example.invalid/p:1", ["/pause"],
                         tmp_path / "p.tar")
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        (entry,) = manifest
        assert entry["RepoTags"] == ["example.invalid/p:1"]
        config = json.load(tar.extractfile(entry["Config"]))  # type: ignore[arg-type]
        assert config["config"]["Entrypoint"] == ["/pause"]
        with tarfile.open(fileobj=tar.extractfile(entry["Layers"][0])) as layer:
            member = layer.getmember("pause")
        assert member.mode == 0o755 and member.size == 4
