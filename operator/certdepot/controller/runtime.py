"""The operator's shared state, handed to kopf handlers as ``memo``."""

from __future__ import annotations

from dataclasses import dataclass, field

from certdepot.controller.deps import Deps
from certdepot.controller.loop import Wakeups


@dataclass
class Runtime:
    deps: Deps
    wakeups: Wakeups = field(default_factory=Wakeups)
    ready: bool = False
