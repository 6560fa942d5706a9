"""The repository's shared state: what every route and background task needs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from certdepot.repository.certstore import KeyCache
from certdepot.repository.config import Config, Tenant
from certdepot.repository.issuers import Issuer
from certdepot.repository.keyvault import KeyVault
from certdepot.repository.store import Store
from certdepot.repository.urls import Urls

log = logging.getLogger("certdepot.repository")


@dataclass
class Repo:
    # The configuration in force: an immutable snapshot, replaced as a whole by
    # livereload.install (file changes, Kubernetes resources) and read afresh by every
    # request and renewal pass. Read it once per decision.
    config: Config
    store: Store
    vault: KeyVault
    issuers: dict[str, Issuer]
    urls: Urls
    replica_id: str = field(default_factory=lambda: secrets.token_hex(6))
    clock: Callable[[], float] = time.time
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    # The event loop serving requests; handlers run their blocking store work in worker
    # threads and hand background work back to this loop.
    loop: asyncio.AbstractEventLoop | None = None
    # Counts one policy refusal (step, reason): grants.py calls it, create_app points it
    # at the Prometheus counter.
    count_refusal: Callable[[str, str], None] = field(default=lambda step, reason: None)
    # Counts one configuration reload (source "file" or "kubernetes", result "applied" or
    # "rejected"): livereload.py calls it, create_app points it at the Prometheus counter.
    count_reload: Callable[[str, str], None] = field(default=lambda source, result: None)
    # Set when a new configuration was installed (livereload.py): the renewal loop wakes
    # at once, so a newly declared certificate is obtained without waiting a full interval.
    config_changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Managed certificates' keys between downloads (certstore.KeyCache).
    key_cache: KeyCache = field(default_factory=KeyCache)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run work in the background, keeping a reference so it is not collected and
        logging (not losing) its failure."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("background task %s failed: %s", name, t.exception())

        task.add_done_callback(done)
        return task

    def spawn_from_thread(self, coro: Coroutine[Any, Any, Any], name: str
                          ) -> concurrent.futures.Future[Any]:
        """``spawn`` for request code (a worker thread, or the loop itself when the store
        runs requests inline); the future ends with the task. Inside a store unit the task
        starts once the unit committed: it must see what the request wrote (the challenge
        now processing), and a rolled-back request starts nothing."""
        loop = self.loop
        assert loop is not None, "no event loop recorded"
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()

        async def tracked() -> Any:
            return await self.spawn(coro, name)

        def copy(done: concurrent.futures.Future[Any]) -> None:
            if done.cancelled():
                result.cancel()
            elif (exc := done.exception()) is not None:
                result.set_exception(exc)
            else:
                result.set_result(done.result())

        def start() -> None:
            asyncio.run_coroutine_threadsafe(tracked(), loop).add_done_callback(copy)

        self.store.after_commit(start)
        return result

    def start_and_wait(self, coro: Coroutine[Any, Any, Any], name: str, wait: float) -> None:
        """From a worker thread: start background work and give it ``wait`` seconds to
        finish (fast issuers complete before the response; slow ones keep running)."""
        # Waiting here on the loop's own thread would wait forever.
        if self.loop is not None and _on_loop(self.loop):
            raise RuntimeError("start_and_wait called on the event loop's thread")
        # The work needs the store from another thread: the request's transaction must be
        # committed and the store free before we wait for it.
        self.store.end_unit()
        future = self.spawn_from_thread(coro, name)
        with contextlib.suppress(concurrent.futures.TimeoutError, Exception):
            future.result(timeout=wait)

    def tenant(self, name: str | None) -> Tenant | None:
        return self.config.tenant(name)

    def new_nonce(self) -> str:
        return self.store.new_nonce(self.config.nonce_lifetime.total_seconds())


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
