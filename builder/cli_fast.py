"""The ``builder`` console script: ``validate`` and ``schema`` answered before typer loads.

These two commands promise an answer in under 0.5 s (bench/README.md, command latency). Typer and
click take ~0.1 s to import, and typer imports pydantic's model machinery for its own options on
top, so ``main`` runs these two commands itself when their arguments are plain (no options) and
hands everything else, ``--help`` included, to the typer app in ``builder.cli``. The typer
commands call the same functions, so both paths print the same lines and exit codes. ``schema``
prints the shipped schema file and imports no pydantic at all.

Like ``builder.cli``, this module may print and exit; nothing in the library imports it.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Quiet TensorFlow's C++ logging and the oneDNN banner before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# builder's config needs no pydantic plugins; looking for them scans every installed package's
# entry points (~20-40 ms of the 0.5 s that `validate` and `schema` may take).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def validate(paths: Sequence[Path]) -> int:
    """Check each config (and that its data path exists); print a line per file.

    Returns:
        The exit code: 0 when every config is valid, 2 otherwise.
    """
    from builder.config import load_config
    from builder.errors import ConfigError

    failed = 0
    for path in paths:
        try:
            config = load_config(path)
            if config.data.path is not None:
                config.check_data_path()
        except ConfigError as error:
            failed += 1
            sys.stderr.write(f"invalid: {error}\n")
            continue
        sys.stdout.write(f"valid: {path} ({config.name}, {config.task})\n")
    return 2 if failed else 0


def schema() -> int:
    """Print the config's JSON Schema (the shipped ``builder.SCHEMA_FILE``). Returns 0."""
    from builder import SCHEMA_FILE

    sys.stdout.write(SCHEMA_FILE.read_text(encoding="utf-8"))
    return 0


def _plain(args: Sequence[str]) -> bool:
    # An option anywhere (--help, --debug, `--` ...) is typer's to parse.
    return all(not arg.startswith("-") for arg in args)


def _without_gc(command: Callable[..., int], *args: Any) -> int:
    # Importing pydantic and building the config's validators allocates tens of thousands of
    # objects that live until exit; the collector's passes over them are ~6% of `validate`.
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
    # Tearing the interpreter down (freeing every module pydantic brought in) takes ~85 ms, a
    # fifth of `validate`. These commands write no files and register nothing to run at exit, so
    # the process ends as soon as its output is flushed.
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
            from builder.cli import app

            app(args=args, prog_name="builder")
            return
    except BrokenPipeError:
        code = _reader_left()
    if argv is None:
        _exit_now(code)
    sys.exit(code)
