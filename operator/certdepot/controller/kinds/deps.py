"""Everything a reconciler needs from the outside world, passed in explicitly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from certdepot.controller.core.settings import Clock, Settings, system_clock
from certdepot.controller.gateway.model import RenewalWindow, RepositoryGateway
from certdepot.controller.gateway.sharing import RenewalWatch
from certdepot.controller.kube.api import KubeApi
from certdepot.controller.kube.lookup import WatchCache
from certdepot.controller.ops.metrics import Metrics


class EventSink(Protocol):
    def __call__(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None: ...


def no_events(obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    return None


@dataclass(slots=True)  # one per object: no __dict__
class Memory:
    """What the operator remembers about one object between steps (lost on restart, harmless)."""

    window: RenewalWindow | None = None
    window_checked_at: datetime | None = None
    window_serial: str | None = None  # the certificate the last check (or download) was about
    last_warning: str = ""
    status: dict[str, Any] = field(default_factory=dict)  # the status we last wrote


@dataclass
class Deps:
    kube: KubeApi
    gateway: RepositoryGateway
    settings: Settings = field(default_factory=Settings)
    clock: Clock = system_clock
    events: EventSink = no_events
    metrics: Metrics = field(default_factory=Metrics)
    memories: dict[str, Memory] = field(default_factory=dict)
    # Repository objects and namespace labels from the watches (GET on a miss).
    objects: WatchCache = field(default_factory=WatchCache)
    # One ARI poll per certificate on the repository's schedule (None: each object asks
    # on its own, every settings.renewal_info_interval; unit tests).
    renewals: RenewalWatch | None = None

    def memory(self, uid: str) -> Memory:
        return self.memories.setdefault(uid, Memory())


@dataclass(frozen=True)
class Step:
    """The result of one reconcile step: the status to write and when to look again."""

    status: dict[str, Any]
    delay: float
