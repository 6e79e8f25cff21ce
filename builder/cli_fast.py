"""The ``builder`` console script: ``validate`` and ``schema`` answered before typer loads.

These two commands promise an answer in under 0.5 s (bench/README.md, command latency). Importing
typer and click is a large share of that, and typer imports pydantic's model machinery for its
own options on top, so ``main`` runs these two commands itself when their arguments are plain
(no options) and hands everything else, ``--help`` included, to the typer app in ``builder.cli``.
Both run the same functions (``builder.cli_common``), so both paths print the same lines and exit
codes. ``schema`` prints the shipped schema file and imports no pydantic at all.

Like ``builder.cli``, this module may print and exit; nothing in the library imports it.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Imported first: it sets the environment that quiets TensorFlow and pydantic's plugin scan.
from builder.cli_common import schema, validate


def _plain(args: Sequence[str]) -> bool:
    # An option anywhere (--help, --debug, `--` ...) is typer's to parse.
    return all(not arg.startswith("-") for arg in args)


def _without_gc(command: Callable[..., int], *args: Any) -> int:
    # Importing pydantic and building the config's validators allocates tens of thousands of
    # objects that live until exit; passes of the collector over them are pure cost here
    # (bench/README.md, command latency).
    gc.disable()
    try:
        return command(*args)
    finally:
        gc.enable()


def _reader_left() -> int:
    # `builder schema | head`: the reader closed the pipe. Say nothing more, as click does, and
    # point stdout at /dev/null so that no later flush raises again. Exit code 1, as click's.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


def _exit_now(code: int) -> None:
    # Tearing the interpreter down (freeing every module pydantic brought in) is a large share of
    # `validate`'s time (bench/README.md, command latency). These commands write no files and
    # register nothing to run at exit, so the process ends as soon as its output is flushed.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = _reader_left()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run ``validate``/``schema`` at once, else the typer app.

    Args:
        argv: the arguments after ``builder``; ``None`` (the console script) reads
            ``sys.argv`` and ends the process with ``os._exit`` once output is flushed.
            Given, a fast command ends with ``SystemExit`` instead (for tests and embedding).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(args) >= 2 and args[0] == "validate" and _plain(args):
            code = _without_gc(validate, [Path(arg) for arg in args[1:]])
        elif args == ["schema"]:
            code = schema()
        else:
            from builder.cli import main as typer_main

            typer_main(args)  # refuses a NUL byte in an argument in one line, then typer
            return
    except BrokenPipeError:
        code = _reader_left()
    if argv is None:
        _exit_now(code)
    sys.exit(code)
