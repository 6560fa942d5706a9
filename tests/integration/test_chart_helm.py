"""The Helm chart, checked with the real helm binary and a real kube-apiserver.

- `helm lint` is clean for every value set in charts/certdepot/ci/;
- `helm template` renders each set, with secure defaults in every workload;
- values.schema.json rejects wrong types, and the templates reject impossible combinations;
- the API server accepts every rendered object (`kubectl apply --dry-run=server`);
- `helm install` succeeds and creates exactly what NOTES.txt says it created;
- `helm upgrade` keeps the key-encryption key (losing it loses every stored private key).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from certdepot.repository.config import AcmeIssuer, parse_config
from certdepot.repository.processconfig import KeyEncryptionKey
from certdepot.testenv.provision import binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "certdepot"
VALUE_SETS = {p.name.removesuffix("-values.yaml"): p
              for p in sorted((CHART / "ci").glob("*-values.yaml"))}
REQUIRED_SETS = {"default", "operator-only", "repository-only", "postgresql", "ha"}


class Helm:
    """The helm CLI with its own config/cache/data directories (nothing written to ~)."""

    def __init__(self, home: Path) -> None:
        self.path = binary("helm")
        self.env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        self.env.pop("KUBECONFIG", None)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.path), *args], capture_output=True, text=True,
                              env=self.env, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def template(self, *args: str, namespace: str = "certdepot") -> list[dict[str, Any]]:
        out = self("template", "certdepot", str(CHART), "--namespace", namespace, *args).stdout
        return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(tmp_path_factory.mktemp("helm-home"))


def _values(name: str) -> list[str]:
    return ["--values", str(VALUE_SETS[name])]


def _by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def _one(objs: list[dict[str, Any]], kind: str, name_suffix: str) -> dict[str, Any]:
    found = [o for o in _by_kind(objs, kind) if o["metadata"]["name"].endswith(name_suffix)]
    names = [o["metadata"]["name"] for o in found]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {names}"
    return found[0]


def test_the_required_value_sets_exist() -> None:
    assert set(VALUE_SETS) >= REQUIRED_SETS, sorted(VALUE_SETS)


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_helm_lint_is_clean(helm: Helm, value_set: str) -> None:
    proc = helm("lint", "--strict", str(CHART), *_values(value_set))
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


EXPECTED_KINDS = {
    "default": {"Deployment": 2, "Service": 2, "ConfigMap": 1, "Secret": 1,
                "PersistentVolumeClaim": 1, "ServiceAccount": 2, "ClusterRole": 2,
                "ClusterRoleBinding": 2, "Role": 1, "RoleBinding": 1},
    "operator-only": {"Deployment": 1, "Service": 1, "ServiceAccount": 1, "ClusterRole": 2,
                      "ClusterRoleBinding": 2, "Role": 1, "RoleBinding": 1},
    "repository-only": {"Deployment": 1, "Service": 1, "ConfigMap": 1, "Secret": 1,
                        "PersistentVolumeClaim": 1, "ServiceAccount": 1},
    "postgresql": {"Deployment": 2, "Service": 2, "ConfigMap": 1, "Secret": 1,
                   "ServiceAccount": 2, "ClusterRole": 2, "ClusterRoleBinding": 2, "Role": 1,
                   "RoleBinding": 1},
    "ha": {"Deployment": 2, "Service": 2, "ConfigMap": 1, "Secret": 2, "ServiceAccount": 2,
           "ClusterRole": 2, "ClusterRoleBinding": 2, "Role": 1, "RoleBinding": 1,
           "PodDisruptionBudget": 2, "NetworkPolicy": 2},
}


@pytest.mark.parametrize("value_set", sorted(EXPECTED_KINDS))
def test_template_renders_the_expected_objects(helm: Helm, value_set: str) -> None:
    objs = helm.template(*_values(value_set))
    kinds: dict[str, int] = {}
    for o in objs:
        kinds[o["kind"]] = kinds.get(o["kind"], 0) + 1
    assert kinds == EXPECTED_KINDS[value_set]
    for o in objs:
        assert o["metadata"]["labels"]["app.kubernetes.io/instance"] == "certdepot"


def _pod(deploy: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deploy["spec"]["template"]["spec"]
    return spec


def _containers(deploy: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deploy["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_workloads_have_secure_defaults(helm: Helm, value_set: str) -> None:
    for deploy in _by_kind(helm.template(*_values(value_set)), "Deployment"):
        name = deploy["metadata"]["name"]
        pod = deploy["spec"]["template"]["spec"]
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True, name
        assert psc["runAsUser"] == 10001 and psc["runAsGroup"] == 10001, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        is_operator = name.endswith("-operator")
        # Only the operator calls the Kubernetes API, and the repository when it follows
        # RepositoryCertificate and RepositoryTenant resources (the "resources" set).
        calls_api = is_operator or value_set == "resources"
        assert pod["automountServiceAccountToken"] is calls_api, name
        for c in _containers(deploy):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in sc["capabilities"], name
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
            # Probes go to endpoints the component really serves: /healthz (no database:
            # an outage must not restart every pod) and /readyz. The repository serves
            # them on its HTTPS API listener, the operator on its plain health port.
            port_names = {p["name"] for p in c["ports"]}
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                get = c[probe]["httpGet"]
                assert get["path"] == path, (name, probe)
                assert get["port"] == ("health" if is_operator else "https"), (name, probe)
                assert get["port"] in port_names, (name, probe)
                assert get.get("scheme", "HTTP") == ("HTTP" if is_operator else "HTTPS"), (
                    name, probe)
            assert c["args"][:2] == (["operator", "run"] if is_operator
                                     else ["repository", "serve"]), name
            # /tmp is the one writable path besides the repository's data volume.
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert "/tmp" in mounts, name


def test_repository_service_account_has_no_token(helm: Helm) -> None:
    objs = helm.template()
    sa = _one(objs, "ServiceAccount", "-repository")
    assert sa["automountServiceAccountToken"] is False


@pytest.mark.parametrize("value_set", [s for s in sorted(VALUE_SETS) if s != "operator-only"])
def test_rendered_repository_config_is_accepted_by_the_repository(helm: Helm,
                                                                  value_set: str) -> None:
    objs = helm.template(*_values(value_set))
    cm = _one(objs, "ConfigMap", "-repository")
    data = yaml.safe_load(cm["data"]["config.yaml"])
    config = parse_config(data, f"ConfigMap {cm['metadata']['name']}")
    assert config.listeners.https is not None
    # Whatever the chart mounts, the configuration must point at it.
    deploy = _one(objs, "Deployment", "-repository")
    mounts = [m["mountPath"] for m in _pod(deploy)["containers"][0]["volumeMounts"]]
    kek = config.key_encryption_key.file
    assert kek is not None and any(str(kek).startswith(m + "/") for m in mounts), (kek, mounts)


def test_sqlite_keeps_one_pod_on_its_volume(helm: Helm) -> None:
    deploy = _one(helm.template(), "Deployment", "-repository")
    assert deploy["spec"]["strategy"]["type"] == "Recreate"
    assert deploy["spec"]["replicas"] == 1


def test_ha_spreads_pods_and_budgets_disruptions(helm: Helm) -> None:
    objs = helm.template(*_values("ha"))
    for suffix in ("-operator", "-repository"):
        deploy = _one(objs, "Deployment", suffix)
        assert deploy["spec"]["replicas"] == 2
        pod = deploy["spec"]["template"]["spec"]
        assert pod["affinity"]["podAntiAffinity"], suffix
        pdb = _one(objs, "PodDisruptionBudget", suffix)
        assert pdb["spec"]["selector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]


def test_service_monitor_scrapes_the_operator_metrics_service(helm: Helm) -> None:
    objs = helm.template("--set", "operator.serviceMonitor.enabled=true")
    monitor = _one(objs, "ServiceMonitor", "-operator")
    selector = monitor["spec"]["selector"]["matchLabels"]
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics"
    matching = [s for s in _by_kind(objs, "Service")
                if selector.items() <= s["metadata"]["labels"].items()
                and endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}]
    assert [s["metadata"]["name"] for s in matching] == ["certdepot-operator-metrics"]


def test_service_monitor_scrapes_the_repository_metrics(helm: Helm) -> None:
    from certdepot.repository import metrics

    objs = helm.template("--set", "repository.serviceMonitor.enabled=true")
    assert [o["metadata"]["name"] for o in _by_kind(objs, "ServiceMonitor")] == [
        "certdepot-repository"]
    monitor = _one(objs, "ServiceMonitor", "-repository")
    selector = monitor["spec"]["selector"]["matchLabels"]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] in {r.path for r in metrics.routes}
    assert endpoint["path"] == "/metrics"
    # /metrics is on the HTTPS API listener, so the scrape is HTTPS to the Service's https
    # port, which leads to the container's https port.
    assert endpoint["scheme"] == "https"
    matching = [s for s in _by_kind(objs, "Service")
                if selector.items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in matching] == ["certdepot-repository"]
    [port] = [p for p in matching[0]["spec"]["ports"] if p["name"] == endpoint["port"]]
    assert port["targetPort"] == "https"
    # Each pod's throw-away self-signed certificate cannot be verified.
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    assert monitor["metadata"]["namespace"] == "certdepot"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["certdepot"]}


def test_repository_service_monitor_verifies_a_real_certificate(helm: Helm) -> None:
    objs = helm.template(*_values("ha"), "--set", "repository.serviceMonitor.enabled=true",
                         "--set", "repository.serviceMonitor.labels.release=prom",
                         "--set", "repository.serviceMonitor.tlsConfig.ca.secret.name=ca",
                         "--set", "repository.serviceMonitor.tlsConfig.ca.secret.key=ca.crt")
    monitor = _one(objs, "ServiceMonitor", "-repository")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    # Prometheus dials pod addresses; the certificate names the host of baseUrl.
    assert monitor["spec"]["endpoints"][0]["tlsConfig"] == {
        "serverName": "certdepot.example.com",
        "ca": {"secret": {"name": "ca", "key": "ca.crt"}}}


def test_repository_service_monitor_is_off_by_default(helm: Helm) -> None:
    for name in sorted(VALUE_SETS):
        assert not _by_kind(helm.template(*_values(name)), "ServiceMonitor"), name
    # Switched on without the repository, it renders nothing to scrape.
    objs = helm.template("--set", "repository.serviceMonitor.enabled=true",
                         "--set", "repository.enabled=false")
    assert not _by_kind(objs, "ServiceMonitor")


def test_notes_list_the_service_monitors(helm: Helm) -> None:
    monitors = ("--set", "repository.serviceMonitor.enabled=true",
                "--set", "operator.serviceMonitor.enabled=true")
    # A client-side dry run renders NOTES without a cluster.
    out = helm("install", "certdepot", str(CHART), "--namespace", "certdepot",
               "--dry-run=client", *monitors).stdout
    namespaced, _ = _notes_objects(out[out.index("NOTES:"):])
    rendered = {("ServiceMonitor", o["metadata"]["name"])
                for o in _by_kind(helm.template(*monitors), "ServiceMonitor")}
    assert rendered == {("ServiceMonitor", "certdepot-operator"),
                        ("ServiceMonitor", "certdepot-repository")}
    assert {o for o in namespaced if o[0] == "ServiceMonitor"} == rendered


def test_watching_some_namespaces_binds_roles_only_there(helm: Helm) -> None:
    objs = helm.template("--set", "operator.watchNamespaces={team-a,team-b}",
                         "--set", "repository.enabled=false")
    bindings = _by_kind(objs, "RoleBinding")
    namespaced = {b["metadata"]["namespace"] for b in bindings
                  if b["roleRef"]["name"].endswith("-namespaced")}
    assert namespaced == {"team-a", "team-b", "certdepot"}
    crbs = [b["metadata"]["name"] for b in _by_kind(objs, "ClusterRoleBinding")]
    assert not any(n.endswith("-namespaced") for n in crbs), crbs
    args = _pod(_one(objs, "Deployment", "-operator"))["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=team-a", "--namespace=team-b"]


def _operator_rules(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for role in _by_kind(objs, "ClusterRole") for rule in role["rules"]]


def test_ingress_shim_off_drops_its_flag_and_rules(helm: Helm) -> None:
    from certdepot.controller.cli import run

    def shim_rules(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in _operator_rules(objs) if "ingresses" in r["resources"]
                or ("certificatedownloads" in r["resources"] and "create" in r["verbs"])]

    default = helm.template("--set", "repository.enabled=false")
    assert len(shim_rules(default)) == 2
    objs = helm.template("--set", "repository.enabled=false",
                         "--set", "operator.ingressShim.enabled=false")
    assert shim_rules(objs) == []
    args = _pod(_one(objs, "Deployment", "-operator"))["containers"][0]["args"]
    assert "--no-ingress-shim" in args
    assert run.make_context("run", list(args[2:])).params["ingress_shim"] is False
    # Everything else is granted as before.
    others = [r for r in _operator_rules(default) if r not in shim_rules(default)]
    assert _operator_rules(objs) == others


def test_operator_role_patches_only_status(helm: Helm) -> None:
    patched = {res for rule in _operator_rules(helm.template()) if "patch" in rule["verbs"]
               for res in rule["resources"]}
    assert patched and all(res.endswith("/status") for res in patched), sorted(patched)


# (--set arguments, a fragment of the error helm must print)
BAD_VALUES = [
    (["--set", "operator.replicas=two"], "/operator/replicas"),
    (["--set-string", "operator.enabled=yes"], "/operator/enabled"),
    (["--set", "repository.storage.type=mysql"], "/repository/storage/type"),
    (["--set", "repository.ports.https=70000"], "/repository/ports/https"),
    (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
    (["--set", "repository.service.type=Ingress"], "/repository/service/type"),
    (["--set", "repository.baseUrl=certdepot.example.com"], "/repository/baseUrl"),
    (["--set", "operator.watchNamespaces[0]=Not_A_Namespace"], "/operator/watchNamespaces/0"),
    (["--set", "repository.replicsa=2"], "replicsa"),
    (["--set", "repository.resources.requests=null"], "requests"),
    (["--set", "repository.credentials.x=1"], "/repository/credentials/x"),
    (["--set-string", "repository.serviceMonitor.enabled=yes"],
     "/repository/serviceMonitor/enabled"),
    (["--set", "repository.serviceMonitor.interval=often"], "/repository/serviceMonitor/interval"),
]


@pytest.mark.parametrize(("args", "fragment"), BAD_VALUES, ids=[f for _, f in BAD_VALUES])
def test_schema_rejects_wrong_types(helm: Helm, args: list[str], fragment: str) -> None:
    proc = helm("template", "certdepot", str(CHART), *args, check=False)
    assert proc.returncode != 0, f"helm accepted {args}"
    assert "schema" in proc.stderr and fragment in proc.stderr, proc.stderr


# Combinations every value of which is well typed, but which cannot work.
BAD_COMBINATIONS = [
    (["--set", "repository.replicas=2", "--set", "repository.tls.secretName=t"],
     "needs repository.storage.type=postgresql"),
    (["--set", "repository.storage.type=postgresql"], "needs repository.storage.postgresql.url"),
    (["--set", "repository.storage.type=postgresql",
      "--set", "repository.storage.postgresql.url=postgresql://u:pw@db/x"],
     "must not contain the password"),
    (["--set", "repository.replicas=2", "--set", "repository.storage.type=postgresql",
      "--set", "repository.storage.postgresql.url=postgresql://db/x"],
     "needs repository.tls.secretName"),
    (["--set", "operator.enabled=false", "--set", "repository.enabled=false"],
     "nothing to install"),
    (["--set", "repository.config.storage.url=sqlite://"],
     "repository.config.storage is set by the chart"),
]


@pytest.mark.parametrize(("args", "fragment"), BAD_COMBINATIONS,
                         ids=[f for _, f in BAD_COMBINATIONS])
def test_templates_reject_impossible_combinations(helm: Helm, args: list[str],
                                                  fragment: str) -> None:
    proc = helm("template", "certdepot", str(CHART), *args, check=False)
    assert proc.returncode != 0, f"helm accepted {args}"
    assert fragment in proc.stderr, proc.stderr


# --- against the real API server -------------------------------------------------------------


def _namespace(kube: Any, name: str) -> Iterator[str]:
    kube.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def dry_run_namespace(kube: Any) -> Iterator[str]:
    yield from _namespace(kube, "chart-dry-run")


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_api_server_accepts_every_rendered_object(helm: Helm, kube: Any, dry_run_namespace: str,
                                                  value_set: str) -> None:
    objs = helm.template(*_values(value_set), namespace=dry_run_namespace)
    manifest = yaml.safe_dump_all(objs)
    proc = kube.kubectl("apply", "--dry-run=server", "-o", "name", "-f", "-",
                        input=manifest, check=False)
    assert proc.returncode == 0, proc.stderr
    accepted = {line.strip() for line in proc.stdout.splitlines() if line.strip()}
    assert len(accepted) == len(objs), (sorted(accepted), len(objs))


NOTES_OBJECT = re.compile(r"^  (?P<kind>[A-Z][A-Za-z]+)/(?P<name>[a-z0-9.-]+)$")


def _notes_objects(notes: str) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(namespaced, cluster-wide) objects listed under NOTES' "Created ..." headings."""
    namespaced: set[tuple[str, str]] = set()
    cluster: set[tuple[str, str]] = set()
    target: set[tuple[str, str]] | None = None
    for line in notes.splitlines():
        if line.startswith("Created in namespace"):
            target = namespaced
        elif line.startswith("Created cluster-wide"):
            target = cluster
        elif not line.strip():
            target = None
        elif target is not None and (m := NOTES_OBJECT.match(line)):
            target.add((m["kind"], m["name"]))
    return namespaced, cluster


@pytest.fixture(scope="module")
def installed(helm: Helm, kube: Any) -> Iterator[tuple[str, str]]:
    namespace = "chart-install"
    kubeconfig = str(kube.kubeconfig)
    proc = helm("install", "certdepot", str(CHART), "--namespace", namespace,
                "--create-namespace", "--kubeconfig", kubeconfig, "--timeout", "60s")
    try:
        yield namespace, proc.stdout
    finally:
        helm("uninstall", "certdepot", "--namespace", namespace, "--kubeconfig", kubeconfig,
             check=False)
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_helm_install_creates_what_notes_says(helm: Helm, kube: Any,
                                              installed: tuple[str, str]) -> None:
    namespace, output = installed
    assert "STATUS: deployed" in output, output
    namespaced, cluster = _notes_objects(output)
    assert namespaced and cluster, f"NOTES lists no objects:\n{output}"
    for kind, name in sorted(namespaced):
        kube.kubectl("get", "--namespace", namespace, f"{kind.lower()}/{name}")
    for kind, name in sorted(cluster):
        kube.kubectl("get", f"{kind.lower()}/{name}")
    # And NOTES leaves out none of the workloads, Services, ConfigMaps or claims it installed.
    manifest = helm("get", "manifest", "certdepot", "--namespace", namespace,
                    "--kubeconfig", str(kube.kubeconfig)).stdout
    released = {(o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(manifest) if o}
    listed_kinds = {"Deployment", "Service", "ConfigMap", "PersistentVolumeClaim",
                    "ServiceAccount", "ClusterRole"}
    assert {r for r in released if r[0] in listed_kinds} <= namespaced | cluster
    assert namespaced | cluster <= released


def test_helm_install_installed_the_crds(kube: Any, installed: tuple[str, str]) -> None:
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                kube.kubectl("get", f"crd/{doc['metadata']['name']}")


def test_helm_upgrade_keeps_the_key_encryption_key(helm: Helm, kube: Any, tmp_path: Path,
                                                   installed: tuple[str, str]) -> None:
    namespace, _ = installed
    secret = "secret/certdepot-repository-key-encryption-key"

    def key() -> bytes:
        out: str = kube.kubectl("get", "--namespace", namespace, secret,
                                "-o", "jsonpath={.data.key}").stdout
        return base64.b64decode(out)

    before = key()
    # The mounted file is what the repository reads: it must accept it as its key.
    (tmp_path / "key").write_bytes(before)
    assert len(KeyEncryptionKey(file=tmp_path / "key").load()) == 32
    helm("upgrade", "certdepot", str(CHART), "--namespace", namespace,
         "--kubeconfig", str(kube.kubeconfig), "--set", "repository.logLevel=debug")
    assert key() == before

    def pod_annotations() -> dict[str, str]:
        out = kube.kubectl("get", "--namespace", namespace, "deployment/certdepot-repository",
                           "-o", "jsonpath={.spec.template.metadata.annotations}").stdout
        result: dict[str, str] = json.loads(out)
        return result

    # An upgrade that changes nothing must not roll the repository's pods.
    rolled = pod_annotations()
    helm("upgrade", "certdepot", str(CHART), "--namespace", namespace,
         "--kubeconfig", str(kube.kubeconfig), "--reuse-values")
    assert pod_annotations() == rolled
    assert key() == before


def test_notes_example_is_a_valid_certificate_repository(kube: Any,
                                                         installed: tuple[str, str]) -> None:
    namespace, output = installed
    match = re.search(r"<<YAML\n(?P<body>.*?)\n\s*YAML\n", output, re.S)
    assert match, f"no example in NOTES:\n{output}"
    body = (match["body"].replace("<namespace>", namespace)
            .replace("<EAB key id>", "kid-1"))
    doc = yaml.safe_load(body)
    assert doc["kind"] == "CertificateRepository"
    proc = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=body, check=False)
    assert proc.returncode == 0, proc.stderr


def test_repository_probes_target_routes_the_repository_serves(helm: Helm) -> None:
    import importlib
    import pkgutil

    import certdepot.repository.routes as routes_pkg
    from certdepot.repository import metrics

    # The ACME routes, and the health/metrics routes create_app mounts next to them.
    paths: set[str | None] = {r.path for r in metrics.routes}
    for info in pkgutil.iter_modules(routes_pkg.__path__):
        module = importlib.import_module(f"{routes_pkg.__name__}.{info.name}")
        paths |= {getattr(r, "path", None) for r in getattr(module, "routes", [])}
    container = _pod(_one(helm.template(), "Deployment", "-repository"))["containers"][0]
    for probe in ("livenessProbe", "readinessProbe"):
        path = container[probe]["httpGet"]["path"]
        assert path in paths, (probe, sorted(p for p in paths if p))


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_container_args_are_accepted_by_the_certdepot_cli(helm: Helm, value_set: str) -> None:
    """Parse each rendered command line with the real click commands (without running them)."""
    import click

    from certdepot.cli import main

    objs = helm.template(*_values(value_set), "--set", "operator.verbose=true",
                         "--set", "operator.logFormat=json",
                         "--set", "operator.watchNamespaces={a,b}")
    for deploy in _by_kind(objs, "Deployment"):
        args = _pod(deploy)["containers"][0]["args"]
        group = main.get_command(click.Context(main), args[0])
        assert isinstance(group, click.Group), args[0]
        command = group.get_command(click.Context(group), args[1])
        assert command is not None, args[:2]
        # Raises click.UsageError / BadParameter on an unknown option or a wrong value.
        ctx = command.make_context(" ".join(args[:2]), list(args[2:]))
        if args[0] == "operator":
            assert ctx.params["bind"] == "0.0.0.0"
            assert ctx.params["leader_election"] is True
            # Kubernetes expands $(POD_NAME) from the container's env before the CLI sees it.
            env = {e["name"] for e in _pod(deploy)["containers"][0]["env"]}
            assert ctx.params["identity"] == "$(POD_NAME)" and "POD_NAME" in env
            assert ctx.params["namespaces"] == ("a", "b")
            assert ctx.params["ingress_shim"] is True
            ports = {p["name"]: p["containerPort"] for p in _pod(deploy)["containers"][0]["ports"]}
            assert ctx.params["metrics_port"] == ports["metrics"]
            assert ctx.params["health_port"] == ports["health"]
        else:
            assert str(ctx.params["config_path"]) == "/etc/certdepot/config/config.yaml"


# --- the kind end-to-end path (tests/e2e), checked here because kind itself is opt-in ---------

E2E = ROOT / "tests" / "e2e"


def _kind_render(helm: Helm, tmp_path: Path) -> list[dict[str, Any]]:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----\n")
    return helm.template("--values", str(E2E / "values-kind.yaml"),
                         "--set-file", f"repository.credentials.e2e-ca\\.crt={ca}")


def test_kind_values_offer_what_the_examples_ask_for(helm: Helm, tmp_path: Path) -> None:
    from certdepot.demo import manifests, repoconfig

    objs = _kind_render(helm, tmp_path)
    cm = _one(objs, "ConfigMap", "-repository")
    config = parse_config(yaml.safe_load(cm["data"]["config.yaml"]), "values-kind.yaml")
    tenant = config.tenant(repoconfig.TENANT)
    assert tenant is not None, f"no tenant {repoconfig.TENANT} (the examples' EAB tenant)"
    granted = {frozenset(c.dns_names) for c in config.certificates if c.name in tenant.download}
    delegations = {d.name for d in tenant.delegations}
    for want in manifests.expected(manifests.load(manifests.examples_dir())):
        if want.kind == "CertificateDownload":
            assert frozenset(want.dns_names) in granted, want.label
        elif want.kind == "DelegatedCertificate":
            assert repoconfig.DELEGATION in delegations, want.label
    # The issuers' CA bundle is the file the chart mounts from the credentials Secret.
    for issuer in config.issuers:
        bundle = getattr(issuer, "ca_bundle", None)
        assert bundle is None or str(bundle) == "/etc/certdepot/credentials/e2e-ca.crt"
    assert any(o["kind"] == "Secret" and "e2e-ca.crt" in o.get("stringData", {}) for o in objs)
    # Pebble in the cluster offers the profiles the issuers ask for.
    pebble_cm = next(d for d in yaml.safe_load_all((E2E / "manifests/pebble.yaml").read_text())
                     if d["kind"] == "ConfigMap")
    profiles = json.loads(pebble_cm["data"]["pebble-config.json"])["pebble"]["profiles"]
    wanted = {i.profile for i in config.issuers if isinstance(i, AcmeIssuer) and i.profile}
    assert wanted <= set(profiles)


def test_kind_render_is_accepted_by_the_api_server(helm: Helm, kube: Any, tmp_path: Path,
                                                   dry_run_namespace: str) -> None:
    objs = _kind_render(helm, tmp_path)
    for o in objs:
        if o["metadata"].get("namespace"):
            o["metadata"]["namespace"] = dry_run_namespace
    proc = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(objs),
                        check=False)
    assert proc.returncode == 0, proc.stderr
    pebble = (E2E / "manifests/pebble.yaml").read_text().replace("@PEBBLE_IMAGE@", "pebble:e2e")
    proc = kube.kubectl("apply", "--dry-run=server", "-n", dry_run_namespace, "-f", "-",
                        input=pebble, check=False)
    assert proc.returncode == 0, proc.stderr


def test_kind_script_builds_the_pebble_version_the_tests_pin() -> None:
    from certdepot.testenv.pins import PEBBLE_VERSION

    script = (E2E / "kind.sh").read_text()
    match = re.search(r"sed -n '(s/.*?/p)' operator/certdepot/testenv/pins.py", script)
    assert match, "kind.sh no longer reads PEBBLE_VERSION from pins.py"
    provision = ROOT / "operator" / "certdepot" / "testenv" / "pins.py"
    out = subprocess.run(["sed", "-n", match.group(1), str(provision)], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == PEBBLE_VERSION
    assert os.access(E2E / "kind.sh", os.X_OK), "tests/e2e/kind.sh must be executable"
