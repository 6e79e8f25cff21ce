"""Reading a config: file -> text -> YAML -> validated ``Config``; and the config's JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from builder import files
from builder.config.messages import describe, format_loc
from builder.config.names import FLOAT32_MAX, MAX_CONFIG_BYTES, MAX_YAML_DEPTH
from builder.config.schema import Config
from builder.config.yaml_reader import line_of, read_yaml
from builder.errors import ConfigError
from builder.rules import as_float32


def load_config(path: str | Path) -> Config:
    """Read and validate a config file (YAML, or JSON, which YAML reads too).

    Args:
        path: the config file.

    Returns:
        The validated config; relative data paths resolve against the file's folder.

    Raises:
        ConfigError: the file is missing, not a regular file, over ``MAX_CONFIG_BYTES``,
            unreadable, not YAML, or breaks a rule.
    """
    path = Path(path)
    return parse_config(read_config_text(path), source=path)


def read_config_text(path: str | Path, what: str = "config file") -> str:
    """The text of a config file, read with a byte cap from a regular file only.

    A directory, device, FIFO or socket is refused by name before anything is read; at most
    ``MAX_CONFIG_BYTES`` + 1 bytes are ever read (``builder.files.read_text``).

    Args:
        path: the file.
        what: what it is, for messages (``"config file"``).

    Returns:
        The text, decoded as UTF-8 (a byte-order mark is dropped).

    Raises:
        ConfigError: the file is missing, not a regular file, too large, unreadable or not
            UTF-8.
    """
    return files.read_text(path, limit=MAX_CONFIG_BYTES, what=what, error=ConfigError)


def parse_config(text: str, source: Path | str | None = None) -> Config:
    """Validate config text (YAML or JSON).

    Args:
        text: the config.
        source: the file it came from: named in messages, and relative data paths resolve
            against its folder.

    Returns:
        The validated config.

    Raises:
        ConfigError: the text is not YAML or breaks a rule.
    """
    where = str(source) if source is not None else "<config>"
    data, node = read_yaml(text, where)
    return validate_config(data, node=node, source=source)


def validate_config(
    data: Any, *, node: yaml.Node | None = None, source: Path | str | None = None
) -> Config:
    """Validate already-parsed config data (a dict), mapping errors to YAML lines when known.

    Args:
        data: the config as plain data.
        node: the YAML node it was read from, for line numbers in messages.
        source: the file it came from, as for ``parse_config``.

    Returns:
        The validated config.

    Raises:
        ConfigError: ``data`` is not a mapping or breaks a rule.
    """
    where = str(source) if source is not None else "<config>"
    if not isinstance(data, dict):
        kind = "an empty document" if data is None else f"a {type(data).__name__}"
        raise ConfigError(
            f"{where}: the top level must be a mapping with keys name, data, model, training. "
            f"Received: {kind}"
        )
    _check_plain_data(data, node, where)
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe(err, data, node, where)) from None
    return config.locate(source, node)


def _check_plain_data(data: Any, node: yaml.Node | None, where: str) -> None:
    """Refuse what no schema rule should meet: nesting beyond ``MAX_YAML_DEPTH`` (also of data
    that did not come from YAML) and floats that are not finite as float32, wherever they are.

    Every float of a config reaches TensorFlow as a 32-bit float: NaN, inf and a finite value
    beyond float32's range (``1e300``, which would become inf) are refused at their key path.
    Iterative, so a deep or self-referential structure cannot overflow the stack.
    """
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        value, loc = stack.pop()
        if isinstance(value, dict | list):
            if len(loc) >= MAX_YAML_DEPTH:
                raise ConfigError(
                    f"{format_loc(loc)}: the config must nest at most {MAX_YAML_DEPTH} mappings "
                    f"and lists deep. Received: deeper{_line(node, loc, where)}"
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((v, (*loc, k)) for k, v in reversed(list(items)))
        elif isinstance(value, float) and as_float32(value) is None:
            # The schema's float fields also check the rounding against their bounds.
            key = format_loc(loc[-2:]) if loc and isinstance(loc[-1], int) else (loc or ("x",))[-1]
            raise ConfigError(
                f"{format_loc(loc)} must be finite as a 32-bit float (at most "
                f"{FLOAT32_MAX:.7g} in magnitude). Received: {key}={value!r}"
                f"{_line(node, loc, where)}"
            )


def _line(node: yaml.Node | None, loc: tuple[Any, ...], where: str) -> str:
    line = line_of(node, loc) if node is not None else None
    return f" ({where}, line {line})" if line else f" ({where})"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the config, for editors (autocomplete and checks)."""
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "builder config"
    return schema


def json_schema_text() -> str:
    """``json_schema()`` as the text of ``builder.SCHEMA_FILE`` (what ``builder schema`` prints).

    Regenerate the shipped file after changing the schema::

        python -c "import builder as b, builder.config as c
        b.SCHEMA_FILE.write_text(c.json_schema_text())"
    """
    return json.dumps(json_schema(), indent=2) + "\n"
