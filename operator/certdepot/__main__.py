"""``python -m certdepot``: the ``certdepot`` command line."""

from certdepot.cli import main

main(prog_name="certdepot")
