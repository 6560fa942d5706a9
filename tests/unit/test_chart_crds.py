"""The chart carries the CRDs of crds/ unchanged.

charts/certdepot/crds is a link to ../../crds, so there is nothing to copy and nothing to
forget. These tests catch the ways that can still go wrong: the link replaced by a stale
copy, a file missing or added on one side, or a file that differs by a single byte.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "crds"
CHART_CRDS = ROOT / "charts" / "certdepot" / "crds"


def _yaml_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())
            if p.suffix in (".yaml", ".yml") and p.is_file()}


def test_crds_exist() -> None:
    assert SOURCE.is_dir(), f"{SOURCE} is missing"
    assert _yaml_files(SOURCE), f"no CRD YAML in {SOURCE}"


def test_chart_crds_are_the_source_crds_byte_for_byte() -> None:
    assert CHART_CRDS.is_dir(), (
        f"{CHART_CRDS} is missing; restore the link: ln -s ../../crds {CHART_CRDS}")
    source, chart = _yaml_files(SOURCE), _yaml_files(CHART_CRDS)
    assert sorted(chart) == sorted(source), (
        f"CRD files differ: only in crds/: {sorted(set(source) - set(chart))}, "
        f"only in the chart: {sorted(set(chart) - set(source))}")
    drifted = [name for name in source if source[name] != chart[name]]
    assert not drifted, (
        f"chart CRDs drifted from crds/: {drifted}; charts/certdepot/crds should be the "
        "link ../../crds, not a copy")


def test_chart_crds_is_the_link_to_the_source() -> None:
    # A copy would pass the byte comparison today and drift tomorrow.
    assert CHART_CRDS.is_symlink(), f"{CHART_CRDS} should be a symlink to ../../crds"
    assert CHART_CRDS.resolve() == SOURCE.resolve()


def test_every_chart_crd_is_a_certdepot_crd() -> None:
    # Helm installs everything in crds/ verbatim, before templates, and never templates it:
    # only plain CustomResourceDefinitions belong there.
    for name, text in _yaml_files(CHART_CRDS).items():
        docs = [d for d in yaml.safe_load_all(text) if d]
        assert docs, f"{name} holds no YAML document"
        for doc in docs:
            assert doc["apiVersion"] == "apiextensions.k8s.io/v1", name
            assert doc["kind"] == "CustomResourceDefinition", name
            assert doc["spec"]["group"] == "certdepot.io", name
        assert b"{{" not in text, f"{name} contains template syntax, which helm would not render"
