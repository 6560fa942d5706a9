"""The operator's view of the Kubernetes API: a small async protocol and its real implementation.

Reconcilers depend on :class:`KubeApi` only, so unit tests pass an in-memory fake. The real
one wraps the official (synchronous) client in worker threads; objects are plain dicts.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

from certdepot.controller.core.resources import CLUSTER_REPOSITORIES, GROUP, PLURALS, VERSION

#: Never read here, and often the largest parts of an object: the API server's field
#: ownership bookkeeping, and kubectl apply's copy of the whole applied object.
_DROPPED_METADATA = frozenset({"managedFields"})
_DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
#: String values up to this length are interned: kinds, reasons, condition types...
_INTERNED_VALUE = 64


def lean_copy(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of an API object to keep, without what is never read (``_DROPPED_*``),
    its keys and short strings interned. The supervisor keeps a copy of every object, so
    at N=10,000 objects the keys alone ("metadata", "lastTransitionTime", ...: each JSON
    document decoded has its own copies) were megabytes."""
    out = {sys.intern(k): _copy(v) for k, v in obj.items() if k != "metadata"}
    meta = obj.get("metadata") or {}
    kept = {sys.intern(k): _copy(v) for k, v in meta.items() if k not in _DROPPED_METADATA}
    annotations = kept.get("annotations")
    if isinstance(annotations, dict) and not _DROPPED_ANNOTATIONS.isdisjoint(annotations):
        kept["annotations"] = {
            k: v for k, v in annotations.items() if k not in _DROPPED_ANNOTATIONS
        }
    out["metadata"] = kept
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, str):
        return sys.intern(value) if len(value) <= _INTERNED_VALUE else value
    if isinstance(value, Mapping):
        return {sys.intern(k) if isinstance(k, str) else k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    if value is None or isinstance(value, int | float):
        return value  # bool is an int
    return copy.deepcopy(value)


class Conflict(Exception):
    """Optimistic concurrency lost (HTTP 409): someone else changed the object meanwhile."""


class KubeApi(Protocol):
    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def create_secret(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    async def replace_secret(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    async def delete_secret(self, namespace: str, name: str) -> None: ...
    async def namespace_labels(self, namespace: str) -> dict[str, str]: ...
    async def get_custom(
        self, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None: ...
    async def list_custom(self, kind: str, namespace: str | None) -> list[dict[str, Any]]: ...
    async def patch_status(
        self, kind: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> None: ...
    async def create_custom(self, kind: str, namespace: str, body: Mapping[str, Any]) -> None: ...
    async def replace_custom(self, kind: str, namespace: str, body: Mapping[str, Any]) -> None: ...
    async def delete_custom(self, kind: str, namespace: str, name: str) -> None: ...


class RealKubeApi:
    """KubeApi over ``kubernetes.client`` (config from in-cluster or KUBECONFIG)."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._client = api_client
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None) -> RealKubeApi:
        from kubernetes import client, config

        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            configuration = client.Configuration.get_default_copy()
        except config.ConfigException:
            configuration = client.Configuration()
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration
            )
        return cls(client.ApiClient(configuration))

    async def version(self) -> dict[str, Any]:
        """GET /version: the cheapest request every identity may make (readiness probe)."""
        from kubernetes import client

        api = client.VersionApi(self._client)
        return await self._json(lambda **kw: api.get_code(_request_timeout=5, **kw))

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                raise LookupError(str(exc.reason)) from None
            if exc.status == 409:
                raise Conflict(str(exc.reason)) from None
            # ApiException text includes the request body for some calls: keep only the status.
            raise RuntimeError(f"Kubernetes API error {exc.status} {exc.reason}") from None

    async def _json(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        """``fn(*args)`` with its JSON answer parsed here. The client would build its model
        objects from it and ``_plain`` turn them back into dicts: CPU for nothing on the
        path every certificate takes."""

        def call() -> Any:
            response = fn(*args, _preload_content=False)
            return json.loads(response.data)

        return cast(dict[str, Any], await self._call(call))

    def _plain(self, obj: Any) -> dict[str, Any]:
        if isinstance(obj, dict):
            return obj
        result: dict[str, Any] = self._client.sanitize_for_serialization(obj)
        return result

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._json(self._core.read_namespaced_secret, name, namespace)
        except LookupError:
            return None

    async def create_secret(self, body: Mapping[str, Any]) -> dict[str, Any]:
        ns = body["metadata"]["namespace"]
        return await self._json(self._core.create_namespaced_secret, ns, dict(body))

    async def replace_secret(self, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        return await self._json(
            self._core.replace_namespaced_secret, meta["name"], meta["namespace"], dict(body)
        )

    async def delete_secret(self, namespace: str, name: str) -> None:
        try:
            await self._call(self._core.delete_namespaced_secret, name, namespace)
        except LookupError:
            return

    async def namespace_labels(self, namespace: str) -> dict[str, str]:
        ns = await self._json(self._core.read_namespace, namespace)
        return dict((ns.get("metadata") or {}).get("labels") or {})

    async def get_custom(
        self, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        plural = PLURALS[kind]
        try:
            if plural == CLUSTER_REPOSITORIES or namespace is None:
                obj = await self._json(
                    self._custom.get_cluster_custom_object, GROUP, VERSION, plural, name
                )
            else:
                obj = await self._json(
                    self._custom.get_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    plural,
                    name,
                )
        except LookupError:
            return None
        return obj

    async def list_custom(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        plural = PLURALS[kind]
        if namespace is None:
            obj = await self._call(self._custom.list_cluster_custom_object, GROUP, VERSION, plural)
        else:
            obj = await self._call(
                self._custom.list_namespaced_custom_object, GROUP, VERSION, namespace, plural
            )
        return list(self._plain(obj).get("items") or [])

    async def patch_status(
        self, kind: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> None:
        plural = PLURALS[kind]
        body = {"status": dict(status)}
        try:
            if namespace is None:
                await self._json(
                    self._custom.patch_cluster_custom_object_status,
                    GROUP,
                    VERSION,
                    plural,
                    name,
                    body,
                )
            else:
                await self._json(
                    self._custom.patch_namespaced_custom_object_status,
                    GROUP,
                    VERSION,
                    namespace,
                    plural,
                    name,
                    body,
                )
        except LookupError:
            return  # deleted meanwhile

    async def create_custom(self, kind: str, namespace: str, body: Mapping[str, Any]) -> None:
        await self._call(
            self._custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURALS[kind],
            dict(body),
        )

    async def replace_custom(self, kind: str, namespace: str, body: Mapping[str, Any]) -> None:
        await self._call(
            self._custom.replace_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURALS[kind],
            body["metadata"]["name"],
            dict(body),
        )

    async def delete_custom(self, kind: str, namespace: str, name: str) -> None:
        try:
            await self._call(
                self._custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURALS[kind],
                name,
            )
        except LookupError:
            return
