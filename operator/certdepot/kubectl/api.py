"""The plugin's view of the cluster: a few synchronous calls over the official client.

Errors become :class:`NotFound` (exit code 3) or :class:`ApiError` (exit code 4) with a
message fit for a terminal; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from certdepot.controller.core.resources import GROUP, PLURALS, VERSION

CLUSTER_SCOPED = ("ClusterCertificateRepository",)

# What a user may type for each kind: kubectl's names, plurals and the CRDs' short names.
_ALIASES = {
    "CertificateDownload": ("certificatedownload", "certificatedownloads", "certdl", "cdl"),
    "DelegatedCertificate": ("delegatedcertificate", "delegatedcertificates", "delegatedcert",
                             "dcert"),
    "CertificateRepository": ("certificaterepository", "certificaterepositories", "certrepo",
                              "crepo"),
    "ClusterCertificateRepository": ("clustercertificaterepository",
                                     "clustercertificaterepositories", "clustercertrepo",
                                     "ccrepo"),
}
KINDS = {alias: kind for kind, aliases in _ALIASES.items() for alias in aliases}


class NotFound(Exception):
    """The object asked for does not exist."""


class ApiError(Exception):
    """The API server could not be reached or refused the call."""


def kind_of(word: str) -> str:
    """``cdl`` -> ``CertificateDownload``; ``ValueError`` for a word that names no kind."""
    kind = KINDS.get(word.lower().split(".", 1)[0])
    if kind is None:
        raise ValueError(f"unknown kind {word!r}; one of: {', '.join(sorted(_ALIASES))}")
    return kind


@dataclass
class Cluster:
    """The API server of one kubeconfig context, and that context's default namespace."""

    api_client: Any
    namespace: str

    @classmethod
    def connect(cls, kubeconfig: str | None, context: str | None,
                namespace: str | None) -> Cluster:
        from kubernetes import client, config

        configuration = client.Configuration()
        try:
            if kubeconfig is None and context is None and _in_cluster():
                config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
                default_ns = _in_cluster_namespace()
            else:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig, context=context, client_configuration=configuration
                )
                contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig
                )
                if context is not None:
                    active = next((c for c in contexts if c["name"] == context), active)
                default_ns = (active or {}).get("context", {}).get("namespace") or "default"
        except (config.ConfigException, OSError) as exc:
            raise ApiError(f"cannot load the Kubernetes configuration: {exc}") from None
        return cls(client.ApiClient(configuration), namespace or default_ns)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"{what} not found") from None
            raise ApiError(f"{what}: the API server answered {exc.status} {exc.reason}") from None
        except (HTTPError, OSError) as exc:
            raise ApiError(f"{what}: cannot reach the API server ({type(exc).__name__})") from None

    def _custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api_client)

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        what = f"{kind} {self._where(kind)}{name}"
        if kind in CLUSTER_SCOPED:
            obj = self._call(what, self._custom().get_cluster_custom_object,
                             GROUP, VERSION, PLURALS[kind], name)
        else:
            obj = self._call(what, self._custom().get_namespaced_custom_object,
                             GROUP, VERSION, self.namespace, PLURALS[kind], name)
        return dict(obj)

    def annotate(self, kind: str, name: str, key: str, value: str) -> dict[str, Any]:
        what = f"{kind} {self._where(kind)}{name}"
        body = {"metadata": {"annotations": {key: value}}}
        if kind in CLUSTER_SCOPED:
            obj = self._call(what, self._custom().patch_cluster_custom_object,
                             GROUP, VERSION, PLURALS[kind], name, body)
        else:
            obj = self._call(what, self._custom().patch_namespaced_custom_object,
                             GROUP, VERSION, self.namespace, PLURALS[kind], name, body)
        return dict(obj)

    def secret(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        ns = namespace or self.namespace
        obj = self._call(f"Secret {ns}/{name}", self._core().read_namespaced_secret, name, ns)
        out: dict[str, Any] = self.api_client.sanitize_for_serialization(obj)
        return out

    def events(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        """The object's Events, oldest first (kopf posts a cluster-scoped object's Events
        into the ``default`` namespace, hence the search across namespaces for those)."""
        meta = obj.get("metadata") or {}
        selector = f"involvedObject.uid={meta.get('uid')}"
        core = self._core()
        if meta.get("namespace"):
            found = self._call("Events", core.list_namespaced_event, meta["namespace"],
                               field_selector=selector)
        else:
            found = self._call("Events", core.list_event_for_all_namespaces,
                               field_selector=selector)
        items = self.api_client.sanitize_for_serialization(found).get("items") or []
        return sorted(items, key=_event_time)

    def _where(self, kind: str) -> str:
        return "" if kind in CLUSTER_SCOPED else f"{self.namespace}/"


def _event_time(event: dict[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime")
               or (event.get("metadata") or {}).get("creationTimestamp") or "")


_SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _in_cluster() -> bool:
    """In a pod, with no kubeconfig named: use the pod's service account, as kubectl does."""
    import os

    if os.environ.get("KUBECONFIG") or os.path.isfile(os.path.expanduser("~/.kube/config")):
        return False
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.isfile(f"{_SA_DIR}/token")


def _in_cluster_namespace() -> str:
    try:
        with open(f"{_SA_DIR}/namespace") as fh:
            return fh.read().strip() or "default"
    except OSError:
        return "default"
