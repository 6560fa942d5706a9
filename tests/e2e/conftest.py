"""The kind end-to-end tests are opt-in: CERTDEPOT_KIND=1.

Without it they are deselected (not collected as skipped), so `make test` neither runs them
nor counts them; pytest reports them as "deselected".
"""

from __future__ import annotations

import os

import pytest

OPT_IN = "CERTDEPOT_KIND"


def kind_opted_in() -> bool:
    return os.environ.get(OPT_IN) == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if kind_opted_in():
        return
    deselected = [item for item in items if item.get_closest_marker("kind")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("kind")]
