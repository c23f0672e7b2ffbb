"""``python -m qubert.cli``: the ``qubert`` command."""

from qubert.cli import main

main()
