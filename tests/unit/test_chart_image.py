"""The Dockerfile keeps the promises the chart relies on (no image can be built here).

The chart runs the image as UID/GID 10001 with a read-only root filesystem and calls the
`certdepot` entry point with `repository serve` / `operator run`; these tests read the
Dockerfile and fail if it stops matching that.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPILERS = ("gcc", "g++", "build-essential", "clang", "make ", "cc ")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions():
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def test_multi_stage_on_a_slim_python_base() -> None:
    stages = _stages()
    assert len(stages) >= 2, "expected a build stage and a runtime stage"
    args = dict(a.split("=", 1) for w, a in _instructions() if w == "ARG" and "=" in a)
    base = args.get("PYTHON_IMAGE", "")
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base
    for stage in stages:
        assert stage[0][1].split()[0] == "${PYTHON_IMAGE}"


def test_dependencies_come_from_the_constraints_as_wheels() -> None:
    runs = " ".join(a for w, a in _stages()[0] if w == "RUN")
    assert "-c constraints.txt" in runs
    assert "--only-binary=:all:" in runs, "a source build would need a compiler"


def test_no_compiler_in_the_final_stage() -> None:
    final = _stages()[-1]
    text = " ".join(a for _, a in final).lower()
    for tool in COMPILERS:
        assert tool not in text, f"{tool!r} in the final stage"
    copies = [a for w, a in final if w == "COPY"]
    assert copies == ["--from=build /opt/certdepot /opt/certdepot"], copies


def test_fixed_non_root_user_matching_the_chart() -> None:
    final = _stages()[-1]
    users = [a for w, a in final if w == "USER"]
    assert users == ["10001:10001"]
    values = yaml.safe_load((ROOT / "charts/certdepot/values.yaml").read_text())
    for component in ("operator", "repository"):
        ctx = values[component]["podSecurityContext"]
        assert (ctx["runAsUser"], ctx["runAsGroup"]) == (10001, 10001), component


def test_entrypoint_is_certdepot() -> None:
    entry = [a for w, a in _stages()[-1] if w == "ENTRYPOINT"]
    assert len(entry) == 1
    assert json.loads(entry[0]) == ["/opt/certdepot/bin/certdepot"]


def test_oci_labels() -> None:
    labels = " ".join(a for w, a in _stages()[-1] if w == "LABEL")
    for name in ("title", "description", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{name}=" in labels, name


def test_build_context_is_minimal() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "ignore everything by default"
    for needed in ("!pyproject.toml", "!constraints.txt", "!README.md", "!operator/"):
        assert needed in lines
    copied = [a.split()[:-1] for w, a in _instructions() if w == "COPY" and "--from" not in a]
    for sources in copied:
        for src in sources:
            assert f"!{src}" in lines or f"!{src.rstrip('/')}/" in lines, src


def test_the_build_only_ca_stays_in_the_build_stage() -> None:
    # `make image` passes the host's locally added CAs (a TLS-intercepting proxy's) for pip;
    # they must not reach the runtime image.
    build, final = _stages()[0], _stages()[-1]
    assert any("EXTRA_CA_CERTS" in a for w, a in build if w in ("ARG", "RUN"))
    assert not any("EXTRA_CA_CERTS" in a or "pip-ca" in a for _, a in final)
