"""Reading a config: file -> text -> YAML -> validated ``Config``; and the config's JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from builder.config.messages import describe
from builder.config.schema import Config
from builder.config.yaml_reader import read_yaml
from builder.errors import ConfigError


def load_config(path: str | Path) -> Config:
    """Read and validate a config file (YAML, or JSON, which YAML reads too).

    Args:
        path: the config file.

    Returns:
        The validated config; relative data paths resolve against the file's folder.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, or breaks a rule.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist.")
    if path.is_dir():
        raise ConfigError(f"config file {path} must be a file. Received: a directory")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path} must be UTF-8 text. Received: byte 0x{raw[err.start]:02x} "
            f"at offset {err.start}"
        ) from None
    return parse_config(text, source=path)


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
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe(err, data, node, where)) from None
    return config.locate(source, node)


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
