"""``certdepot operator ...``: run the in-cluster operator."""

from __future__ import annotations

import asyncio
import os

import click
import uvloop


@click.group(name="operator")
def operator_group() -> None:
    """The in-cluster operator that reconciles certdepot.io resources into TLS Secrets."""


@operator_group.command("run")
@click.option(
    "--namespace",
    "-n",
    "namespaces",
    multiple=True,
    help="Watch only this namespace (repeatable; glob patterns allowed). Default: all.",
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    envvar="KUBECONFIG",
    help="Kubeconfig to use outside a cluster (default: in-cluster config, then KUBECONFIG).",
)
@click.option(
    "--bind",
    default="127.0.0.1",
    show_default=True,
    help="Address for the metrics and health listeners (0.0.0.0 inside a pod).",
)
@click.option(
    "--metrics-port", type=int, default=9402, show_default=True, help="Prometheus /metrics port."
)
@click.option(
    "--health-port",
    type=int,
    default=9403,
    show_default=True,
    help="Port for /healthz (liveness) and /readyz (readiness).",
)
@click.option(
    "--peering/--standalone",
    "leader_election",
    default=True,
    show_default=True,
    help="Run as one of several replicas with only one active (a coordination.k8s.io "
    "Lease), or alone.",
)
@click.option("--lease-name", default="certdepot-operator", show_default=True)
@click.option(
    "--lease-namespace",
    default=lambda: os.environ.get("POD_NAMESPACE", "certdepot"),
    show_default="$POD_NAMESPACE or certdepot",
)
@click.option(
    "--lease-seconds",
    type=click.IntRange(5, 3600),
    default=15,
    show_default=True,
    help="Lease duration: a leader that cannot renew it for this long (API server "
    "unreachable) stops acting and exits; another replica waits this long for it.",
)
@click.option("--identity", default="", help="This replica's name in the Lease (default host-pid).")
@click.option(
    "--cluster-resource-namespace",
    default=lambda: os.environ.get("POD_NAMESPACE", "certdepot"),
    show_default="$POD_NAMESPACE or certdepot",
    help="Namespace holding the Secrets of ClusterCertificateRepositories.",
)
@click.option(
    "--recheck-seconds",
    type=float,
    default=600.0,
    show_default=True,
    help="Look at every resource at least this often.",
)
@click.option(
    "--renewal-info-seconds",
    type=float,
    default=300.0,
    show_default=True,
    help="Ask a repository's renewal information (ARI) about each certificate at least this "
    "often; sooner when the repository's Retry-After says so.",
)
@click.option("--backoff-base-seconds", type=float, default=5.0, show_default=True)
@click.option("--backoff-cap-seconds", type=float, default=300.0, show_default=True)
@click.option(
    "--log-json/--log-text", default=False, show_default=True, help="Structured JSON logs."
)
@click.option(
    "--ingress-shim/--no-ingress-shim",
    default=True,
    show_default=True,
    help="Turn annotated Ingresses into CertificateDownloads. Off: Ingresses are not watched "
    "at all, so the operator needs no RBAC for them.",
)
@click.option(
    "--download-reuse-seconds",
    type=click.FloatRange(min=0.0),
    default=30.0,
    envvar="CERTDEPOT_DOWNLOAD_REUSE_SECONDS",
    show_default=True,
    help="CertificateDownloads asking the same repository for the same names share one "
    "download, and its result for this long. 0: each downloads on its own.",
)
@click.option(
    "--max-concurrent-steps",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="At most this many objects are reconciled at once; the others wait their turn. "
    "Bounds the operator's memory in a rollout of thousands of objects.",
)
@click.option(
    "--renewal-info-min-seconds",
    type=click.FloatRange(min=1.0),
    default=5.0,
    show_default=True,
    help="Follow the repository's Retry-After on renewal information, but never ask about "
    "one certificate more often than this.",
)
@click.option(
    "--cluster-id",
    default="",
    envvar="CERTDEPOT_CLUSTER_ID",
    help="This cluster's name, sent to repositories (Certdepot-Cluster header) so their "
    "inventory tells clusters apart. Default: not sent.",
)
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Debug logging, including kopf's line per handled watch event (otherwise only its "
    "warnings and errors).",
)
def run(
    namespaces: tuple[str, ...],
    kubeconfig: str | None,
    bind: str,
    metrics_port: int,
    health_port: int,
    leader_election: bool,
    lease_name: str,
    lease_namespace: str,
    lease_seconds: int,
    identity: str,
    cluster_resource_namespace: str,
    recheck_seconds: float,
    renewal_info_seconds: float,
    backoff_base_seconds: float,
    backoff_cap_seconds: float,
    log_json: bool,
    ingress_shim: bool,
    download_reuse_seconds: float,
    max_concurrent_steps: int,
    renewal_info_min_seconds: float,
    cluster_id: str,
    verbose: bool,
) -> None:
    """Reconcile repositories, certificate resources and annotated Ingresses into Secrets."""
    from certdepot.controller.runner import RunOptions
    from certdepot.controller.runner import run as run_operator

    options = RunOptions(
        namespaces=list(namespaces),
        kubeconfig=kubeconfig,
        bind=bind,
        metrics_port=metrics_port,
        health_port=health_port,
        leader_election=leader_election,
        lease_name=lease_name,
        lease_namespace=lease_namespace,
        lease_seconds=lease_seconds,
        identity=identity,
        cluster_resource_namespace=cluster_resource_namespace,
        recheck_seconds=recheck_seconds,
        renewal_info_seconds=renewal_info_seconds,
        backoff_base_seconds=backoff_base_seconds,
        backoff_cap_seconds=backoff_cap_seconds,
        log_json=log_json,
        ingress_shim=ingress_shim,
        download_reuse_seconds=download_reuse_seconds,
        max_concurrent_steps=max_concurrent_steps,
        renewal_info_min_seconds=renewal_info_min_seconds,
        cluster_id=cluster_id,
        verbose=verbose,
    )
    # uvloop, as `kopf run` picks when it is installed: a cheaper event loop for the many
    # watch events, API calls and repository requests of a large rollout.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        code = runner.run(run_operator(options))
    raise SystemExit(code)
