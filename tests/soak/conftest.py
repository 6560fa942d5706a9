"""The bounded soak is opt-in: collected only with CERTDEPOT_SOAK=1 (``make soak``), so the
default ``make test`` neither runs nor skips it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for sub in ("unit/repository", "integration", "robustness"):
    p = str(_TESTS / sub)
    if p not in sys.path:
        sys.path.insert(0, p)

collect_ignore_glob = [] if os.environ.get("CERTDEPOT_SOAK") == "1" else ["test_*.py"]
