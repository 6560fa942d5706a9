"""Shared helpers for the robustness suite.

The in-process repository is built with the repository owner's test kit
(tests/unit/repository/repository_testkit.py) and the real process with the integration
harness (tests/integration/repository_harness.py); both are imported, not copied.
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for sub in ("unit/repository", "integration"):
    p = str(_TESTS / sub)
    if p not in sys.path:
        sys.path.insert(0, p)
