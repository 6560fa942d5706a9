"""Assemble the operator (API client, gateway, metrics, health, leadership) and run kopf."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import kopf
from aiohttp import web

from certdepot.controller import handlers  # registers the kopf handlers on import
from certdepot.controller.core.errors import BackoffPolicy
from certdepot.controller.core.settings import Settings
from certdepot.controller.gateway.acme_gateway import AcmeGateway
from certdepot.controller.gateway.sharing import RenewalWatch
from certdepot.controller.kinds.deps import Deps
from certdepot.controller.kube.api import RealKubeApi
from certdepot.controller.kube.secrets import MANAGED_SECRETS_SELECTOR
from certdepot.controller.loops import Runtime
from certdepot.controller.ops.health import ApiReachability, start_health, start_metrics
from certdepot.controller.ops.leader import LeaseElector
from certdepot.controller.ops.metrics import Metrics

log = logging.getLogger("certdepot.operator")


@dataclass
class RunOptions:
    namespaces: list[str] = field(default_factory=list)  # empty: the whole cluster
    kubeconfig: str | None = None
    bind: str = "127.0.0.1"
    metrics_port: int = 9402
    health_port: int = 9403
    leader_election: bool = True
    lease_name: str = "certdepot-operator"
    lease_namespace: str = "certdepot"
    # How long the leader may go without renewing the Lease (the API server unreachable)
    # before it stops acting and exits, as client-go's leader election does.
    lease_seconds: int = 15
    identity: str = ""
    cluster_resource_namespace: str = "certdepot"
    recheck_seconds: float = 600.0
    renewal_info_seconds: float = 300.0
    backoff_base_seconds: float = 5.0
    backoff_cap_seconds: float = 300.0
    log_json: bool = False
    verbose: bool = False
    ingress_shim: bool = True
    # Seconds one completed download serves other CertificateDownloads asking the same
    # repository, as the same account, for the same names (0: no sharing at all).
    download_reuse_seconds: float = 30.0
    # The repository's Retry-After on renewalInfo is followed, but no closer than this.
    renewal_info_min_seconds: float = 5.0
    # Sent to repositories (Certdepot-Cluster) so their inventory tells clusters apart.
    cluster_id: str = ""
    # Objects reconciled at once (the others wait): bounds memory in a large rollout.
    max_concurrent_steps: int = 256


def post_event(obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    try:
        body = kopf.Body(cast(kopf.RawBody, dict(obj)))
        kopf.event(body, type=type_, reason=reason, message=message[:1000])
    except LookupError:
        # Outside kopf's context (unit tests, shutdown): nothing to post through.
        log.info("event %s %s: %s", type_, reason, message)


class WatchOnlyDiffBase(kopf.DiffBaseStorage):
    """No last-handled state. kopf builds an object's "essence" (a deep copy of the whole
    body) on every watch event for its change handlers, daemons and timers. This operator
    registers watch-event handlers only, which never see it: building it was ~7% of the
    operator's CPU at 300 certificates. A change handler added later needs kopf's
    AnnotationsDiffBaseStorage back."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def _kopf_settings(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Only what we post explicitly becomes an Event, not every INFO log line of a handler.
    settings.posting.level = logging.WARNING
    # Our CRDs have structural status schemas: keep kopf's bookkeeping in annotations.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="certdepot.io")
    settings.persistence.diffbase_storage = WatchOnlyDiffBase()
    settings.watching.server_timeout = 120
    # Only certdepot's own Secrets, filtered by the API server: the handler wants no others,
    # and a cluster's other Secrets (thousands, often large) would each cost a watch event
    # (decoding, kopf's bookkeeping) for nothing.
    settings.watching.label_selectors["", "v1", "secrets"] = MANAGED_SECRETS_SELECTOR
    # kopf keeps a worker task and queue per object until no event came for this long
    # (default 5 s): in a rollout of N objects nearly all N at once. Our handlers only hand
    # the object to its loop, so a worker is cheap to start again for a later event.
    settings.batching.idle_timeout = 1.0
    settings.networking.request_timeout = 60


def _configure_logging(options: RunOptions) -> None:
    kopf.configure(
        verbose=options.verbose,
        log_format=kopf.LogFormat.JSON if options.log_json else kopf.LogFormat.FULL,
    )
    # One line per HTTP request to a repository is noise; the metrics count them.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not options.verbose:
        # kopf logs "Handler ... succeeded." at INFO for every watch event of every object
        # (three or more per certificate); warnings and errors still show.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def _assemble(options: RunOptions, kube: RealKubeApi) -> tuple[Runtime, AcmeGateway, RenewalWatch]:
    """The reconcilers' dependencies (gateway, settings, metrics, the ARI poll) as kopf's memo,
    and the two of them to close on the way out."""
    metrics = Metrics()
    gateway = AcmeGateway(
        metrics,
        download_reuse=options.download_reuse_seconds,
        # One ARI answer serves every CertificateDownload of a certificate for a moment:
        # at most a quarter of the interval each asks at, so a changed window is seen soon.
        renewal_info_reuse=min(5.0, options.renewal_info_seconds / 4),
        cluster_id=options.cluster_id,
    )
    settings = Settings(
        cluster_resource_namespace=options.cluster_resource_namespace,
        recheck=timedelta(seconds=options.recheck_seconds),
        renewal_info_interval=timedelta(seconds=options.renewal_info_seconds),
        backoff=BackoffPolicy(options.backoff_base_seconds, options.backoff_cap_seconds),
    )
    deps = Deps(kube=kube, gateway=gateway, settings=settings, events=post_event, metrics=metrics)
    runtime = Runtime(deps, step_slots=asyncio.Semaphore(options.max_concurrent_steps))
    renewals = deps.renewals = RenewalWatch(
        gateway.renewal_window,
        runtime.wakeups.wake,
        deps.clock,
        floor=options.renewal_info_min_seconds,
        ceiling=options.renewal_info_seconds,
    )
    return runtime, gateway, renewals


@dataclass
class _Service:
    """What runs beside kopf: health and metrics listeners, the API probe, the Lease."""

    options: RunOptions
    kube: RealKubeApi
    metrics: Metrics
    stop_flag: asyncio.Event = field(default_factory=asyncio.Event)
    ready_flag: asyncio.Event = field(default_factory=asyncio.Event)
    # Waiting for the Lease (readiness counts a standby replica as ready).
    standby: bool = False
    elector: LeaseElector | None = None

    def __post_init__(self) -> None:
        self.api = ApiReachability(self.kube.version)
        self.standby = self.options.leader_election
        self._health: web.AppRunner | None = None
        self._metrics: web.AppRunner | None = None
        self._api_watch: asyncio.Task[None] | None = None

    def is_ready(self) -> bool:
        # A standby replica is ready too, but only while it could take over: both need
        # the API server.
        started = self.standby or self.ready_flag.is_set()
        return started and self.api.reachable() and not self.stop_flag.is_set()

    async def start(self) -> None:
        options = self.options
        self._health = await start_health(
            options.bind, options.health_port, self.is_ready, lambda: True
        )
        self._metrics = await start_metrics(
            options.bind, options.metrics_port, self.metrics.registry
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self.stop_flag.set)
        self._api_watch = asyncio.create_task(self.api.run())

    async def lead(self) -> bool:
        """Wait for the Lease (with --peering); False when told to stop first."""
        if self.options.leader_election:
            options = self.options
            self.elector = LeaseElector(
                self.kube._client,
                namespace=options.lease_namespace,
                name=options.lease_name,
                identity=options.identity or f"{socket.gethostname()}-{os.getpid()}",
                duration_seconds=options.lease_seconds,
            )
            acquire = asyncio.create_task(self.elector.acquire())
            stopper = asyncio.create_task(self.stop_flag.wait())
            await asyncio.wait({acquire, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not acquire.done():
                acquire.cancel()
                return False
        self.standby = False
        self.metrics.leader.set(1)
        return True

    async def stop(self) -> None:
        if self._api_watch is not None:
            self._api_watch.cancel()
        self.metrics.leader.set(0)
        if self.elector is not None:
            await asyncio.to_thread(self.elector.release)
        for server in (self._health, self._metrics):
            if server is not None:
                await server.cleanup()


def _registry(options: RunOptions, stop_flag: asyncio.Event) -> kopf.OperatorRegistry:
    registry = kopf.get_default_registry()
    kopf.on.startup(registry=registry)(_kopf_settings)

    # kopf replaces our SIGTERM/SIGINT handlers with its own, so on a signal stop_flag
    # would stay unset until kopf.operator() returns. Its "stop-flag waiter" task then
    # counts as hung and kopf waits 5 s for it. Cleanup handlers run before kopf looks
    # for hung tasks: setting the flag there lets that waiter finish at once.
    def _raise_stop_flag(**_: Any) -> None:
        stop_flag.set()

    kopf.on.cleanup(registry=registry, id="certdepot-stop-flag")(_raise_stop_flag)
    if options.ingress_shim:
        handlers.register_ingress_shim(registry)
    return registry


async def _operate(service: _Service, runtime: Runtime) -> int:
    """Run kopf until it stops or leadership is lost (exit code 1)."""
    options, stop_flag = service.options, service.stop_flag
    operator = asyncio.create_task(
        kopf.operator(
            registry=_registry(options, stop_flag),
            standalone=True,
            clusterwide=not options.namespaces,
            namespaces=options.namespaces,
            memo=runtime,
            stop_flag=stop_flag,
            ready_flag=service.ready_flag,
        )
    )
    waiters: set[asyncio.Task[Any]] = {operator}
    holder = asyncio.create_task(service.elector.hold()) if service.elector else None
    if holder:
        waiters.add(holder)
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    exit_code = 0
    if holder is not None and holder.done():
        log.error("leadership lost; stopping so that only one replica acts")
        exit_code = 1
    stop_flag.set()
    with contextlib.suppress(asyncio.CancelledError):
        await operator
    if holder is not None and not holder.done():
        holder.cancel()
    return exit_code


async def run(options: RunOptions) -> int:
    _configure_logging(options)
    if options.kubeconfig:
        os.environ["KUBECONFIG"] = options.kubeconfig  # kopf's own login reads it too
    kube = RealKubeApi.from_environment(options.kubeconfig)
    runtime, gateway, renewals = _assemble(options, kube)
    service = _Service(options, kube, runtime.deps.metrics)
    await service.start()
    try:
        if not await service.lead():
            return 0
        return await _operate(service, runtime)
    finally:
        await service.stop()
        await renewals.aclose()
        await gateway.aclose()
