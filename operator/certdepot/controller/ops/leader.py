"""One active replica: a coordination.k8s.io Lease, as controller-runtime does it.

Replicas that do not hold the Lease wait; the holder renews it and the operator exits
(to be restarted by its Deployment) as soon as it cannot prove it still holds it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from certdepot.acme.timefmt import parse_rfc3339
from certdepot.controller.core.settings import Clock, system_clock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseView:
    holder: str
    renew_time: datetime | None
    duration_seconds: int
    transitions: int = 0


def lease_action(lease: LeaseView | None, identity: str, now: datetime) -> str:
    """ "create" (no Lease), "renew" (ours), "take" (expired or released), or "wait"."""
    if lease is None:
        return "create"
    if lease.holder == identity:
        return "renew"
    if not lease.holder or lease.renew_time is None:
        return "take"
    if now >= lease.renew_time + timedelta(seconds=lease.duration_seconds):
        return "take"
    return "wait"


class LeaseElector:
    def __init__(
        self,
        api_client: Any,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration_seconds: int = 15,
        clock: Clock = system_clock,
    ) -> None:
        from kubernetes import client

        self._api = client.CoordinationV1Api(api_client)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration = duration_seconds
        self.clock = clock

    def _read(self) -> tuple[Any, LeaseView | None]:
        from kubernetes.client.exceptions import ApiException

        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None, None
            raise
        spec = lease.spec
        if spec is None:
            return lease, LeaseView("", None, self.duration)
        renew: Any = spec.renew_time
        if isinstance(renew, str):
            renew = parse_rfc3339(renew)
        return lease, LeaseView(
            spec.holder_identity or "",
            renew,
            spec.lease_duration_seconds or self.duration,
            spec.lease_transitions or 0,
        )

    def try_acquire(self) -> bool:
        """One attempt (blocking I/O); True when we hold the Lease afterwards."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        now = self.clock()
        lease, view = self._read()
        action = lease_action(view, self.identity, now)
        if action == "wait":
            return False
        spec = client.V1LeaseSpec(
            holder_identity=self.identity, lease_duration_seconds=self.duration, renew_time=now
        )
        try:
            if action == "create":
                spec.acquire_time = now
                spec.lease_transitions = 0
                body = client.V1Lease(
                    metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                    spec=spec,
                )
                self._api.create_namespaced_lease(self.namespace, body)
            else:
                assert view is not None
                spec.acquire_time = (
                    lease.spec.acquire_time if action == "renew" and lease.spec else now
                )
                spec.lease_transitions = view.transitions + (1 if action == "take" else 0)
                lease.spec = (
                    spec  # metadata keeps resourceVersion: a concurrent taker loses with 409
                )
                self._api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            if exc.status in (409, 422):
                return False
            raise
        return True

    async def acquire(self) -> None:
        while True:
            try:
                if await asyncio.to_thread(self.try_acquire):
                    log.info("acquired lease %s/%s as %s", self.namespace, self.name, self.identity)
                    return
            except Exception as exc:  # API hiccup: keep trying
                log.warning("lease %s/%s: %s", self.namespace, self.name, type(exc).__name__)
            await asyncio.sleep(max(1.0, self.duration / 3))

    async def hold(self) -> None:
        """Renew until renewal fails for a whole lease duration; then return (leadership lost)."""
        last_ok = self.clock()
        while True:
            await asyncio.sleep(max(1.0, self.duration / 3))
            try:
                if await asyncio.to_thread(self.try_acquire):
                    last_ok = self.clock()
                    continue
            except Exception as exc:
                log.warning("lease renewal failed: %s", type(exc).__name__)
            if self.clock() - last_ok >= timedelta(seconds=self.duration):
                log.error("lost lease %s/%s", self.namespace, self.name)
                return

    def release(self) -> None:
        """Give the Lease up on clean shutdown so a standby takes over at once."""
        try:
            lease, view = self._read()
            if (
                lease is not None
                and lease.spec
                and view is not None
                and view.holder == self.identity
            ):
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                self._api.replace_namespaced_lease(self.name, self.namespace, lease)
        except Exception as exc:  # best effort
            log.warning("lease release failed: %s", type(exc).__name__)
