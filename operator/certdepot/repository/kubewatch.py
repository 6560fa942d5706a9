"""RepositoryCertificate and RepositoryTenant resources, watched from the repository.

With ``kubernetes.resources: true`` every replica lists both kinds in its namespace, merges
them with the file (resources.py) and installs the result (livereload.py). A watch on each
kind wakes the loop as soon as something changes; a full list every
``kubernetes.resyncInterval`` also refreshes what the statuses show (serial, notAfter,
consumers, accounts bound), which changes without any resource changing.

One replica at a time (a store lease) writes what the cluster sees: the statuses, the
tenants' EAB Secrets (eabsecrets.py) and their rotations. A removed RepositoryTenant loses
its policy at once; its Secret and its store entry stay (re-creating the resource brings the
same credentials back; delete the Secret by hand to be rid of it).

The official ``kubernetes`` client rather than kopf: the repository needs a list, two
watches and a few writes inside the server's own event loop and lifespan, while kopf is a
framework that wants to own the process (its own loop, signal handling, logging, peering
and finalizers); and certdepot.controller, which wraps kopf, must not be imported here
(the repository and the operator meet only through acme). Its calls block, so they run in
worker threads, and each watch in a daemon thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from certdepot.acme import timefmt
from certdepot.repository import certstore, consumers, eabsecrets, leases, resources
from certdepot.repository import store as tables
from certdepot.repository.config import Config
from certdepot.repository.processconfig import KubernetesResources
from certdepot.repository.resources import CERTIFICATES, GROUP, TENANTS, VERSION, Declared
from certdepot.repository.state import Repo

log = logging.getLogger("certdepot.repository.kubewatch")

SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
LEASE = "kubernetes-status"


def api_client(cfg: KubernetesResources) -> Any:
    # The client's configuration loaders carry no annotations.
    kconfig: Any = kubernetes.config
    if cfg.kubeconfig is not None:
        return kconfig.new_client_from_config(config_file=str(cfg.kubeconfig))
    try:
        kconfig.load_incluster_config()
        return kubernetes.client.ApiClient()
    except kconfig.ConfigException:
        return kconfig.new_client_from_config()


def namespace_of(cfg: KubernetesResources) -> str:
    if cfg.namespace:
        return cfg.namespace
    try:
        return SA_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def describe(exc: Exception) -> str:
    """An error for the log: the API server's status and reason, never its response body
    (a refused Secret write could echo what it was sent)."""
    if isinstance(exc, ApiException):
        return f"API server answered {exc.status} {exc.reason}"
    return type(exc).__name__


def _now() -> str:
    return timefmt.rfc3339(dt.datetime.now(dt.UTC))


def ready(old: dict[str, Any], ok: bool, reason: str, message: str, generation: int
          ) -> list[dict[str, Any]]:
    """The Ready condition, keeping its lastTransitionTime while its status holds."""
    status = "True" if ok else "False"
    prev: dict[str, Any] = next(
        (c for c in old.get("conditions") or [] if c.get("type") == "Ready"), {})
    since = prev.get("lastTransitionTime") if prev.get("status") == status else None
    return [{"type": "Ready", "status": status, "reason": reason, "message": message[:1000],
             "observedGeneration": generation, "lastTransitionTime": since or _now()}]


#: Objects per list request: the list is read in pages, so a namespace holding more than
#: ``kubernetes.maxResources`` objects is never loaded whole.
PAGE = 500


def list_bounded(custom: Any, namespace: str, plural: str, cap: int) -> list[dict[str, Any]]:
    """The first ``cap`` objects of ``plural`` (by name, the API server's order), read page
    by page; more than ``cap`` is logged and the rest left out."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, limit=min(PAGE, cap + 1 - len(items)),
            **({"_continue": token} if token else {}))
        items.extend(page.get("items") or [])
        token = (page.get("metadata") or {}).get("continue") or None
        if len(items) > cap:
            log.warning("more than kubernetes.maxResources (%d) %s in %s: only the first %d "
                        "(by name) apply", cap, plural, namespace, cap)
            return items[:cap]
        if not token:
            return items


def _condition(obj: dict[str, Any], status: dict[str, Any], ok: bool, reason: str,
               message: str) -> dict[str, Any]:
    """``status`` with its Ready condition (its time kept while the verdict stays)."""
    status["conditions"] = ready(obj.get("status") or {}, ok, reason, message,
                                 status["observedGeneration"])
    return status


def _opened(obj: dict[str, Any], verdict: resources.Verdict) -> tuple[dict[str, Any], bool]:
    """A resource's new status, and whether the merge accepted it (if not, the status is
    complete: Ready=False with the merge's reason)."""
    status: dict[str, Any] = {"observedGeneration": int(obj["metadata"].get("generation") or 0)}
    if verdict.accepted:
        return status, True
    return _condition(obj, status, False, verdict.reason, verdict.message), False


def read_declared(cfg: KubernetesResources) -> tuple[list[Declared], list[Declared]]:
    """One list of both kinds (for the CLI: resourcecli.py)."""
    with api_client(cfg) as client:
        custom: Any = kubernetes.client.CustomObjectsApi(client)
        found = [[Declared(str(o["metadata"]["name"]), o.get("spec") or {})
                  for o in list_bounded(custom, namespace_of(cfg), plural, cfg.max_resources)]
                 for plural in (CERTIFICATES, TENANTS)]
    return found[0], found[1]


class KubeWatch:
    def __init__(self, repo: Repo, file: Callable[[], Config], apply: Callable[[str], None],
                 client: Any, namespace: str) -> None:
        self.repo = repo
        # The file's configuration in force, and how to install a new merge (livereload).
        self.file = file
        self.apply = apply
        self.namespace = namespace
        # Any: the generated API takes and returns plain dicts for custom objects, and its
        # annotations ask for model objects where dicts work as well.
        self.custom: Any = kubernetes.client.CustomObjectsApi(client)
        self.core: Any = kubernetes.client.CoreV1Api(client)
        self.objects: dict[str, list[dict[str, Any]]] = {CERTIFICATES: [], TENANTS: []}
        self.wake = asyncio.Event()
        self.stopping = threading.Event()
        self._cache: tuple[Config, str, resources.Merged] | None = None

    # --- reading -------------------------------------------------------------------------

    def declared(self, plural: str) -> list[Declared]:
        return [Declared(str(o["metadata"]["name"]), o.get("spec") or {},
                         int(o["metadata"].get("generation") or 0))
                for o in self.objects[plural]]

    def merged(self, file: Config) -> resources.Merged:
        """The merge of ``file`` with the resources listed last, computed again only when
        either changed (a resync or a status write changes neither): merging validates
        every resource against the rest, too much to repeat every few seconds for
        thousands of them."""
        key = json.dumps([[(d.name, d.spec) for d in self.declared(p)]
                          for p in (CERTIFICATES, TENANTS)], sort_keys=True, default=str)
        cached = self._cache
        if cached is None or cached[0] is not file or cached[1] != key:
            cached = self._cache = (file, key, resources.merge(
                file, self.declared(CERTIFICATES), self.declared(TENANTS)))
        return cached[2]

    def merge(self, file: Config) -> Config:
        return self.merged(file).config

    def _list(self) -> dict[str, list[dict[str, Any]]]:
        cap = self.repo.config.kubernetes.max_resources
        return {plural: list_bounded(self.custom, self.namespace, plural, cap)
                for plural in (CERTIFICATES, TENANTS)}

    def watch(self, plural: str, loop: asyncio.AbstractEventLoop, timeout: int) -> None:
        """Thread body: wake the loop at every event of ``plural`` until stopped."""
        while not self.stopping.is_set():
            try:
                watcher: Any = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
                stream = watcher.stream(
                    self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                    plural, timeout_seconds=timeout)
                for _ in stream:
                    loop.call_soon_threadsafe(self.wake.set)
                    if self.stopping.is_set():
                        return
            except Exception as exc:  # the API server restarting, a network hiccup
                log.warning("watch of %s failed (%s); retrying", plural, type(exc).__name__)
                self.stopping.wait(5)

    # --- one pass --------------------------------------------------------------------------

    async def reconcile(self) -> None:
        self.objects = await asyncio.to_thread(self._list)
        merged = self.merged(self.file())
        cfg = self.repo.config
        if (merged.config.certificates, merged.config.tenants) != (cfg.certificates,
                                                                   cfg.tenants):
            self.apply("kubernetes")
        async with leases.held(self.repo, LEASE) as mine:
            if mine:
                await asyncio.to_thread(self.write_cluster_state, merged)

    def write_cluster_state(self, merged: resources.Merged) -> None:
        for plural, verdicts, status_of in (
                (CERTIFICATES, merged.certificates, self.certificate_status),
                (TENANTS, merged.tenants, self.tenant_status)):
            for obj in self.objects[plural]:
                name = str(obj["metadata"]["name"])
                try:
                    self._status(plural, obj, status_of(obj, verdicts[name]))
                except Exception as exc:  # one resource must not hold up the others
                    log.warning("%s %s/%s: status not written (%s)", plural,
                                self.namespace, name, describe(exc))

    def _status(self, plural: str, obj: dict[str, Any], status: dict[str, Any]) -> None:
        old = obj.get("status") or {}
        if status == old:
            return  # nothing new: no write, and no watch event that would wake us again
        verdict = status["conditions"][0]
        if verdict["reason"] in (resources.CONFLICT, resources.INVALID) and \
                old.get("conditions") != status["conditions"]:
            self.repo.count_reload("kubernetes", "rejected")
            log.error("%s %s/%s rejected (%s): %s", plural, self.namespace,
                      obj["metadata"]["name"], verdict["reason"], verdict["message"])
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, plural, obj["metadata"]["name"],
                {"status": status})
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile
                raise

    # --- certificates ------------------------------------------------------------------------

    def certificate_status(self, obj: dict[str, Any], verdict: resources.Verdict
                           ) -> dict[str, Any]:
        status, accepted = _opened(obj, verdict)
        if not accepted:
            return status
        name = str(obj["metadata"]["name"])
        store = self.repo.store
        cur = certstore.current_managed(store, name)
        total, _ = consumers.counts(self.repo, name, cur["id"] if cur else None)
        status["consumers"] = total
        if cur is None:
            state = store.get(tables.managed, name) or {}
            why = state.get("last_error") or "the repository is obtaining it"
            return _condition(obj, status, False, "Pending", str(why))
        status["serial"] = str(cur["serial"])
        status["notAfter"] = timefmt.rfc3339(float(cur["not_after"]))
        return _condition(obj, status, True, "Issued",
                          f"serial {cur['serial']} valid until {status['notAfter']}")

    # --- tenants -----------------------------------------------------------------------------

    def tenant_status(self, obj: dict[str, Any], verdict: resources.Verdict) -> dict[str, Any]:
        status, accepted = _opened(obj, verdict)
        if not accepted:
            return status
        name = str(obj["metadata"]["name"])
        spec = obj.get("spec") or {}
        secret, wanted = eabsecrets.secret_name(name, spec), eabsecrets.rotation_generation(spec)
        existing = self._read_secret(secret)
        if existing is not None and not eabsecrets.ours(existing, name):
            # Never overwrite a Secret the repository did not write for this tenant: a
            # tenant resource must not be a way to replace another Secret of the namespace
            # (the key-encryption key's, another tenant's).
            return _condition(obj, status, False, "SecretConflict",
                              f"Secret {secret} exists and was not written by the repository "
                              "for this tenant; choose another spec.eab.secretName")
        creds, minted = self.write_eab_secret(name, secret, existing, wanted)
        accounts = self.repo.store.count(tables.accounts, tables.accounts.c.tenant == name)
        status["accountsBound"] = accounts
        status["eab"] = {"keyID": creds.kid, "secretName": secret, "rotationGeneration": minted}
        return _condition(obj, status, True, "Ready",
                          f"EAB credentials in Secret {secret} (key id {creds.kid})")

    def _read_secret(self, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.core.api_client.sanitize_for_serialization(
                self.core.read_namespaced_secret(name, self.namespace))
            return found
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def write_eab_secret(self, tenant: str, secret: str, existing: dict[str, Any] | None,
                         wanted: int) -> tuple[Any, int]:
        """Mint (or rotate) the tenant's credentials and keep its Secret in step; returns
        the credentials and the rotation generation they were minted for."""
        store, vault = self.repo.store, self.repo.vault
        minted = eabsecrets.minted_for(existing)
        if minted is not None and minted < wanted:
            creds = eabsecrets.rotate(store, vault, tenant)
            log.info("tenant %s: EAB key rotated (generation %d), new key id %s", tenant,
                     wanted, creds.kid)
            minted = wanted
        else:
            creds = eabsecrets.ensure(store, vault, tenant)
            minted = wanted if minted is None else minted
        body = eabsecrets.secret_body(secret, self.namespace, creds, minted)
        if existing is None:
            self.core.create_namespaced_secret(self.namespace, body)
            log.info("tenant %s: EAB credentials written to Secret %s/%s", tenant,
                     self.namespace, secret)
        elif existing.get("data") != body["data"] or eabsecrets.minted_for(existing) != minted:
            body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
            self.core.replace_namespaced_secret(secret, self.namespace, body)
        return creds, minted

    # --- the loop ----------------------------------------------------------------------------

    async def run(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        for plural in (CERTIFICATES, TENANTS):
            threading.Thread(target=self.watch, args=(plural, loop, max(int(interval), 1)),
                             name=f"watch-{plural}", daemon=True).start()
        while True:
            self.wake.clear()
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reading the Kubernetes resources failed (%s); the "
                            "configuration in force stays", describe(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), interval)
            await asyncio.sleep(0.2)  # let a burst of events settle into one pass


def start(repo: Repo, file: Callable[[], Config], apply: Callable[[str], None]
          ) -> tuple[Callable[[], Awaitable[None]], Callable[[Config], Config]]:
    """Start watching; returns the stopper and the merge step of the configuration (the
    file's configuration in, the configuration in force out)."""
    cfg = repo.config.kubernetes
    watcher = KubeWatch(repo, file, apply, api_client(cfg), namespace_of(cfg))
    task = asyncio.get_running_loop().create_task(
        watcher.run(cfg.resync_interval.total_seconds()), name="kubernetes-resources")

    async def stop() -> None:
        watcher.stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop, watcher.merge
