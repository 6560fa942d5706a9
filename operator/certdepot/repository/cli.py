"""``certdepot repository ...``: run and administer the repository."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
import uvloop

from certdepot.repository import resourcecli
from certdepot.repository.config import Config, ConfigError, load_config
from certdepot.repository.keyvault import KeyVault
from certdepot.repository.rotation import REASONS
from certdepot.repository.store import Store

_config_option = click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    envvar="CERTDEPOT_REPOSITORY_CONFIG", help="Repository configuration (YAML).")


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def resources_in_force(config: Config) -> bool:
    """Whether this repository also reads RepositoryCertificate and RepositoryTenant
    resources (``kubernetes.resources: true``), which the command line cannot see."""
    return config.kubernetes.resources


def _unknown_certificate(config: Config, config_path: Path, name: str) -> NoReturn:
    hint = ""
    if resources_in_force(config):
        hint = (f"; if it is a RepositoryCertificate resource this command could not read, "
                f"the resource is the source of truth: use the admin API "
                f"(POST /admin/v1/certificates/{name}/rotate) or the resource")
    click.echo(f"error: no managed certificate {name!r} in {config_path}{hint}", err=True)
    sys.exit(2)


def _resource_tenant_guard(config: Config, config_path: Path, name: str, what: str,
                           store_only: bool) -> None:
    """Refuse to change in the store a tenant that may be a RepositoryTenant resource: its
    EAB key is then in the Secret the repository writes, which would go stale."""
    if store_only or not resources_in_force(config) or config.tenant(name) is not None:
        return
    click.echo(f"error: tenant {name!r} is not in {config_path} and this repository reads "
               "RepositoryTenant resources (kubernetes.resources: true). If it is declared "
               f"as one, the resource is the source of truth: {what}. To change the store "
               "anyway: --store-only", err=True)
    sys.exit(2)


_store_only_option = click.option(
    "--store-only", is_flag=True,
    help="Change the store even if the tenant may be a RepositoryTenant resource.")


@click.group()
def repository() -> None:
    """The central repository: an ACME server that keeps, renews and hands out certificates."""


@repository.command()
@_config_option
@click.option("--log-level", default="info", show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Repository processes serving the listeners (default: the "
                   "configuration's workers, 1).")
@click.option("--pool-worker", is_flag=True, hidden=True)
def serve(config_path: Path, log_level: str, workers: int | None, pool_worker: bool) -> None:
    """Run the ACME server (and renewal) described by the configuration."""
    from certdepot.repository import workers as pool
    from certdepot.repository.server import serve as run

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = _load(config_path)
    count = workers or config.workers
    try:
        if count > 1 and not pool_worker:
            sys.exit(pool.supervise(config, config_path, log_level, count))
        # uvloop: the event loop, its sockets and TLS in C; under load the repository spent
        # a large share of its CPU in the pure-Python selector loop and SSL protocol.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run(config, log_level, reuse_port=pool_worker))
    except ConfigError as exc:
        click.echo(f"error: {config_path}: {exc}", err=True)
        sys.exit(2)


@repository.group()
def tenant() -> None:
    """Tenants and their External Account Binding credentials."""


@tenant.command("create")
@_config_option
@click.argument("name")
@_store_only_option
def tenant_create(config_path: Path, name: str, store_only: bool) -> None:
    """Mint EAB credentials for tenant NAME (shown once, keep them)."""
    from certdepot.repository.tenants import BadTenantName, TenantExists, create_tenant

    config = _load(config_path)
    # The guard reads the file alone: a name declared only as a resource gets its key in
    # the Secret the repository writes, which a key minted here would leave stale.
    _resource_tenant_guard(config, config_path, name, "the repository mints its EAB key "
                           "into a Secret", store_only)
    config = resourcecli.effective(config, lambda note: click.echo(note, err=True))
    if config.tenant(name) is None:
        click.echo(f"warning: tenant {name!r} has no policy in {config_path}; its accounts "
                   "will be refused until you add one", err=True)
    store, vault = _open(config)
    try:
        creds = create_tenant(store, vault, name)
    except TenantExists:
        click.echo(f"error: tenant {name!r} already exists (replace its key with "
                   f"`tenant rotate {name}`)", err=True)
        sys.exit(1)
    except BadTenantName as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    finally:
        store.close()
    click.echo(f"tenant:   {creds.tenant}\neab-kid:  {creds.kid}\neab-hmac: {creds.hmac_key}")


@tenant.command("list")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def tenant_list(config_path: Path, as_json: bool) -> None:
    """Each tenant: policy in the configuration?, accounts bound, EAB key id, created."""
    from certdepot.repository.tenants import list_tenants

    config = _load(config_path)
    store, _ = _open(config)
    try:
        rows = list_tenants(config, store)
    finally:
        store.close()
    if as_json:
        import json

        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(tenant_table(rows))


def tenant_table(rows: list[dict[str, Any]]) -> str:
    """``tenant list`` as text (also what the kubectl plugin prints)."""
    head = ["NAME", "POLICY", "ACCOUNTS", "EAB KEY ID", "CREATED", "KEY ROTATED"]
    body = [[r["name"], "yes" if r["policy"] else "NONE",
             str(r["accounts"]) + (f" (+{r['accountsDeactivated']} deactivated)"
                                   if r["accountsDeactivated"] else ""),
             r["eabKeyId"] or "- (no credentials: tenant create)",
             _ts(r["created"]) if r["created"] else "-",
             _ts(r["keyRotated"]) if r["keyRotated"] else "-"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=False)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in [head, *body])


@tenant.command("rotate")
@_config_option
@click.argument("name")
@_store_only_option
def tenant_rotate(config_path: Path, name: str, store_only: bool) -> None:
    """Replace tenant NAME's EAB key id and HMAC key (shown once). The old key binds no new
    account; accounts already bound keep working."""
    from certdepot.repository.tenants import NoSuchTenant, rotate_tenant

    config = _load(config_path)
    _resource_tenant_guard(config, config_path, name, "rotate its EAB key with the "
                           "resource's spec.eab", store_only)
    store, vault = _open(config)
    try:
        creds = rotate_tenant(store, vault, name)
    except NoSuchTenant:
        click.echo(f"error: no tenant {name!r} (create it with `tenant create {name}`)",
                   err=True)
        sys.exit(1)
    finally:
        store.close()
    click.echo(f"tenant:   {creds.tenant}\neab-kid:  {creds.kid}\neab-hmac: {creds.hmac_key}\n"
               "the old key binds no new account; accounts already bound stay bound "
               f"(to cut them off: tenant delete {name} --force)")


@tenant.command("delete")
@_config_option
@click.argument("name")
@click.option("--force", is_flag=True,
              help="Also when accounts are bound: deactivate them.")
@_store_only_option
def tenant_delete(config_path: Path, name: str, force: bool, store_only: bool) -> None:
    """Delete tenant NAME and its EAB credentials (refused while accounts are bound, unless
    --force, which deactivates them)."""
    from certdepot.repository.tenants import NoSuchTenant, TenantHasAccounts, delete_tenant

    config = _load(config_path)
    _resource_tenant_guard(config, config_path, name, "delete the resource", store_only)
    store, _ = _open(config)
    try:
        n = delete_tenant(store, name, force=force)
    except NoSuchTenant:
        click.echo(f"error: no tenant {name!r}", err=True)
        sys.exit(1)
    except TenantHasAccounts as exc:
        click.echo(f"error: tenant {name!r} has {exc.args[1]} account(s) bound; --force "
                   "deactivates them (their clients are refused from their next request)",
                   err=True)
        sys.exit(1)
    finally:
        store.close()
    click.echo(f"tenant {name} deleted ({n} account(s) deactivated)")
    if config.tenant(name) is not None:
        click.echo(f"note: {config_path} still has a policy for {name!r}; it grants nothing "
                   "until the tenant is created again", err=True)


def _open(config: Config) -> tuple[Store, KeyVault]:
    from certdepot.repository.bootstrap import open_store

    try:
        return open_store(config)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@repository.command("import")
@_config_option
@click.option("--name", required=True, help="Managed certificate name (declared in config).")
@click.option("--cert", "cert_path", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--chain", "chain_path", type=click.Path(exists=True, path_type=Path))
def import_cmd(config_path: Path, name: str, cert_path: Path, key_path: Path,
               chain_path: Path | None) -> None:
    """Import an existing certificate and key as managed certificate NAME."""
    import time

    from certdepot.acme import crypto
    from certdepot.repository import certstore
    from certdepot.repository.config import ImportedIssuer
    from certdepot.repository.issuers import IssuerError
    from certdepot.repository.issuers.imported import validate_import

    config = _load(config_path)
    config = resourcecli.effective(config, lambda note: click.echo(note, err=True))
    managed = config.certificate(name)
    if managed is None:
        click.echo(f"error: {config_path}: certificates: no entry named {name!r}; declare "
                   "it (dnsNames, an imported issuer) first", err=True)
        sys.exit(2)
    if not isinstance(config.issuer(managed.issuer), ImportedIssuer):
        click.echo(f"error: certificate {name!r} uses issuer {managed.issuer!r}, which is "
                   "not of type imported", err=True)
        sys.exit(2)
    try:
        chain, key, leaf = validate_import(cert_path.read_bytes(), key_path.read_bytes(),
                                           chain_path.read_bytes() if chain_path else None)
    except IssuerError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    names = set(crypto.certificate_dns_names(leaf))
    if names != set(managed.dns_names):
        click.echo(f"error: certificate names {sorted(names)} differ from {name!r}'s "
                   f"dnsNames {sorted(managed.dns_names)}", err=True)
        sys.exit(1)
    store, vault = _open(config)
    try:
        cert_id = certstore.save_certificate(store, vault, chain, issuer=managed.issuer,
                                             now=time.time(), managed_name=name, key=key)
        certstore.set_current(store, name, cert_id)
    finally:
        store.close()
    click.echo(f"imported {name}: serial {crypto.serial_hex(leaf)}, expires "
               f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}")


@repository.command()
@_config_option
@click.argument("name")
def renew(config_path: Path, name: str) -> None:
    """Ask the running repository to renew managed certificate NAME now."""
    from certdepot.repository.renewal import request_renewal

    config = _load(config_path)
    config = resourcecli.effective(config, lambda note: click.echo(note, err=True))
    if config.certificate(name) is None:
        _unknown_certificate(config, config_path, name)
    store, _ = _open(config)
    try:
        request_renewal(store, name)
    finally:
        store.close()
    click.echo(f"renewal of {name} requested")


def _ts(value: float) -> str:
    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@repository.command()
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--stale", is_flag=True,
              help="Only consumers still holding a revoked or superseded serial.")
def inventory(config_path: Path, as_json: bool, stale: bool) -> None:
    """Each certificate with its expiry, issuer, who downloaded which serial, and each
    consumer with the serial it holds and its last check-in."""
    from certdepot.repository.inventory import collect

    # The certificates declared as RepositoryCertificates too, as the server has them in
    # force; what this says about reading them goes to stderr, so --json stays parseable.
    config = resourcecli.with_resources(_load(config_path), lambda s: click.echo(s, err=True))
    store, _ = _open(config)
    try:
        entries = collect(config, store, stale=stale)
    finally:
        store.close()
    if as_json:
        import json

        click.echo(json.dumps(entries, indent=2))
        return
    if stale and not entries:
        click.echo("no consumer holds a revoked or superseded serial")
        return
    for e in entries:
        _print_entry(e, stale)


def _print_entry(e: dict[str, Any], stale: bool) -> None:
    cur = e["current"]
    state = (f"serial {cur['serial']} expires {_ts(cur['not_after'])}" if cur
             else "no certificate yet")
    click.echo(f"{e['name']}  [{', '.join(e['dns_names'])}]  issuer {e['issuer']}  {state}")
    if e.get("last_error"):
        click.echo(f"    last error: {e['last_error']}")
    for c in [] if stale else e["certificates"]:
        marker = "*" if cur and c["serial"] == cur["serial"] else " "
        revoked = (f"  REVOKED {c['revocation']['reason']}" if c.get("revocation") else "")
        click.echo(f"  {marker} serial {c['serial']}  {_ts(c['not_before'])} .. "
                   f"{_ts(c['not_after'])}{revoked}")
        for d in c["deliveries"]:
            click.echo(f"      -> tenant {d['tenant']} account {d['account_id']} at "
                       f"{_ts(d['delivered'])}")
    if e["consumers"]:
        click.echo("  consumers:")
    for p in e["consumers"]:
        where = "".join(f" {k} {p[k]}" for k in ("cluster", "resource") if p[k])
        click.echo(f"    tenant {p['tenant']} account {p['account_id']}{where}: serial "
                   f"{p['serial']} ({p['state']}), last check-in {_ts(p['last_checkin'])}")


@repository.command()
@_config_option
@click.argument("name")
@click.option("--reason", default="keyCompromise", show_default=True,
              type=click.Choice(sorted(REASONS)),
              help="RFC 5280 revocation reason, sent to the upstream CA.")
def rotate(config_path: Path, name: str, reason: str) -> None:
    """Replace managed certificate NAME now with a new key and revoke the old one."""
    from certdepot.repository.bootstrap import build_repo
    from certdepot.repository.rotation import RotationError
    from certdepot.repository.rotation import rotate as run_rotation

    config = _load(config_path)
    config = resourcecli.effective(config, lambda note: click.echo(note, err=True))
    if config.certificate(name) is None:
        _unknown_certificate(config, config_path, name)
    store, vault = _open(config)
    repo = build_repo(config, store, vault)

    async def go() -> Any:
        try:
            return await run_rotation(repo, name, reason, requested_by="admin (command line)")
        finally:
            for issuer in repo.issuers.values():
                await issuer.close()

    try:
        done = asyncio.run(go())
    except RotationError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        store.close()
    retry = int(config.ari_retry_after.total_seconds())
    click.echo(f"rotated {name} (reason {reason})\n"
               f"  revoked serial  {done.old_serial}\n"
               f"  new serial      {done.new_serial}\n"
               f"  upstream        {done.upstream}\n"
               f"  consumers       {done.consumers} held the revoked serial; renewalInfo tells "
               f"them now (they poll every {retry}s)\n"
               f"follow with: certdepot repository inventory --stale")


@repository.group()
def delegation() -> None:
    """RFC 9115 delegations."""


@delegation.command("cancel")
@_config_option
@click.option("--tenant", "tenant_name", required=True)
@click.option("--name", required=True, help="Delegation name.")
def delegation_cancel(config_path: Path, tenant_name: str, name: str) -> None:
    """Cancel a delegation: no new orders, STAR renewal stops."""
    from certdepot.repository.delegation import cancel

    config = _load(config_path)
    config = resourcecli.effective(config, lambda note: click.echo(note, err=True))
    store, _ = _open(config)
    try:
        n = cancel(store, tenant_name, name)
    finally:
        store.close()
    click.echo(f"delegation {tenant_name}/{name} cancelled ({n} auto-renewal order(s) stopped)")
