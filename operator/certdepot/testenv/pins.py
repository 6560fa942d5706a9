"""The pins: each Go module the test environment builds binaries from, at its version,
and the files fetched from Go modules. ``provision`` resolves and builds what is listed
here; bumping a pin here rebuilds exactly the binaries it names (their stamps change).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GoBuild:
    """One Go module at a pinned version and the binaries built from its packages."""

    key: str
    module: str
    version: str
    # binary name -> Go package path
    packages: dict[str, str]
    ldflags: tuple[str, ...] = ()
    # k8s.io/kubernetes requires its staging modules at v0.0.0 (they are `replace`d by
    # local paths in its own repository); a consumer must replace them with real versions.
    replace_staging: bool = False
    # Go build tags, e.g. Prometheus's remove_all_sd (no cloud service discovery to compile).
    tags: tuple[str, ...] = ()
    # Build inside a copy of the module's own source (its go.mod, go.sum and replace
    # directives) instead of from a throwaway consumer module: some modules (Traefik) only
    # resolve with their own replace directives.
    in_module_source: bool = False

    def stamp(self, name: str) -> str:
        """What a binary was built from; any change of pin or flags forces a rebuild."""
        flags = " ".join(self.ldflags)
        # Tags only when set, so the stamps of builds without tags stay as they were.
        tags = f" tags={','.join(self.tags)}" if self.tags else ""
        return f"{self.module}@{self.version} {self.packages[name]} ldflags={flags}{tags}\n"


def _kube_version_ldflags(version: str) -> tuple[str, ...]:
    # Without these the binaries report v0.0.0-master; helm and kubectl compare the
    # server's version against charts and their own, so give them the real one.
    major, minor = version.lstrip("v").split(".")[:2]
    flags: list[str] = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return tuple(flags)


KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.6.16"
PEBBLE_VERSION = "v2.10.3"
HELM_VERSION = "v4.3.2"
# Prometheus 3.x is published to Go as v0.3MM.P (3.16.0 -> v0.316.0).
PROMETHEUS_VERSION = "v0.316.0"

BUILDS: tuple[GoBuild, ...] = (
    GoBuild(
        key="kubernetes",
        module="k8s.io/kubernetes",
        version=KUBERNETES_VERSION,
        packages={
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
        },
        ldflags=_kube_version_ldflags(KUBERNETES_VERSION),
        replace_staging=True,
    ),
    GoBuild(
        key="etcd",
        module="go.etcd.io/etcd/server/v3",
        version=ETCD_VERSION,
        packages={"etcd": "go.etcd.io/etcd/server/v3"},
    ),
    GoBuild(
        key="pebble",
        module="github.com/letsencrypt/pebble/v2",
        version=PEBBLE_VERSION,
        packages={
            "pebble": "github.com/letsencrypt/pebble/v2/cmd/pebble",
            "pebble-challtestsrv": "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv",
        },
        ldflags=(f"-X main.version={PEBBLE_VERSION}",),
    ),
    GoBuild(
        key="helm",
        module="helm.sh/helm/v4",
        version=HELM_VERSION,
        packages={"helm": "helm.sh/helm/v4/cmd/helm"},
        ldflags=(f"-X helm.sh/helm/v4/internal/version.version={HELM_VERSION}",),
    ),
    # The chart's alert rules: `promtool check rules`, and a real Prometheus evaluating them
    # against the operator and repository (tests/integration/test_chart_monitoring.py).
    # remove_all_sd leaves out the cloud service discoveries (static targets are all the
    # tests use), most of the build; without the builtinassets tag the web UI is not
    # embedded, the HTTP API is served all the same.
    GoBuild(
        key="prometheus",
        module="github.com/prometheus/prometheus",
        version=PROMETHEUS_VERSION,
        packages={
            "prometheus": "github.com/prometheus/prometheus/cmd/prometheus",
            "promtool": "github.com/prometheus/prometheus/cmd/promtool",
        },
        ldflags=(f"-X github.com/prometheus/common/version.Version={PROMETHEUS_VERSION}",),
        tags=("remove_all_sd",),
    ),
)

# --- the one-node cluster (testenv/node.py): opt-in, `certdepot dev provision --node` ---
COREDNS_VERSION = "v1.14.7"
# v3.7 does not build from the module proxy (some of its modules are refused); v3.6 does.
TRAEFIK_VERSION = "v3.6.12"
NODE_BUILDS: tuple[GoBuild, ...] = (
    GoBuild(
        # Same module and flags as kube-apiserver; a separate key so that `make provision`
        # (which does not build the node) never rebuilds these, nor these kube-apiserver.
        key="kubernetes-node",
        module="k8s.io/kubernetes",
        version=KUBERNETES_VERSION,
        packages={
            "kubelet": "k8s.io/kubernetes/cmd/kubelet",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
        },
        ldflags=_kube_version_ldflags(KUBERNETES_VERSION),
        replace_staging=True,
    ),
    GoBuild(
        key="coredns",
        module="github.com/coredns/coredns",
        version=COREDNS_VERSION,
        packages={"coredns": "github.com/coredns/coredns"},
    ),
    GoBuild(
        key="traefik",
        module="github.com/traefik/traefik/v3",
        version=TRAEFIK_VERSION,
        packages={"traefik": "github.com/traefik/traefik/v3/cmd/traefik"},
        ldflags=(f"-X github.com/traefik/traefik/v3/pkg/version.Version={TRAEFIK_VERSION}",),
        in_module_source=True,
    ),
)

# What `make provision` builds (the node binaries are not in it).
BINARIES: dict[str, GoBuild] = {name: b for b in BUILDS for name in b.packages}
NODE_BINARIES: dict[str, GoBuild] = {name: b for b in NODE_BUILDS for name in b.packages}
# Every binary the provisioner knows: what resolve(), binary() and provision() accept.
ALL_BINARIES: dict[str, GoBuild] = {**BINARIES, **NODE_BINARIES}


@dataclass(frozen=True)
class ModuleFile:
    """A file that ships inside a Go module, fetched with ``go mod download`` (the module
    proxy is the one source this machine's tests may use), e.g. a third-party CRD."""

    name: str
    module: str
    version: str
    path: str

    def stamp(self) -> str:
        return f"{self.module}@{self.version}/{self.path}\n"


PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
FILES: dict[str, ModuleFile] = {
    f.name: f
    for f in (
        # The chart's ServiceMonitors are checked against the real schema on a real API server.
        ModuleFile(
            name="servicemonitors-crd.yaml",
            module="github.com/prometheus-operator/prometheus-operator",
            version=PROMETHEUS_OPERATOR_VERSION,
            path="example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
        ),
    )
}
ENVTEST_BINARIES = ("kube-apiserver", "etcd", "kubectl")
