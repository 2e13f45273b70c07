"""``python -m vmdr``: the same as the ``vmdr`` command."""

from vmdr.cli.main import main

main()
