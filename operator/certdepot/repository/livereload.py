"""The configuration in force, replaced without a restart.

Two sources feed it: the YAML file (watched here) and, when ``kubernetes.resources`` is
on, RepositoryCertificate / RepositoryTenant resources (kubewatch.py, merged by
resources.py). Whatever changes, the result is one new immutable :class:`Config` that
:func:`install` puts in ``repo.config`` with one assignment; every request and renewal pass
reads that attribute afresh (grants.py asks policy at every step where a key or a
certificate leaves), so

- a removed grant is refused at the next request,
- a newly declared certificate is obtained at once (the renewal loop is woken),
- a changed issuer applies to the next renewal (renewal.py reads ``cfg.issuer`` each time).

An invalid new file changes nothing: the error is logged with the file, key path and
problem, counted in ``certdepot_repository_config_reloads_total{source="file",
result="rejected"}``, and the configuration in force stays.

Settings a running server cannot change (listeners, storage, key encryption key, base
URL, limits, the Kubernetes connection, the reload interval itself) keep their value from
the start; a change to them is logged as needing a restart.

The file is polled (modification time, size, then a SHA-256 of the content) rather than
watched with inotify: a ConfigMap mounted in a pod is updated by swapping a symlink of its
parent directory, which a watch on the file never sees, editors replace files by rename,
and network file systems have no inotify at all. Polling costs one ``stat`` per interval;
the hash makes a touched but unchanged file a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from certdepot.repository import configfile
from certdepot.repository.bootstrap import build_issuers
from certdepot.repository.config import Config, ConfigError, config_from_bytes
from certdepot.repository.issuers import Issuer
from certdepot.repository.state import Repo

log = logging.getLogger("certdepot.repository.livereload")

#: Fields only read at start: a new value needs a restart.
RESTART_ONLY = ("base_url", "listeners", "storage", "key_encryption_key", "limits",
                "kubernetes", "config_reload_interval", "max_body_bytes", "config_max_bytes",
                "workers")


def keep_restart_only(running: Config, new: Config) -> Config:
    """``new`` with the start-only settings of ``running`` (warning about each change)."""
    changed = [f for f in RESTART_ONLY if getattr(running, f) != getattr(new, f)]
    for f in changed:
        log.warning("configuration: %s changed; it takes effect at the next restart",
                     Config.model_fields[f].alias or f)
    if not changed:
        return new
    return new.model_copy(update={f: getattr(running, f) for f in changed})


def _issuers_for(repo: Repo, new: Config) -> dict[str, Issuer]:
    """The issuers of ``new``: unchanged definitions keep their running object (and its
    upstream account and connections); new or changed ones are built."""
    old_cfgs = {i.name: i for i in repo.config.issuers}
    fresh = [i for i in new.issuers if old_cfgs.get(i.name) != i or i.name not in repo.issuers]
    built = build_issuers(new.model_copy(update={"issuers": fresh}), repo.store, repo.vault,
                          repo.urls)
    return {i.name: built.get(i.name) or repo.issuers[i.name] for i in new.issuers}


def install(repo: Repo, new: Config, source: str) -> None:
    """Make ``new`` the configuration in force (call on the event loop's thread)."""
    new = keep_restart_only(repo.config, new)
    issuers = _issuers_for(repo, new)
    # Issuers first, as a superset, so no request sees a certificate whose issuer is not
    # there yet; then the configuration; then the issuers of the new one only.
    repo.issuers = {**repo.issuers, **issuers}
    repo.config = new
    retired = [i for n, i in repo.issuers.items() if issuers.get(n) is not i]
    repo.issuers = issuers
    for issuer in retired:
        repo.spawn(issuer.close(), f"close issuer {issuer.name}")
    repo.config_changed.set()
    repo.count_reload(source, "applied")
    log.info("configuration from %s applied: %d certificate(s), %d tenant(s), %d issuer(s)",
             source, len(new.certificates), len(new.tenants), len(new.issuers))


class LiveConfig:
    """The sources of the configuration in force: the file's last valid content, and a
    merge step that adds what the Kubernetes resources declare (identity without them)."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.file = repo.config
        self.merge: Callable[[Config], Config] = lambda file: file

    def file_changed(self, new: Config) -> None:
        self.file = new
        self.apply("file")

    def apply(self, source: str) -> None:
        install(self.repo, self.merge(self.file), source)


def fingerprint(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class FileWatcher:
    """Polls the configuration file; hands each new valid content to ``on_change``.

    Each change is read once, within bounds (configfile.py: a regular file of at most the
    running ``configMaxBytes``, UTF-8, YAML aliases bounded), and parsed from those bytes:
    a file swapped between the hash and the parse cannot slip past either."""

    def __init__(self, repo: Repo, path: Path, on_change: Callable[[Config], None]) -> None:
        self.repo = repo
        self.path = path
        self.on_change = on_change
        self.seen = fingerprint(path)
        self.hash = self._digest()

    def _read(self) -> bytes:
        return configfile.read_bytes(self.path, self.repo.config.config_max_bytes)

    def _digest(self) -> str | None:
        try:
            return hashlib.sha256(self._read()).hexdigest()
        except configfile.ConfigFileError:
            return None

    def _rejected(self, exc: Exception) -> bool:
        self.repo.count_reload("file", "rejected")
        log.error("configuration file changed but is not usable; the previous "
                  "configuration stays in force: %s", exc)
        return False

    async def check(self) -> bool:
        """One poll; True when a new valid configuration was handed over."""
        now = fingerprint(self.path)
        if now == self.seen:
            return False
        self.seen = now
        try:
            raw = await asyncio.to_thread(self._read)
        except configfile.ConfigFileError as exc:
            self.hash = None  # whatever comes next is new
            return self._rejected(exc)
        content = hashlib.sha256(raw).hexdigest()
        if content == self.hash:
            return False
        self.hash = content
        try:
            new = await asyncio.to_thread(config_from_bytes, raw, self.path)
        except ConfigError as exc:
            return self._rejected(exc)
        self.on_change(new)
        return True

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("configuration reload failed; the previous one stays in force")


def _watch_file(repo: Repo, live: LiveConfig) -> Callable[[], Awaitable[None]] | None:
    path = repo.config.source
    interval = repo.config.config_reload_interval.total_seconds()
    if path is None or interval <= 0:
        return None
    watcher = FileWatcher(repo, path, live.file_changed)
    task = asyncio.get_running_loop().create_task(watcher.run(interval), name="config-reload")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop


def start_sources(repo: Repo) -> list[Callable[[], Awaitable[None]]]:
    """Start watching the file the configuration came from (unless
    ``configReloadInterval: 0``) and, when ``kubernetes.resources`` is on, the resources;
    returns their stoppers."""
    live = LiveConfig(repo)
    stoppers = []
    if (stop := _watch_file(repo, live)) is not None:
        stoppers.append(stop)
    if repo.config.kubernetes.resources:
        # Imported only here: installs outside Kubernetes never load the client.
        from certdepot.repository import kubewatch

        stop_watch, live.merge = kubewatch.start(repo, lambda: live.file, live.apply)
        stoppers.append(stop_watch)
    return stoppers
