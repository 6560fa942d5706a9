"""The ``certdepot`` command line: one entry point, one command group per component.

Each component owns its group (``certdepot.<component>.cli``) so this file stays a table.
"""

from __future__ import annotations

import click

from certdepot import __version__
from certdepot.controller.cli import operator_group
from certdepot.demo.cli import demo
from certdepot.kubectl.cli import plugin
from certdepot.repository.cli import repository
from certdepot.testenv.cli import dev


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="certdepot")
def main() -> None:
    """certdepot distributes TLS certificates to Kubernetes pods over ACME.

    Run a central repository that obtains and renews certificates once, and an
    operator in each cluster that writes them into kubernetes.io/tls Secrets.
    """


main.add_command(repository)
main.add_command(operator_group)
main.add_command(demo)
main.add_command(dev)
# The kubectl plugin's commands, also installed as `kubectl-certdepot` (kubectl certdepot).
main.add_command(plugin, "kubectl")


if __name__ == "__main__":  # pragma: no cover
    main()
