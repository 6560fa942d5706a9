"""``--no-ingress-shim``: the Ingress handler is registered only when the shim is wanted."""

from __future__ import annotations

import kopf
import pytest
from click.testing import CliRunner

from certdepot.controller import handlers, runner
from certdepot.controller.cli import operator_group
from certdepot.controller.runner import RunOptions


def _watched_by(registry: kopf.OperatorRegistry) -> list[object]:
    return [h.fn for h in registry._watching.get_all_handlers()]


def test_importing_the_handlers_does_not_watch_ingresses() -> None:
    watched = _watched_by(kopf.get_default_registry())
    assert handlers.download_event in watched
    assert handlers.ingress_event not in watched


def test_register_ingress_shim_adds_the_ingress_handler() -> None:
    registry = kopf.OperatorRegistry()
    handlers.register_ingress_shim(registry)
    assert _watched_by(registry) == [handlers.ingress_event]


@pytest.mark.parametrize(("args", "expected"), [([], True), (["--no-ingress-shim"], False)])
def test_cli_flag_reaches_the_run_options(
    monkeypatch: pytest.MonkeyPatch, args: list[str], expected: bool
) -> None:
    seen: list[RunOptions] = []

    async def fake_run(options: RunOptions) -> int:
        seen.append(options)
        return 0

    monkeypatch.setattr(runner, "run", fake_run)
    result = CliRunner().invoke(operator_group, ["run", "--standalone", *args])
    assert result.exit_code == 0, result.output
    assert [o.ingress_shim for o in seen] == [expected]
