"""``certdepot dev ...``: developer tools."""

from __future__ import annotations

import sys
import time

import click

from certdepot.testenv import certmanager_assets as cm
from certdepot.testenv import provision as prov
from certdepot.testenv.system import ensure_node_tools, ensure_system_tools


@click.group()
def dev() -> None:
    """Developer tools: provision the binaries that the tests and the demo run."""


@dev.command("provision")
@click.option(
    "--only",
    "only",
    multiple=True,
    type=click.Choice([*prov.ALL_BINARIES, cm.CONTROLLER]),
    help="Provision only this binary (repeatable). Default: all.",
)
@click.option("--force", is_flag=True, help="Rebuild even when the cached binary is current.")
@click.option(
    "--no-system",
    is_flag=True,
    help="Do not check (or apt-get install) PostgreSQL, Knot DNS, lego and dehydrated.",
)
@click.option("--check", is_flag=True, help="Only report what is there; build nothing.")
@click.option(
    "--node",
    is_flag=True,
    help="Also the one-node cluster's binaries (kubelet, scheduler, controller-manager, "
    "kube-proxy, CoreDNS, Traefik) and system packages (containerd, runc, CNI, docker.io).",
)
def provision_command(
    only: tuple[str, ...], force: bool, no_system: bool, check: bool, node: bool
) -> None:
    """Build or reuse pinned kube-apiserver, etcd, kubectl, pebble, challtestsrv, helm,
    prometheus and promtool, and cert-manager's controller and CRDs (from shared/assets,
    else its upstream source); with --node, the one-node cluster's binaries instead.

    Binaries are cached in $CERTDEPOT_CACHE (default .cache/testenv in a checkout) and
    stamped with their pins, so this is idempotent. TEST_ASSET_<NAME> and
    KUBEBUILDER_ASSETS override the cache; see docs/testing.md.
    """
    started = time.monotonic()
    wanted = [n for n in only if n != cm.CONTROLLER]
    names = wanted if only else list(prov.NODE_BINARIES if node else prov.BINARIES)
    with_cert_manager = (not only and not node) or cm.CONTROLLER in only
    try:
        if check:
            results = {n: prov.resolve(n) for n in names}
            if with_cert_manager:
                results[cm.CONTROLLER] = cm.resolve_controller()
        else:
            if not no_system:
                ensure_node_tools(log=click.echo) if node else ensure_system_tools(log=click.echo)
            results = prov.provision(names, force=force, log=click.echo)
            if not only and not node:
                files = prov.provision_files(force=force, log=click.echo)
                for name, path in files.items():
                    click.echo(f"{name:26} {'cache':20} {path}")
            if with_cert_manager:
                results[cm.CONTROLLER] = cm.provision_cert_manager(force=force, log=click.echo)
    except prov.ProvisionError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    bad = False
    for name, res in results.items():
        click.echo(f"{name:24} {res.source:26} {res.path or '-'}")
        bad = bad or res.source in ("missing", "stale")
    click.echo(f"cache: {prov.cache_dir()}  ({time.monotonic() - started:.1f}s)")
    if bad:
        sys.exit(1)


@dev.command("image")
@click.option("--tag", default="certdepot:dev", show_default=True, help="Image name and tag.")
@click.option("--force", is_flag=True, help="Build even when the saved image is current.")
@click.option("--force-base", is_flag=True, help="Make the Debian base again with mmdebstrap.")
def image_command(tag: str, force: bool, force_base: bool) -> None:
    """Build the image from the Dockerfile on a local Debian base; no registry, no pull.

    Needs root, mmdebstrap and docker.io (`certdepot dev provision --node` installs them).
    The saved image (docker save) lands in $CERTDEPOT_CACHE/image/.
    """
    from certdepot.testenv.image import build_image

    try:
        path = build_image(tag, force=force, force_base=force_base, log=click.echo)
    except prov.ProvisionError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(str(path))
