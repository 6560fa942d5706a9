"""``kubectl certdepot`` (also ``certdepot kubectl``): status, renew, inspect, inventory,
tenants.

Exit codes, the same for every command so scripts can branch on them:

* 0: done, and what was looked at is healthy (Ready, a good Secret, a renewal honoured)
* 1: done, but it is not healthy (not Ready, a key that does not match, an expired
  certificate, a renewal not honoured within ``--wait``, consumers found by
  ``inventory --stale``, a tenant with accounts but no policy found by ``tenants``)
* 2: usage error (unknown kind, bad option)
* 3: not found (the resource, the Secret, the repository certificate)
* 4: could not ask (API server or repository unreachable, access refused)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from certdepot.acme.timefmt import rfc3339
from certdepot.controller.core import renewrequest
from certdepot.kubectl import api, inventory, report, tables

OK, UNHEALTHY, USAGE, NOT_FOUND, UNAVAILABLE = 0, 1, 2, 3, 4

F = Callable[..., Any]


def _kube_options(fn: F) -> F:
    fn = click.option("-n", "--namespace", help="Namespace (default: the context's).")(fn)
    fn = click.option("--context", help="kubeconfig context (default: the current one).")(fn)
    # No envvar here: the client reads $KUBECONFIG itself, a colon-separated list included.
    fn = click.option("--kubeconfig",
                      help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config).")(fn)
    return fn


def _output_option(fn: F) -> F:
    return click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]),
                        default="table", show_default=True, help="Output format.")(fn)


def _fail(code: int, message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> api.Cluster:
    try:
        return api.Cluster.connect(kubeconfig, context, namespace)
    except api.ApiError as exc:
        _fail(UNAVAILABLE, str(exc))


def _target(kind_word: str, name: str | None) -> tuple[str, str]:
    """``KIND NAME`` or ``KIND/NAME``."""
    if name is None and "/" in kind_word:
        kind_word, name = kind_word.split("/", 1)
    if not name:
        _fail(USAGE, "give the resource as KIND NAME or KIND/NAME")
    try:
        return api.kind_of(kind_word), name
    except ValueError as exc:
        _fail(USAGE, str(exc))


def _now() -> datetime:
    return datetime.now(UTC)


def _emit(data: Any, output: str, text: Callable[[], str]) -> None:
    click.echo(text() if output == "table" else tables.dump(data, output))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def plugin() -> None:
    """Day-two commands for certdepot resources (run as `kubectl certdepot`).

    \b
    Exit codes: 0 healthy, 1 unhealthy (not Ready, bad Secret, renewal not honoured in
    time, inventory --stale found consumers, tenants found one with accounts but no
    policy), 2 usage, 3 not found, 4 API server or
    repository unreachable or refused.
    """


@plugin.command()
@click.argument("kind")
@click.argument("name", required=False)
@_kube_options
@_output_option
def status(kind: str, name: str | None, kubeconfig: str | None, context: str | None,
           namespace: str | None, output: str) -> None:
    """Conditions, the Secret's certificate, renewal, last failure and Events of a
    CertificateDownload, DelegatedCertificate or (Cluster)CertificateRepository."""
    kind, name = _target(kind, name)
    cluster = _connect(kubeconfig, context, namespace)
    try:
        obj = cluster.get(kind, name)
        secret = None
        secret_name = (obj.get("spec") or {}).get("secretName")
        if kind in report.SECRET_KINDS and secret_name:
            try:
                secret = cluster.secret(secret_name)
            except api.NotFound:
                secret = None
        events = cluster.events(obj)
    except api.NotFound as exc:
        _fail(NOT_FOUND, str(exc))
    except api.ApiError as exc:
        _fail(UNAVAILABLE, str(exc))
    now = _now()
    data = report.status_report(kind, obj, secret, events, now)
    _emit(data, output, lambda: tables.status_text(data, now))
    sys.exit(OK if data["ready"] == "True" else UNHEALTHY)


@plugin.command()
@click.argument("kind")
@click.argument("name", required=False)
@click.option("--wait", "wait_seconds", type=float, default=0.0, show_default=True,
              help="Wait up to this many seconds for the operator to honour the request.")
@_kube_options
def renew(kind: str, name: str | None, wait_seconds: float, kubeconfig: str | None,
          context: str | None, namespace: str | None) -> None:
    """Fetch (CertificateDownload) or re-issue (DelegatedCertificate) now.

    Sets the certdepot.io/renew-requested-at annotation; the operator fetches or orders
    on its next step and records the request in status.lastRenewalRequest once a new
    certificate is in the Secret.
    """
    kind, name = _target(kind, name)
    if kind not in report.SECRET_KINDS:
        _fail(USAGE, f"{kind} holds no certificate to renew; to renew a repository "
                     "certificate upstream run `certdepot repository renew NAME` where the "
                     "repository runs")
    cluster = _connect(kubeconfig, context, namespace)
    stamp = rfc3339(_now(), fraction=True)
    try:
        cluster.annotate(kind, name, renewrequest.ANNOTATION, stamp)
    except api.NotFound as exc:
        _fail(NOT_FOUND, str(exc))
    except api.ApiError as exc:
        _fail(UNAVAILABLE, str(exc))
    click.echo(f"renewal of {kind} {cluster.namespace}/{name} requested at {stamp}")
    if wait_seconds > 0:
        _wait_honoured(cluster, kind, name, stamp, wait_seconds)


def _wait_honoured(cluster: api.Cluster, kind: str, name: str, stamp: str,
                   seconds: float) -> None:
    deadline = time.monotonic() + seconds
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            status = cluster.get(kind, name).get("status") or {}
        except api.NotFound as exc:
            _fail(NOT_FOUND, str(exc))
        except api.ApiError as exc:
            _fail(UNAVAILABLE, str(exc))
        if status.get(renewrequest.STATUS_FIELD) == stamp:
            click.echo(f"renewed: certificate {status.get('serial')} in the Secret")
            return
        time.sleep(1.0)
    last = status.get("lastFailureMessage")
    _fail(UNHEALTHY, f"the renewal was not honoured within {seconds:g}s"
                     + (f"; last failure: {last}" if last else ""))


@plugin.group()
def inspect() -> None:
    """Decode what a Secret holds."""


@inspect.command("secret")
@click.argument("name")
@_kube_options
@_output_option
def inspect_secret(name: str, kubeconfig: str | None, context: str | None,
                   namespace: str | None, output: str) -> None:
    """The chain in a TLS Secret, whether tls.key matches it, and its expiry."""
    cluster = _connect(kubeconfig, context, namespace)
    try:
        secret = cluster.secret(name)
    except api.NotFound as exc:
        _fail(NOT_FOUND, str(exc))
    except api.ApiError as exc:
        _fail(UNAVAILABLE, str(exc))
    now = _now()
    data = report.inspect_secret(secret, now)
    _emit(data, output, lambda: tables.inspect_text(data, now))
    sys.exit(OK if data["ok"] else UNHEALTHY)


def _admin_api_options(fn: F) -> F:
    """Where the repository's admin API is and the token to ask it with."""
    for option in reversed([
        click.option("--repository", "repository_ref", metavar="KIND/NAME",
                     help="The repository to ask: its spec.url and spec.caBundle "
                          "(e.g. ccrepo/central, or crepo/NAME in -n)."),
        click.option("--url", help="The repository's base (or directory) URL; overrides "
                                   "--repository's spec.url."),
        click.option("--ca-file", type=click.Path(dir_okay=False, exists=True),
                     help="CA bundle (PEM) to verify the repository by; overrides "
                          "spec.caBundle."),
        click.option("--token-file", type=click.Path(dir_okay=False),
                     help="File holding the admin API token."),
        click.option("--token-secret", metavar="[NAMESPACE/]NAME",
                     help="Secret holding the admin API token (default namespace: -n)."),
        click.option("--token-key", default=inventory.TOKEN_KEY, show_default=True,
                     help="The token's key in --token-secret."),
    ]):
        fn = option(fn)
    return fn


@plugin.command("inventory")
@click.argument("certificate", required=False)
@_admin_api_options
@click.option("--stale", is_flag=True,
              help="Only consumers on a revoked or superseded serial; exit 1 if any.")
@_kube_options
@_output_option
def inventory_cmd(certificate: str | None, repository_ref: str | None, url: str | None,
                  ca_file: str | None, token_file: str | None, token_secret: str | None,
                  token_key: str, stale: bool, kubeconfig: str | None, context: str | None,
                  namespace: str | None, output: str) -> None:
    """Which consumers (tenant, cluster, CertificateDownload) hold which serial of the
    repository's CERTIFICATE (all certificates when omitted), from the repository's admin
    API (GET /admin/v1/inventory).

    The token comes from --token-file, --token-secret, else $CERTDEPOT_ADMIN_TOKEN."""
    source = _inventory_source(repository_ref, url, ca_file, token_file, token_secret,
                               token_key, kubeconfig, context, namespace)
    try:
        data = inventory.select(inventory.fetch(source, stale=stale), certificate)
        # Absent from the stale view means unknown or no consumer behind: ask which.
        exists = bool(data) or certificate is None or (stale and bool(inventory.select(
            inventory.fetch(source, stale=False), certificate)))
    except inventory.InventoryError as exc:
        _fail(UNAVAILABLE, str(exc))
    if not exists:
        _fail(NOT_FOUND, f"the repository has no certificate named {certificate!r}")
    now = _now()
    _emit(data, output, lambda: tables.inventory_text(data, now, stale=stale))
    sys.exit(UNHEALTHY if stale and inventory.stale_consumers(data) else OK)


@plugin.command("tenants")
@_admin_api_options
@_kube_options
@_output_option
def tenants_cmd(repository_ref: str | None, url: str | None, ca_file: str | None,
                token_file: str | None, token_secret: str | None, token_key: str,
                kubeconfig: str | None, context: str | None, namespace: str | None,
                output: str) -> None:
    """The repository's tenants: policy in its configuration?, accounts bound, EAB key id
    (never the key), from its admin API (GET /admin/v1/tenants). Exit 1 if a tenant with
    accounts has no policy (its clients are refused)."""
    source = _inventory_source(repository_ref, url, ca_file, token_file, token_secret,
                               token_key, kubeconfig, context, namespace)
    try:
        rows = inventory.fetch_tenants(source)
    except inventory.InventoryError as exc:
        _fail(UNAVAILABLE, str(exc))
    now = _now()
    _emit(rows, output, lambda: tables.tenants_text(rows, now))
    sys.exit(UNHEALTHY if any(r.get("accounts") and not r.get("policy") for r in rows)
             else OK)


def _inventory_source(repository_ref: str | None, url: str | None, ca_file: str | None,
                      token_file: str | None, token_secret: str | None, token_key: str,
                      kubeconfig: str | None, context: str | None,
                      namespace: str | None) -> inventory.Source:
    """The repository's URL and CA (from the object or the flags) and the admin token."""
    if repository_ref is None and url is None:
        _fail(USAGE, "name the repository: --repository KIND/NAME or --url URL")
    if token_file is not None and token_secret is not None:
        _fail(USAGE, "give one of --token-file and --token-secret")
    spec: dict[str, Any] = {}
    secret_data: dict[str, Any] | None = None
    if repository_ref is not None or token_secret is not None:
        cluster = _connect(kubeconfig, context, namespace)
        try:
            if repository_ref is not None:
                kind, name = _target(repository_ref, None)
                if kind not in (*api.CLUSTER_SCOPED, "CertificateRepository"):
                    _fail(USAGE, f"{kind} is no repository")
                spec = cluster.get(kind, name).get("spec") or {}
            if token_secret is not None:
                ns, _, name = token_secret.rpartition("/")
                secret_data = cluster.secret(name, ns or None).get("data") or {}
        except api.NotFound as exc:
            _fail(NOT_FOUND, str(exc))
        except api.ApiError as exc:
            _fail(UNAVAILABLE, str(exc))
    try:
        token = inventory.token_from(file=token_file, secret_data=secret_data, key=token_key)
        ca = Path(ca_file).read_bytes() if ca_file else inventory.ca_bundle(spec)
    except (inventory.InventoryError, OSError) as exc:
        _fail(UNAVAILABLE, str(exc))
    if token is None:
        _fail(USAGE, "no admin token: give --token-file or --token-secret, or set "
                     f"${inventory.TOKEN_ENV}")
    base = url or spec.get("url")
    if not base:
        _fail(USAGE, "the repository object has no spec.url; give --url")
    return inventory.Source(inventory.base_url(str(base)), token, ca)


def main() -> None:
    """The ``kubectl-certdepot`` executable (kubectl finds it on PATH as a plugin)."""
    plugin(prog_name="kubectl certdepot")
