"""The repository runs with what the chart renders: the default configuration (SQLite, the
embedded local CA) and the PostgreSQL wiring against a real PostgreSQL server (password
authentication on).

For PostgreSQL the chart puts a password-free URL in the ConfigMap and the password in a Secret that
reaches the container as PGPASSWORD. Here the repository runs as a real process with
exactly what the chart rendered: the ConfigMap's configuration (listeners moved to
loopback, files to a temporary directory), the generated key-encryption key, and the
PGPASSWORD value the kubelet would take from the Secret the Deployment names. It must
pass the Deployment's liveness (/healthz) and readiness (/readyz) probes, asked for as the
kubelet would; without PGPASSWORD PostgreSQL must refuse it.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url
from test_chart_helm import Helm

from certdepot.testenv import procs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(tmp_path_factory.mktemp("helm-pg"))


def _find(objs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"].endswith(suffix))


def _pod_env(objs: list[dict[str, Any]]) -> dict[str, str]:
    """The environment the kubelet would give the repository container."""
    deploy = _find(objs, "Deployment", "-repository")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    secrets = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Secret"}
    env = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secrets[ref["name"]]["stringData"][ref["key"]]
    return env


def _local_config(objs: list[dict[str, Any]], workdir: Path) -> tuple[Path, int]:
    """The ConfigMap's configuration with what a pod gets from mounts and the network
    moved to this machine: loopback listeners, the key file from the rendered Secret, the
    SQLite file from the data volume."""
    config = yaml.safe_load(_find(objs, "ConfigMap", "-repository")["data"]["config.yaml"])
    if config["storage"]["url"].startswith("sqlite:"):
        assert config["storage"]["url"] == "sqlite:////var/lib/certdepot/certdepot.db"
        config["storage"]["url"] = f"sqlite:///{workdir / 'certdepot.db'}"
    kek = _find(objs, "Secret", "-key-encryption-key")["data"]["key"]
    (workdir / "kek").write_bytes(base64.b64decode(kek))
    port = procs.free_port()
    assert config["listeners"]["https"] == {"address": "0.0.0.0:8443", "selfSigned": True}
    config["listeners"] = {"https": {"address": f"127.0.0.1:{port}", "selfSigned": True,
                                     "selfSignedCertFile": str(workdir / "tls.crt")}}
    assert config["keyEncryptionKey"] == {"file": "/etc/certdepot/key-encryption-key/key"}
    config["keyEncryptionKey"] = {"file": str(workdir / "kek")}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, port


def _without_password(url: Any) -> str:
    return f"{url.drivername}://{url.username}@{url.host}:{url.port}/{url.database}"


def _render(helm: Helm, url: str, password: str) -> list[dict[str, Any]]:
    return helm.template("--set", "repository.storage.type=postgresql",
                         "--set", f"repository.storage.postgresql.url={url}",
                         "--set", f"repository.storage.postgresql.password={password}")


def _probe_urls(objs: list[dict[str, Any]], port: int) -> dict[str, str]:
    """The URL each rendered probe of the repository container asks for, with the HTTPS
    listener (the only one the probes may use) moved to loopback ``port``."""
    container = _find(objs, "Deployment", "-repository")["spec"]["template"]["spec"][
        "containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    urls = {}
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert ports[get["port"]] == 8443, f"{probe} is not on the HTTPS listener: {get}"
        urls[probe] = f"{get.get('scheme', 'HTTP').lower()}://127.0.0.1:{port}{get['path']}"
    return urls


def _serve(objs: list[dict[str, Any]], workdir: Path, env: dict[str, str],
           name: str) -> tuple[dict[str, Any], str]:
    """Start the repository, pass both rendered probes as the kubelet would, return the
    directory and a scrape of what the repository ServiceMonitor (if rendered) points at."""
    config_path, port = _local_config(objs, workdir)
    urls = _probe_urls(objs, port)
    assert urls == {"livenessProbe": f"https://127.0.0.1:{port}/healthz",
                    "readinessProbe": f"https://127.0.0.1:{port}/readyz"}
    # The container sets no TMPDIR, so Python writes its temporary files to /tmp, the
    # Deployment's emptyDir; here a directory stands in for it.
    assert "TMPDIR" not in env
    tmp = workdir / "tmp-emptydir"
    tmp.mkdir()
    argv = [sys.executable, "-m", "certdepot.cli", "repository", "serve",
            "--config", str(config_path)]
    proc = procs.start(name, argv, log_path=workdir / f"{name}.log",
                       extra_env={**env, "TMPDIR": str(tmp),
                                  "PYTHONPATH": str(ROOT / "operator")})
    try:
        # Like the kubelet: any 2xx/3xx passes, and an HTTPS probe does not verify the
        # certificate.
        for probe in ("livenessProbe", "readinessProbe"):
            proc.wait_for_url(urls[probe], verify=False, ok_status=range(200, 400),
                              timeout=60)
        # The self-signed listener keeps its throw-away certificate and key under TMPDIR:
        # this is why the read-only pod needs its /tmp emptyDir.
        written = sorted(p.name for p in tmp.iterdir())
        assert [n for n in written if n.startswith("certdepot-tls-")], written
        resp = proc.wait_for_url(f"https://127.0.0.1:{port}/directory",
                                 verify=str(workdir / "tls.crt"), timeout=60)
        directory: dict[str, Any] = resp.json()
        scrape = ""
        monitors = [o for o in objs if o["kind"] == "ServiceMonitor"]
        if monitors:
            [endpoint] = monitors[0]["spec"]["endpoints"]
            assert endpoint["port"] == "https" and endpoint["scheme"] == "https", endpoint
            skip = endpoint["tlsConfig"].get("insecureSkipVerify", False)
            scrape = proc.wait_for_url(f"https://127.0.0.1:{port}{endpoint['path']}",
                                       verify=str(workdir / "tls.crt") if not skip else False,
                                       timeout=30).text
        return directory, scrape
    finally:
        proc.stop()


def test_default_values_run_a_repository(helm: Helm, tmp_path: Path) -> None:
    objs = helm.template()
    directory, _ = _serve(objs, tmp_path, _pod_env(objs), "chart-default-repository")
    assert directory["newOrder"] == "https://certdepot-repository.certdepot.svc/acme/new-order"
    assert directory["meta"]["download-enabled"] is True


def test_repository_service_monitor_scrapes_real_metrics(helm: Helm, tmp_path: Path) -> None:
    objs = helm.template("--set", "repository.serviceMonitor.enabled=true")
    # Switching the ServiceMonitor on adds it, and no other object (each render generates
    # its own key-encryption key, so compare names).
    def names(rendered: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(o["kind"], o["metadata"]["name"]) for o in rendered]

    assert names(objs) == [*names(helm.template()), ("ServiceMonitor", "certdepot-repository")]
    _, scrape = _serve(objs, tmp_path, _pod_env(objs), "chart-monitored-repository")
    # The probes and the directory request above were counted.
    assert 'certdepot_repository_requests_total{endpoint="readyz",status="200"}' in scrape, (
        scrape)
    assert "# TYPE certdepot_repository_key_deliveries_total counter" in scrape, scrape


def test_repository_reaches_postgres_with_the_charts_pgpassword(
        helm: Helm, postgres: Any, tmp_path: Path) -> None:
    full = make_url(postgres.new_database("chart_pg"))
    url = _without_password(full)
    assert full.password and full.password not in url
    objs = _render(helm, url, full.password)
    cm = _find(objs, "ConfigMap", "-repository")["data"]["config.yaml"]
    assert full.password not in cm, "the password is in the ConfigMap"
    env = _pod_env(objs)
    assert env["PGPASSWORD"] == full.password
    assert "newOrder" in _serve(objs, tmp_path, env, "chart-pg-repository")[0]


def test_without_pgpassword_postgres_refuses_the_repository(
        helm: Helm, postgres: Any, tmp_path: Path) -> None:
    full = make_url(postgres.new_database("chart_pg_refused"))
    url = _without_password(full)
    objs = _render(helm, url, full.password or "")
    env = {k: v for k, v in _pod_env(objs).items() if k != "PGPASSWORD"}
    config_path, _ = _local_config(objs, tmp_path)
    argv = [sys.executable, "-m", "certdepot.cli", "repository", "serve",
            "--config", str(config_path)]
    # PGPASSWORD from this environment would defeat the point.
    extra = {**env, "PGPASSWORD": "", "PGPASSFILE": str(tmp_path / "no-pgpass"),
             "PYTHONPATH": str(ROOT / "operator")}
    proc = procs.start("chart-pg-refused", argv, log_path=tmp_path / "refused.log",
                       extra_env=extra)
    try:
        status = proc.popen.wait(timeout=60)
    finally:
        proc.stop()
    log = (tmp_path / "refused.log").read_text()
    assert status != 0, log
    assert "password" in log.lower(), log
    assert full.password and full.password not in log, "the password was logged"
