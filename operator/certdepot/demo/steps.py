"""Numbered demo steps: what is happening now, how long it took, and what broke.

A failing step raises :class:`StepFailed`, which names the step and carries the tails of
the logs that explain it (the process that died, or the ones a wait depended on), so the
command can print them and exit non-zero instead of a bare traceback.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import click

from certdepot.testenv import procs

Echo = Callable[[str], None]


class StepFailed(Exception):
    """A demo step failed; ``logs`` maps a log file to the lines worth showing."""

    def __init__(self, step: str, message: str, logs: Sequence[Path] = ()) -> None:
        super().__init__(f"step '{step}' failed: {message}")
        self.step = step
        self.message = message
        self.logs = list(logs)

    def report(self, lines: int = 30) -> str:
        out = [f"FAILED at step '{self.step}':", self.message.rstrip()]
        for path in self.logs:
            text = procs.tail(path, lines)
            if text and text not in self.message:
                out += [f"--- last {lines} lines of {path} ---", text]
        return "\n".join(out)


class Steps:
    """Prints ``[n/total] title ... ok (1.2s)`` around each step and times the run."""

    def __init__(self, total: int, echo: Echo = click.echo) -> None:
        self.total = total
        self.echo = echo
        self.number = 0
        self.started = time.monotonic()
        self.durations: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def step(self, title: str, logs: Callable[[], Sequence[Path]] = lambda: (),
             heartbeat: float | None = 15.0) -> Iterator[None]:
        """Run one step; any exception becomes :class:`StepFailed` naming ``title``.

        ``logs`` is called only on failure: the processes a step depends on may not exist
        when it begins. A step that takes longer than ``heartbeat`` seconds says so every
        ``heartbeat`` seconds (a cold build of kube-apiserver takes minutes); None for a
        step that reports its own progress.
        """
        self.number += 1
        self.echo(f"[{self.number:2}/{self.total}] {title}")
        began = time.monotonic()
        done = threading.Event()

        def beat() -> None:
            while heartbeat is not None and not done.wait(heartbeat):
                self.echo(f"        ... still at it ({time.monotonic() - began:.0f}s)")

        beater = threading.Thread(target=beat, name="step-heartbeat", daemon=True)
        beater.start()
        try:
            yield
        except StepFailed:
            raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # every failure is reported the same way
            raise StepFailed(title, _describe(exc), logs()) from exc
        finally:
            done.set()
            beater.join()
        took = time.monotonic() - began
        self.durations.append((title, took))
        self.echo(f"        ok ({took:.1f}s)")

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    stderr = getattr(exc, "stderr", None)
    if isinstance(stderr, str) and stderr.strip() and stderr.strip() not in text:
        text += f"\n{stderr.strip()}"
    return text
