"""``kubectl certdepot`` (also ``certdepot kubectl``): status, renew, inspect, inventory.

Exit codes, the same for every command so scripts can branch on them:

* 0: done, and what was looked at is healthy (Ready, a good Secret, a renewal honoured)
* 1: done, but it is not healthy (not Ready, a key that does not match, an expired
  certificate, a renewal not honoured within ``--wait``)
* 2: usage error (unknown kind, bad option)
* 3: not found (the resource, the Secret, the repository certificate)
* 4: could not ask (API server or repository unreachable, access refused)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

import click

from certdepot.acme.timefmt import rfc3339
from certdepot.controller import renewrequest
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
    time), 2 usage, 3 not found, 4 API server or repository unreachable or refused.
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


@plugin.command("inventory")
@click.argument("certificate", required=False)
@click.option("--repository-config", type=click.Path(dir_okay=False),
              help="Read the inventory here, with this repository configuration (needs the "
                   "store and the key-encryption key, as `certdepot repository` does).")
@click.option("--exec", "exec_target", default="deploy/certdepot-repository",
              show_default=True, help="Else: the repository pod or deployment to `kubectl "
                                      "exec` the repository CLI in.")
@click.option("--container", default="repository", show_default=True)
@click.option("--config-path", default=inventory.CHART_CONFIG, show_default=True,
              help="The configuration's path inside that pod.")
@_kube_options
@_output_option
def inventory_cmd(certificate: str | None, repository_config: str | None, exec_target: str,
                  container: str, config_path: str, kubeconfig: str | None,
                  context: str | None, namespace: str | None, output: str) -> None:
    """Which tenants and clusters (ACME accounts) hold which serial of the repository's
    CERTIFICATE (all certificates when omitted), as the repository reports it.

    Without --repository-config, runs the repository's CLI through `kubectl exec` in the
    --exec target in namespace -n (default: certdepot)."""
    if repository_config is not None:
        argv = inventory.local_command(repository_config)
    else:
        kube_args = [f"--kubeconfig={kubeconfig}"] if kubeconfig else []
        kube_args += [f"--context={context}"] if context else []
        argv = inventory.exec_command(exec_target, namespace or "certdepot", container,
                                      config_path, kube_args=kube_args)
    try:
        data = inventory.report(inventory.read(argv), certificate)
    except inventory.InventoryError as exc:
        _fail(UNAVAILABLE, str(exc))
    if certificate is not None and not data:
        _fail(NOT_FOUND, f"the repository has no certificate named {certificate!r}")
    now = _now()
    _emit(data, output, lambda: tables.inventory_text(data, now))


def main() -> None:
    """The ``kubectl-certdepot`` executable (kubectl finds it on PATH as a plugin)."""
    plugin(prog_name="kubectl certdepot")
