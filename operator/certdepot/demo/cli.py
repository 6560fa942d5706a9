"""``certdepot demo``."""

from __future__ import annotations

import click


@click.command()
@click.option("--keep", is_flag=True, help="Leave everything running and print how to look around.")
@click.option("--upstream", type=click.Choice(["local-ca", "pebble"]), default="local-ca",
              show_default=True, help="Where the repository gets certificates from.")
def demo(keep: bool, upstream: str) -> None:
    """Run the end-to-end demo on this machine (no cluster or CA account needed)."""
    raise click.ClickException("the demo is not yet implemented")
