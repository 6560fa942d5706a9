"""``certdepot dev ...``: developer tools."""

from __future__ import annotations

import click


@click.group()
def dev() -> None:
    """Developer tools: provision the binaries that the tests and the demo run."""
