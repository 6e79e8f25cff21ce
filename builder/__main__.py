"""``python -m builder``: the same as the ``builder`` command."""

from builder.cli_fast import main

main()
