"""``certdepot repository ...``: run and administer the repository."""

from __future__ import annotations

import click


@click.group()
def repository() -> None:
    """The central repository: an ACME server that keeps, renews and hands out certificates."""
