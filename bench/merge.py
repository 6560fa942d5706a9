"""``python -m bench.merge RUN.json PHASE_RUN.json --phases economy``: replace phases of a
run by those of a later run of only those phases (``python -m bench --phases ...``), e.g.
after one phase failed. The merged file says which phases came from which run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import report, rotation


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.merge")
    p.add_argument("run", type=Path)
    p.add_argument("phase_run", type=Path)
    p.add_argument("--phases", type=lambda s: s.split(","), required=True)
    p.add_argument("--why", default=None,
                   help="why the phases were run again (RESULTS.md says it; default: "
                        "re-run on a quieter machine)")
    p.add_argument("--publish", action="store_true",
                   help="write the result to bench/RESULTS.json, RESULTS.md, results.png")
    args = p.parse_args()
    run = json.loads(args.run.read_text())
    other = json.loads(args.phase_run.read_text())
    for phase in args.phases:
        if phase not in other:
            raise SystemExit(f"{args.phase_run} has no {phase!r} results")
        run[phase] = other[phase]
        run.setdefault("phase_runs", {})[phase] = {
            "started": other.get("started"), "finished": other.get("finished"),
            "load_average": other.get("load_average"), "args": other.get("args"),
            "main_run_error": run.setdefault("errors", {}).pop(phase, None),
            "why": args.why}
    run["targets"] = report.targets(run)
    out = args.run.with_name(args.run.stem + "-merged.json")
    out.write_text(json.dumps(run, indent=2, default=str))
    print(report.table(run))
    if args.publish:
        here = Path(__file__).resolve().parent
        (here / "RESULTS.json").write_text(out.read_text())
        md = here / "RESULTS.md"
        old = md.read_text() if md.exists() else ""
        # The rotation section comes from its own run (python -m bench.rotation): kept.
        md.write_text(rotation.carry_section(report.markdown(run), old))
        report.chart(run, here / "results.png")
        print(f"published to {here}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
