"""``python -m bench.profile``: where the repository spends a download (or plain) load.

Starts a repository (SQLite, local-ca), drives ``--concurrency`` clients for ``--seconds``
while py-spy samples the repository process, and prints the functions with the largest
inclusive and self shares of the samples (the collapsed stacks are kept for flame graphs).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench import throughput as tp
from bench.stack import CLUSTER_TENANT, DOMAIN, Stack, managed_names

RESULTS = Path(__file__).resolve().parent / "results"


def summarise(collapsed: Path, top: int = 25) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue  # a frame name with a line break in it (py-spy's raw format)
        n = int(count)
        total += n
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    out = [f"{total} samples", "inclusive:"]
    out += [f"  {n / total * 100:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    out.append("self:")
    out += [f"  {n / total * 100:5.1f}%  {f}" for f, n in own.most_common(top)]
    return "\n".join(out)


class Recorder:
    """py-spy sampling one process while the ``with`` block runs (collapsed stacks)."""

    def __init__(self, pid: int, out: Path, rate: int = 100) -> None:
        self.pid, self.out, self.rate = pid, out, rate
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Recorder:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [spy, "record", "--pid", str(self.pid), "--format", "raw", "--gil", "--rate",
             str(self.rate), "--output", str(self.out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        # py-spy writes its output when interrupted.
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def hot(collapsed: Path, match: str = "certdepot/", top: int = 15) -> list[tuple[str, float]]:
    """The ``match`` frames with the largest inclusive share of the samples (in %)."""
    inclusive: Counter[str] = Counter()
    total = 0
    if not collapsed.exists():
        return []
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        for frame in {f for f in stack.split(";") if match in f}:
            inclusive[frame] += int(count)
    return [(f, round(n / total * 100, 1)) for f, n in inclusive.most_common(top)] if total \
        else []


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("--kind", choices=["download", "plain"], default="download")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=RESULTS / "profile-repository.txt")
    args = p.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    stack = Stack(print)
    try:
        repo = stack.repository("profile", certificates=10)
        names = list(managed_names(10).values())
        session = (tp.download_session(names) if args.kind == "download"
                   else tp.plain_session(f"plain.{DOMAIN}"))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        collapsed = args.out.with_suffix(".collapsed")
        recorder = subprocess.Popen(
            [spy, "record", "--pid", str(repo.pid), "--format", "raw", "--rate", "200", "--gil",
             "--duration", str(int(args.seconds) + 4), "--output", str(collapsed),
             "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            result = tp.run(tp.measure(repo.directory_url, repo.ca_path,
                                            repo.eab[CLUSTER_TENANT], session,
                                            args.concurrency, args.seconds, 1, repo.pid))
        finally:
            recorder.wait(timeout=args.seconds + 60)
        text = (f"{args.kind} c={args.concurrency}: {result['sessions_per_s']['median']:.1f} "
                f"sessions/s, server CPU {result['server_cpu_ms_per_session']} ms/session, "
                f"client CPU {result['client_cpu_ms_per_session']} ms/session\n"
                + summarise(collapsed))
        args.out.write_text(text)
        print(text)
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
