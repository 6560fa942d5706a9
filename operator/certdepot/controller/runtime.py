"""The operator's shared state, handed to kopf handlers as ``memo``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from certdepot.controller.deps import Deps
from certdepot.controller.loop import Wakeups


@dataclass
class Runtime:
    deps: Deps
    wakeups: Wakeups = field(default_factory=Wakeups)
    # Shared by every per-object copy kopf makes of the memo (the dict itself is shared).
    shared: dict[str, Any] = field(default_factory=dict)
