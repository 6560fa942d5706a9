"""``certdepot dev ...``: developer tools."""

from __future__ import annotations

import sys
import time

import click

from certdepot.testenv import certmanager_assets as cm
from certdepot.testenv import provision as prov
from certdepot.testenv.system import ensure_system_tools


@click.group()
def dev() -> None:
    """Developer tools: provision the binaries that the tests and the demo run."""


@dev.command("provision")
@click.option(
    "--only",
    "only",
    multiple=True,
    type=click.Choice([*prov.BINARIES, cm.CONTROLLER]),
    help="Provision only this binary (repeatable). Default: all.",
)
@click.option("--force", is_flag=True, help="Rebuild even when the cached binary is current.")
@click.option(
    "--no-system",
    is_flag=True,
    help="Do not check (or apt-get install) PostgreSQL, Knot DNS, lego and dehydrated.",
)
@click.option("--check", is_flag=True, help="Only report what is there; build nothing.")
def provision_command(only: tuple[str, ...], force: bool, no_system: bool, check: bool) -> None:
    """Build or reuse pinned kube-apiserver, etcd, kubectl, pebble, challtestsrv and helm,
    and cert-manager's controller and CRDs (from shared/assets, else its upstream source).

    Binaries are cached in $CERTDEPOT_CACHE (default .cache/testenv in a checkout) and
    stamped with their pins, so this is idempotent. TEST_ASSET_<NAME> and
    KUBEBUILDER_ASSETS override the cache; see docs/testing.md.
    """
    started = time.monotonic()
    names = [n for n in only if n != cm.CONTROLLER] if only else list(prov.BINARIES)
    with_cert_manager = not only or cm.CONTROLLER in only
    try:
        if check:
            results = {n: prov.resolve(n) for n in names}
            if with_cert_manager:
                results[cm.CONTROLLER] = cm.resolve_controller()
        else:
            if not no_system:
                ensure_system_tools(log=click.echo)
            results = prov.provision(names, force=force, log=click.echo)
            if not only:
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
