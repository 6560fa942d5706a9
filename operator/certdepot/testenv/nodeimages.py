"""Images a node needs without a registry: the pod sandbox ("pause") image, built here.

The pause container only holds a pod's namespaces; ours is a static Go program that waits
for SIGTERM/SIGINT, packed as a docker-archive tarball (what ``ctr images import`` reads)
by :func:`docker_archive`. Cached in ``$CERTDEPOT_CACHE/image`` and stamped with the hash
of its source, like the provisioned binaries.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

from certdepot.testenv.gobuild import require_go
from certdepot.testenv.provision import ProvisionError, cache_dir

__all__ = ["PAUSE_IMAGE", "docker_archive", "pause_image"]

# Never pulled: `certdepot.invalid` cannot resolve, so a missing image fails loudly.
PAUSE_IMAGE = "certdepot.invalid/pause:1"

PAUSE_SOURCE = """\
// The pod sandbox: hold the namespaces until the runtime stops the pod.
package main

import (
\t"os"
\t"os/signal"
\t"syscall"
)

func main() {
\tstop := make(chan os.Signal, 1)
\tsignal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
\t<-stop
}
"""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def docker_archive(files: dict[str, tuple[bytes, int]], tag: str, entrypoint: list[str],
                   output: Path) -> Path:
    """A one-layer image as ``docker save`` writes it: ``files`` maps a path in the image to
    (content, mode)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for name, (content, mode) in sorted(files.items()):
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
    layer_bytes = layer.getvalue()
    layer_id = _sha256(layer_bytes)
    config = json.dumps({
        "architecture": "amd64" if os.uname().machine == "x86_64" else "arm64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]},
    }).encode()
    config_name = f"{_sha256(config)}.json"
    manifest = json.dumps([{
        "Config": config_name, "RepoTags": [tag], "Layers": [f"{layer_id}/layer.tar"],
    }]).encode()
    tmp = output.with_name(output.name + ".tmp")
    with tarfile.open(tmp, mode="w") as tar:
        for name, content in ((f"{layer_id}/layer.tar", layer_bytes), (config_name, config),
                              ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    tmp.replace(output)
    return output


def pause_image() -> Path:
    """The pause image tarball, built with the machine's Go when missing or stale."""
    outdir = cache_dir() / "image"
    outdir.mkdir(parents=True, exist_ok=True)
    output = outdir / "pause.tar"
    stamp = output.with_name("pause.tar.stamp")
    wanted = f"{PAUSE_IMAGE} {_sha256(PAUSE_SOURCE.encode())}\n"
    if output.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        return output
    go = require_go(["pause"])
    with tempfile.TemporaryDirectory(prefix="pause-") as tmp:
        src = Path(tmp)
        (src / "go.mod").write_text("module certdepot.invalid/pause\n\ngo 1.22\n")
        (src / "main.go").write_text(PAUSE_SOURCE)
        proc = subprocess.run(
            [str(go), "build", "-trimpath", "-ldflags=-s -w", "-o", "pause", "."],
            cwd=src, capture_output=True, text=True,
            env={**os.environ, "CGO_ENABLED": "0"},
        )
        if proc.returncode != 0:
            raise ProvisionError(f"building the pause program failed:\n{proc.stderr[-2000:]}")
        docker_archive({"/pause": ((src / "pause").read_bytes(), 0o755)}, PAUSE_IMAGE,
                       ["/pause"], output)
    stamp.write_text(wanted)
    return output
