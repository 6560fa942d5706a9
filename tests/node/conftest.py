"""The one-node cluster tests: opt-in with CERTDEPOT_NODE=1 (`make test-node`).

They need root, the node's Debian packages and binaries (`make provision-node`) and the
image (`make image`; the fixture builds it when it is missing or stale). Without
CERTDEPOT_NODE=1 they are deselected, as the kind tests are: `make test` never runs them,
`make test-node` (called by .ci/run) always does, and there a missing tool FAILS the run
with the command that provides it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from certdepot.testenv.node import NodeCluster
from certdepot.testenv.provision import ProvisionError

OPT_IN = "CERTDEPOT_NODE"
IMAGE_TAG = "certdepot:dev"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(OPT_IN) == "1":
        return
    here = Path(__file__).parent
    deselected = [item for item in items if here in Path(str(item.fspath)).parents]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


@pytest.fixture(scope="session")
def node_image() -> Path:
    """The project image, built from the Dockerfile on a local Debian base (cached)."""
    from certdepot.testenv.image import build_image

    try:
        return build_image(IMAGE_TAG)
    except ProvisionError as exc:
        pytest.fail(f"make image: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def node_cluster(node_image: Path) -> Iterator[NodeCluster]:
    """Control plane + one node running pods; the image is loaded into its containerd.

    Stopping it must leave the host as it was: a leftover (process, mount, link, iptables
    rule, cgroup) fails the session."""
    cluster = NodeCluster(images=[node_image])
    try:
        cluster.start()
    except ProvisionError as exc:
        pytest.fail(f"node cluster: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
    assert not cluster.leftovers(), f"the node cluster left {cluster.leftovers()}"
