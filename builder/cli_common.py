"""What both command-line entry points share: the process environment, ``validate``, ``schema``.

``builder.cli_fast`` (the console script) runs these two commands itself when their arguments are
plain; the typer app in ``builder.cli`` runs them for every other form. Both import this module,
so the dependency goes one way (``cli_fast`` -> ``cli`` -> ``cli_common``) and both paths print the
same lines and exit codes. Like the other ``cli`` modules this one prints; the library never
imports it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Quiet TensorFlow's C++ logging and the oneDNN banner before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# builder's config needs no pydantic plugins; looking for them scans every installed package's
# entry points, a measurable share of the time `validate` and `schema` may take
# (bench/README.md, command latency).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


# Below this size `validate` reads a config's CSV values too (a fraction of a second); above it,
# only the header, unless --data names the file.
VALUES_BYTES = 8 << 20


def validate(paths: Sequence[Path], data: Path | None = None) -> int:
    """Check each config, and its CSV as ``train`` would read it; print a line per problem.

    The CSV's header is always checked (every feature and the target exist); its values too
    when the file is at most ``VALUES_BYTES`` or ``data`` names it, with the rules and messages
    of training's reader, every problem on its own line.

    Args:
        paths: the config files.
        data: a CSV to check instead of each config's ``data.path`` (as ``train --data``).

    Returns:
        The exit code: 0 when every config is valid, 2 otherwise.
    """
    from builder.config import load_config
    from builder.errors import BuilderError

    failed = 0
    for path in paths:
        note = ""
        try:
            config = load_config(path)
            csv = data if data is not None else config.data.path and config.check_data_path()
        except BuilderError as error:  # names the config's file and line already
            failed += 1
            sys.stderr.write(f"invalid: {error}\n")
            continue
        found: list[str] = []
        if csv:
            from builder.data import examine

            try:
                values = data is not None or Path(csv).stat().st_size <= VALUES_BYTES
                if not values:
                    size = f"over {VALUES_BYTES >> 20} MiB"
                    note = f"; values not read: {csv} is {size}, --data reads them"
                split = config.data.split
                found, table = examine(
                    csv,
                    config.data.features,
                    config.data.target,
                    values=values,
                    validation=split.validation,
                    test=split.test,
                    seed=split.seed,
                    missing=config.data.missing,
                    classification=config.task == "classification",
                    unknown=config.data.unknown,
                )
                if values and not found:
                    labels = table.labels
                    config.with_data(table.kinds, labels.classes if labels else None)
                    note += inferred_note(table)
            except (BuilderError, OSError) as error:
                found = [str(error)]
        found = [f"{path}: {problem}" for problem in found]
        if found:
            failed += 1
            sys.stderr.writelines(f"invalid: {problem}\n" for problem in found)
            continue
        sys.stdout.write(f"valid: {path} ({config.name}, {config.task}{note})\n")
    return 2 if failed else 0


def inferred_note(table: Any) -> str:
    """What training will infer from the data, for ``validate``'s line: the categorical
    columns with their value counts, and a classification's classes."""
    parts = [
        f"{name} categorical ({len(vocabulary)} values)"
        for name, vocabulary in table.vocabularies.items()
    ]
    labels = table.labels
    if labels is not None:
        shown = ", ".join(labels.classes[:6]) + (" ..." if len(labels.classes) > 6 else "")
        parts.append(f"{len(labels.classes)} classes: {shown}")
    return "; " + "; ".join(parts) if parts else ""


def schema() -> int:
    """Print the config's JSON Schema (the shipped ``builder.SCHEMA_FILE``).

    Returns:
        The exit code, 0.
    """
    from builder import SCHEMA_FILE

    sys.stdout.write(SCHEMA_FILE.read_text(encoding="utf-8"))
    return 0
