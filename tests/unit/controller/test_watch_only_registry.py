"""The operator registers watch-event handlers only.

runner.WatchOnlyDiffBase keeps no last-handled state, which is only right while no kopf
change handler (on.create/update/resume/delete/field), daemon or timer exists: those read
that state. This fails the day one is added without kopf's diff-base storage back.
"""

from __future__ import annotations

import kopf

from certdepot.controller import handlers, runner


def test_only_watch_handlers_are_registered() -> None:
    registry = kopf.get_default_registry()
    handlers.register_ingress_shim(registry)
    assert isinstance(runner.WatchOnlyDiffBase(), kopf.DiffBaseStorage)
    watching = list(registry._watching.get_all_handlers())
    assert len(watching) >= 7, watching  # four kinds, namespaces, Secrets, Ingresses
    changing = list(registry._changing.get_all_handlers())
    spawning = list(registry._spawning.get_all_handlers())
    assert changing == [], "a change handler needs kopf.AnnotationsDiffBaseStorage back"
    assert spawning == [], "a daemon or timer needs kopf.AnnotationsDiffBaseStorage back"
