"""``certdepot operator ...``: run the in-cluster operator."""

from __future__ import annotations

import click


@click.group(name="operator")
def operator_group() -> None:
    """The in-cluster operator that reconciles certdepot.io resources into TLS Secrets."""
