"""``python -m hct_cli``: the same as the ``hct`` command."""

from hct_cli.cli.app import main

main()
