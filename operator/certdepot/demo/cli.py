"""``certdepot demo``."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from certdepot.demo import keep as kept_demo
from certdepot.demo.manifests import examples_dir

if TYPE_CHECKING:
    from certdepot.demo.run import Demo, Options


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM must clean up like Ctrl-C, not leave a temporary directory behind.
    raise KeyboardInterrupt(f"signal {signum}")


@click.command()
@click.option("--keep", is_flag=True, help="Leave everything running and print how to look around.")
@click.option("--upstream", type=click.Choice(["local-ca", "pebble"]), default="local-ca",
              show_default=True, help="Where the repository gets certificates from.")
@click.option("--stop", "stop_kept", is_flag=True,
              help="Stop a demo started with --keep and remove its files.")
@click.option("--timeout", type=float, default=180.0, show_default=True,
              help="Seconds to wait for the resources to become Ready.")
@click.option("--examples", type=click.Path(file_okay=False, path_type=Path),
              default=examples_dir, show_default="examples/ of this checkout",
              help="Directory of manifests to apply.")
@click.option(kept_demo.SUPERVISE_FLAG, "supervise",
              type=click.Path(file_okay=False, path_type=Path), hidden=True)
def demo(keep: bool, upstream: str, stop_kept: bool, timeout: float, examples: Path,
         supervise: Path | None) -> None:
    """Run the end-to-end demo on this machine (no cluster or CA account needed).

    Starts etcd + kube-apiserver, the repository (embedded local CA, or Pebble with
    --upstream pebble) and the operator on 127.0.0.1, applies examples/, waits until every
    Secret is written and proves each with a verifying TLS handshake. Everything is
    stopped and removed at the end unless --keep is given.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    if stop_kept:
        sys.exit(kept_demo.stop(click.echo))
    from certdepot.demo.run import Options

    if not examples.is_dir():
        # The examples (and crds/) ship with the source tree, not inside the package.
        raise click.ClickException(f"no examples directory at {examples}: run the demo from "
                                   "a source checkout (`make demo`) or pass --examples DIR")
    options = Options(upstream=upstream, timeout=timeout, examples=examples)
    if supervise is not None:
        options.workdir = supervise
        sys.exit(_run(options, keep=True))
    if keep:
        running = kept_demo.running()
        if running is not None:
            raise click.ClickException(
                f"a kept demo is already running (pid {running.pid}, {running.workdir}); "
                "stop it first with `certdepot demo --stop`")
        workdir = Path(tempfile.mkdtemp(prefix="certdepot-demo-"))
        argv = ["--upstream", upstream, "--timeout", str(timeout), "--examples", str(examples)]
        sys.exit(kept_demo.start_supervisor(argv, workdir, click.echo, timeout + 600))
    sys.exit(_run(options, keep=False))


def _run(options: Options, *, keep: bool) -> int:
    # Imported here: `certdepot --help` should not load the kubernetes client.
    from certdepot.demo.run import Demo, describe_failure
    from certdepot.testenv import provision

    demo = Demo(options, click.echo)
    click.echo(f"certdepot demo ({options.upstream}) in {demo.workdir}")
    try:
        outcome = demo.run()
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        _clean_up(demo)
        return 130
    except Exception as exc:  # reported with the step and the logs
        click.echo(describe_failure(exc), err=True)
        _clean_up(demo)
        return 1
    click.echo(f"demo completed in {outcome.seconds:.1f}s")
    if not keep:
        _clean_up(demo)
        return 0
    state = kept_demo.KeptDemo(
        pid=os.getpid(), workdir=str(demo.workdir), kubeconfig=str(demo.kube_config()),
        kubectl=str(provision.binary("kubectl")), repository_config=str(demo.config_path))
    state.save(kept_demo.state_path())
    for line in kept_demo.instructions(state):
        click.echo(line)
    click.echo(kept_demo.READY_MARKER)
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        _clean_up(demo)
        if (kept := kept_demo.KeptDemo.load(kept_demo.state_path())) and kept.pid == os.getpid():
            kept_demo.state_path().unlink(missing_ok=True)
    return 0


def _clean_up(demo: Demo) -> None:
    pids = [(p.name, p.pid) for p in demo.processes()]
    began = time.monotonic()
    demo.close()
    alive = [f"{name} (pid {pid})" for name, pid in pids if _alive(pid)]
    gone = "removed" if not demo.workdir.exists() else "NOT removed"
    click.echo(f"cleaned up: stopped {len(pids)} process(es) "
               f"[{', '.join(f'{n} {p}' for n, p in pids)}], {demo.workdir} {gone} "
               f"({time.monotonic() - began:.1f}s)")
    if alive:
        click.echo(f"warning: still running: {', '.join(alive)}", err=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
