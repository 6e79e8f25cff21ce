"""Config rules: how a check says that a value breaks one, and how pydantic's own errors read.

A check inside a pydantic validator raises ``rule_error(...)``; ``builder.config`` turns it into
the one-line ``where rule. Received: ... (file, line N)`` message. ``rule_text`` words pydantic's
built-in errors (bounds, types) the same way, for checks that run a nested validation
(``builder.search``). This module imports only pydantic-core: both ``builder.config`` and
``builder.search`` build on it, so it must import neither.
"""

from __future__ import annotations

import difflib
import math
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic_core import PydanticCustomError

from builder.files import file_kind

# A key path below the model being validated: one key, or several (`("tune", "objective")`).
Loc = str | tuple[str | int, ...]

RULE_ERROR = "config_rule"

_RULES = {
    "missing": "is required",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "finite_number": "must be a finite number",
    "string_pattern_mismatch": (
        "must be 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit"
    ),
}

_BOUNDS = {
    "greater_than": ("greater than", "gt"),
    "greater_than_equal": ("at least", "ge"),
    "less_than": ("less than", "lt"),
    "less_than_equal": ("at most", "le"),
}


def rule_error(
    rule: str, *, loc: Loc | None = None, received: str | None = None, hint: str = ""
) -> PydanticCustomError:
    """The error a config check raises when a value breaks a rule: ``raise rule_error(...)``.

    Args:
        rule: what the value must be, as it follows the key path
            (``"must not also be a feature"``).
        loc: the key the rule is about, relative to the model being validated, when that is
            not the validated value itself (model-level checks name their field).
        received: what was given, as it follows ``Received:`` (default: ``key=value``).
        hint: a sentence appended to the message (``" Did you mean 'relu'?"``).

    Returns:
        The pydantic error to raise inside a validator.
    """
    ctx: dict[str, Any] = {"rule": rule}
    if loc is not None:
        ctx["loc"] = loc
    if received is not None:
        ctx["received"] = received
    if hint:
        ctx["hint"] = hint
    return PydanticCustomError(RULE_ERROR, "{rule}", ctx)


def rule_text(error: dict[str, Any], *, integer: bool = False) -> str:
    """The rule a pydantic error dict states, worded as config messages word it.

    Args:
        error: one item of ``ValidationError.errors()``.
        integer: the field is an integer, so ``gt=0`` reads "must be a positive integer".

    Returns:
        E.g. ``"must be at most 65536"``; pydantic's own message for errors it has no words for.
    """
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in _BOUNDS:
        words, key = _BOUNDS[kind]
        bound = ctx.get(key)
        if kind == "greater_than" and bound == 0:
            return "must be a positive integer" if integer else "must be greater than 0"
        return f"must be {words} {bound}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}"
    if kind == "extra_forbidden":
        return "is not a known key"
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"must have at least {n} item{'s' if n != 1 else ''}"
    if kind in _RULES:
        return _RULES[kind]
    return error["msg"]


def did_you_mean(value: object, choices: Sequence[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``choices`` to a misspelt name, else ``""``."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def as_float32(value: float) -> float | None:
    """What ``value`` becomes as a 32-bit float (TensorFlow's), or ``None`` if not finite there.

    ``1e300`` is finite as a Python float but inf as float32: ``None``. ``1e-50`` becomes 0.0.
    """
    try:
        single = struct.unpack("<f", struct.pack("<f", value))[0]
    except OverflowError:  # the standard format refuses what would round to inf
        return None
    return single if math.isfinite(single) else None


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (``np.False_`` -> ``False``), else ``value``.

    For messages: ``repr`` of a numpy scalar is ``np.float64(1.5)``, not what the user wrote.
    """
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    return value


def number_text(value: Any) -> str:
    """A number as a message shows it: ``2`` for 2.0, ``0.5``, ``1e+300``, ``inf``."""
    value = float(plain(value))
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def path_rule(path: str | Path) -> str | None:
    """The rule a path to an input file breaks, worded to follow its name, or ``None``.

    A directory, device, FIFO or socket breaks it (a FIFO or ``/dev/zero`` would be read
    without end), as does a missing path or one with a NUL byte: ``"must name a file, not a
    directory"``. Used for ``--data`` and ``data.path``.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "must name an existing file"
    except ValueError:  # what os.stat raises for an embedded NUL byte
        return "must not contain a NUL byte"
    except OSError as err:
        return f"must name a readable file ({err.strerror or err})"
    kind = file_kind(mode)
    if kind is None:
        return None
    if kind == "a directory":
        return "must name a file, not a directory"
    return f"must name a regular file, not {kind}"
