"""Live reload attacked: the watched configuration file of a real ``certdepot repository
serve`` process is replaced by a symlink loop, a directory, a named pipe, an empty file, a
100 MB file, bytes that are not UTF-8, deep nesting and YAML "billion laughs" bombs. Each
is rejected and counted, the configuration in force stays (its tenant keeps its policy),
the process's peak memory stays bounded, nothing is logged as a traceback, and a valid
file written afterwards still applies (the watcher is alive)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml
from repository_harness import base_config, running, write_config

from certdepot.testenv import procs

TOKEN = "admin-token-" + "r" * 40
REJECTED = 'certdepot_repository_config_reloads_total{result="rejected",source="file"}'


def _bomb(levels: int, leaf: str = '"lol"') -> str:
    lines = [f"l0: &l0 [{', '.join([leaf] * 9)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def _valid_with_bomb(valid: str, levels: int) -> str:
    """A valid file whose delegation's csrTemplate carries the bomb (validation, and its
    error messages, walk everything in it)."""
    doc = yaml.safe_load(valid)
    text = yaml.safe_dump(doc) + _bomb(levels).replace("l0:", "x0:").replace("\nl", "\nx")
    return text.replace("&l", "&x").replace("*l", "*x")


Hostile = Callable[[Path, str], None]


def _replace(path: Path, make: Callable[[Path], None]) -> None:
    """Put what ``make`` creates at ``path`` in one rename, as an editor or a ConfigMap
    update would (a directory cannot replace a file: the old entry goes first then)."""
    tmp = path.with_name(path.name + ".new")
    make(tmp)
    if tmp.is_dir() or (path.is_dir() and not path.is_symlink()):
        _remove(path)
    os.replace(tmp, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    else:
        path.unlink(missing_ok=True)


# Consecutive cases differ in what ``stat`` sees (a dangling link right after a looping one
# would look unchanged to the poll): real files sit between the unreadable ones.
CASES: dict[str, Hostile] = {
    "symlink-loop": lambda p, v: _replace(p, lambda t: t.symlink_to(p.name)),
    "empty": lambda p, v: _replace(p, lambda t: t.write_bytes(b"")),
    "directory": lambda p, v: _replace(p, lambda t: t.mkdir()),
    "not-utf8": lambda p, v: _replace(p, lambda t: t.write_bytes(
        v.encode() + b"# \xff\xfe\xc0\n")),
    "dangling-symlink": lambda p, v: _replace(p, lambda t: t.symlink_to("/nonexistent")),
    "utf16": lambda p, v: _replace(p, lambda t: t.write_bytes(v.encode("utf-16"))),
    "fifo": lambda p, v: _replace(p, lambda t: os.mkfifo(t)),
    "100MB": lambda p, v: _replace(p, lambda t: t.write_bytes(
        v.encode() + b"#" + b"x" * (100 << 20) + b"\n")),
    "nul": lambda p, v: _replace(p, lambda t: t.write_bytes(v.encode() + b"x: \x00\n")),
    "deep": lambda p, v: _replace(p, lambda t: t.write_text(v + "x: " + "[" * 50_000)),
    "billion-laughs": lambda p, v: _replace(p, lambda t: t.write_text(_bomb(9))),
    "bomb-in-valid-file": lambda p, v: _replace(p, lambda t: t.write_text(
        _valid_with_bomb(v, 8))),
    "recursive-alias": lambda p, v: _replace(p, lambda t: t.write_text(
        v + "x: &r [*r, *r]\n")),
    "not-a-mapping": lambda p, v: _replace(p, lambda t: t.write_text("- 1\n- 2\n")),
}


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def _metric(http: httpx.Client, base: str) -> float:
    text = http.get(f"{base}/metrics").text
    found = [ln for ln in text.splitlines() if ln.startswith(REJECTED)]
    return float(found[0].rsplit(" ", 1)[1]) if found else 0.0


def _wait(check: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def hostile_cases() -> dict[str, Hostile]:
    return CASES


def test_hostile_files_leave_the_configuration_in_force(
        tmp_path: Path, hostile_cases: dict[str, Hostile]) -> None:
    (tmp_path / "admin-token").write_text(TOKEN)
    port = procs.free_port()
    cfg = base_config(tmp_path, port, issuers=[{"name": "local", "type": "local-ca"}],
                      defaultIssuer="local", configReloadInterval="1s",
                      tenants=[{"name": "team-a", "issue": ["*.a.example.test"]}],
                      admin={"tokenFile": str(tmp_path / "admin-token")})
    path = write_config(tmp_path, cfg)
    valid = path.read_text()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with running(tmp_path, path, port) as repo, \
            httpx.Client(verify=repo.ssl_context(), timeout=30) as http:
        pid = repo.proc.popen.pid
        base_rss = _peak_rss_mb(pid)

        def policies() -> dict[str, bool]:
            rows = http.get(f"{repo.base_url}/admin/v1/tenants", headers=auth).json()
            return {t["name"]: t["policy"] for t in rows["tenants"]}

        wrong = []
        for name, make in hostile_cases.items():
            before = _metric(http, repo.base_url)
            make(path, valid)
            try:
                _wait(lambda b=before: _metric(http, repo.base_url) > b, f"{name} rejected",
                      within=10)
            except AssertionError as exc:
                wrong.append(str(exc))
            assert policies() == {"team-a": True}, name
            assert http.get(f"{repo.base_url}/directory").status_code == 200
        assert not wrong, wrong
        assert _peak_rss_mb(pid) - base_rss < 60, (base_rss, _peak_rss_mb(pid))
        cfg["tenants"].append({"name": "team-b", "issue": ["*.b.example.test"]})
        _replace(path, lambda t: t.write_text(yaml.safe_dump(cfg)))
        _wait(lambda: policies() == {"team-a": True, "team-b": True}, "valid file applied")
    log = repo.proc.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert log.count("not usable; the previous configuration stays in force") >= len(
        hostile_cases)
