"""CPU seconds and resident memory of processes, read from /proc (Linux)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as fh:
        # The command name may contain spaces: fields start after its closing parenthesis.
        fields = fh.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _TICKS


def rss_bytes(pid: int, key: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def wait_quiet(pids: dict[str, int], *, below: float = 0.1, window: float = 1.0,
               timeout: float = 60.0) -> float:
    """Until the processes together use less than ``below`` cores over ``window`` seconds
    (work left from the previous run); returns the seconds waited (``timeout`` at most)."""
    began = time.monotonic()
    while True:
        start = {n: cpu_seconds(p) for n, p in pids.items()}
        time.sleep(window)
        used = sum(cpu_seconds(p) - start[n] for n, p in pids.items())
        waited = time.monotonic() - began
        if used / window < below or waited >= timeout:
            return waited


@dataclass
class Watch:
    """CPU delta and peak RSS of some processes over a window (a sampling thread)."""

    pids: dict[str, int]
    interval: float = 0.1
    peak_rss: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    _start_cpu: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Watch:
        self._start_cpu = {n: cpu_seconds(p) for n, p in self.pids.items()}
        self.peak_rss = {n: rss_bytes(p) for n, p in self.pids.items()}
        self._thread = threading.Thread(target=self._sample, name="procstat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.cpu = {n: cpu_seconds(p) - self._start_cpu[n] for n, p in self.pids.items()}

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            for name, pid in self.pids.items():
                with contextlib.suppress(OSError):
                    self.peak_rss[name] = max(self.peak_rss[name], rss_bytes(pid))
