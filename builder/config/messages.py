"""Pydantic validation errors -> the one-line message a config error shows.

``where rule. Received: key=value (file, line N)``: the key path as written in the config
(without pydantic's union tags), the rule in words, the value given, and the YAML line from
``builder.config.yaml_reader``. Only the first error is described (a misspelt key before the
"missing" key it causes), with a count of the rest.
"""

from __future__ import annotations

import typing
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from builder.config.names import LAYER_TYPES
from builder.config.schema import LAYER_CLASSES, Config, layer_tag
from builder.config.yaml_reader import KeyPath, line_of
from builder.rules import did_you_mean, rule_text
from builder.search import SPACE_TAGS


def describe(err: ValidationError, data: Any, node: yaml.Node | None, where: str) -> str:
    """The one-line message for a config that failed validation.

    Args:
        err: what ``Config.model_validate(data)`` raised.
        data: the config data that was validated.
        node: its root YAML node, for the line number (``None``: no line).
        where: the file name (or ``<config>``).

    Returns:
        E.g. ``model.layers[1].units must be a positive integer. Received: units=0
        (configs/mlp.yaml, line 12)``.
    """
    errors = err.errors(include_url=False)
    # A misspelt key also makes the real one "missing": report the misspelling, it is the cause.
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = _clean_loc(tuple(first["loc"]), data)
    ctx = first.get("ctx") or {}
    if "loc" in ctx:  # model-level checks name the field they are about
        loc = (*loc, *ctx["loc"]) if isinstance(ctx["loc"], tuple) else (*loc, ctx["loc"])
    kind = first["type"]
    rule = _rule(first, integer=_is_int_field(data, loc))
    message = f"{format_loc(loc)} {rule}."
    hint = ctx.get("hint", "")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(data, loc)
        hint = did_you_mean(loc[-1], allowed)
        if allowed:
            hint += " Known keys: " + ", ".join(allowed) + "."
        message = f"{format_loc(loc)} {rule}.{hint}"
    elif kind == "literal_error":
        expected = [
            s.strip(" '") for s in str(ctx.get("expected", "")).replace(" or ", ",").split(",")
        ]
        hint = did_you_mean(first.get("input"), expected)
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        hint = did_you_mean(ctx.get("tag"), LAYER_TYPES)
        loc = (*loc, "type")
        message = f"{format_loc(loc)} {rule}."

    if kind not in ("missing", "extra_forbidden", "union_tag_not_found"):
        if "received" in ctx:
            message += f" Received: {_clip(str(ctx['received']), 200)}"
        else:
            key = format_loc(loc[-2:]) if isinstance(loc[-1], int) else loc[-1]
            value = first.get("input")
            if kind == "union_tag_invalid":
                value = ctx.get("tag")
            message += f" Received: {key}={_clip(_repr(value), 60)}"
        if hint:
            message += f".{hint}" if not message.endswith(".") else hint
    line = line_of(node, loc, key_line=kind == "extra_forbidden")
    message += f" ({where}, line {line})" if line else f" ({where})"
    if len(errors) > 1:
        message += f" [and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''}]"
    return message


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except (ValueError, RecursionError):  # an int beyond str()'s digit limit; a cycle
        return f"a {type(value).__name__} too large to show"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_loc(loc: KeyPath) -> str:
    """A key path as the config writes it: ``model.layers[1].units`` (``config`` for none)."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "config"


def _clean_loc(loc: KeyPath, data: Any) -> KeyPath:
    """Drop the union tags pydantic puts in locations (``layers.1.dense.units``)."""
    out: list[Any] = []
    current = data
    for part in loc:
        if part in SPACE_TAGS and not (isinstance(current, dict) and part in current):
            continue  # the value-or-search-space tag of a searchable key
        if (
            isinstance(current, dict)
            and isinstance(part, str)
            and part not in current
            and part in LAYER_TYPES
            and current.get("type") == part
        ):
            continue
        out.append(part)
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
        else:
            current = None
    return tuple(out)


def _rule(error: dict[str, Any], integer: bool) -> str:
    kind = error["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        # The only tagged union a config's messages meet is a hidden layer's `type`.
        verb = "must be" if kind == "union_tag_invalid" else "is required:"
        return f"{verb} one of " + ", ".join(f"'{t}'" for t in LAYER_TYPES)
    return rule_text(error, integer=integer)


def _allowed_keys(data: Any, loc: KeyPath) -> list[str]:
    """Known keys of the mapping that holds an unknown key, for did-you-mean."""
    model = _model_at(data, loc)
    return list(model.model_fields) if model is not None else []


def _is_int_field(data: Any, loc: KeyPath) -> bool:
    model = _model_at(data, loc)
    field = model.model_fields.get(loc[-1]) if model is not None and loc else None
    return field is not None and _mentions_int(field.annotation)


def _mentions_int(annotation: Any) -> bool:
    # Searchable keys nest the int inside Annotated and a union with the search space.
    return annotation is int or any(_mentions_int(arg) for arg in typing.get_args(annotation))


def _model_at(data: Any, loc: KeyPath) -> Any:
    """The pydantic model class of the mapping that holds ``loc[-1]``."""
    model: Any = Config
    current = data
    for part in loc[:-1]:
        if isinstance(part, int):
            current = current[part] if isinstance(current, list) else None
            tag = layer_tag(current) if current is not None else None
            model = LAYER_CLASSES.get(tag) if tag is not None else None
            continue
        current = current.get(part) if isinstance(current, dict) else None
        field = model.model_fields.get(part) if model is not None else None
        model = _model_of(field.annotation) if field is not None else None
    return model


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None
