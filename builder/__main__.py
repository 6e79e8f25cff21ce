"""``python -m builder``: the same as the ``builder`` command."""

from builder.cli import main

main()
