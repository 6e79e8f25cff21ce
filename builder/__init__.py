"""builder: describe a neural network in YAML, get a real ``keras.Sequential``.

``import builder`` loads nothing heavy; ``from builder import load_config`` stays light (pydantic,
no TensorFlow); names that need TensorFlow (``build_model``, ``train``, ``load_run``) import it
on first use, so config-only tools answer at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from builder.errors import BuilderError, ConfigError, DataError, RunError

# TensorFlow's C++ log lines (absl's "All log messages before absl::InitializeLog()", the
# oneDNN and CPU-feature banners) are written while it is imported; these quiet them for the
# Python API as builder.cli_fast does for the command line, and keep oneDNN off in both so that
# a training gives the same numbers either way. setdefault: a value the user set is kept. They
# take effect only when TensorFlow has not been imported before builder.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__all__ = [
    "BuilderError",
    "Config",
    "ConfigError",
    "DataError",
    "RunError",
    "build_model",
    "load_config",
    "load_run",
    "train",
]
__version__ = "0.1.0"

# The config's JSON Schema as a file: for editors ("$schema" in a YAML language server), and
# so `builder schema` prints it without importing pydantic (tests/test_config.py keeps it current).
SCHEMA_FILE = Path(__file__).with_name("config.schema.json")

# Config names are lazy too: `builder --help` imports builder.errors, and with it this package;
# importing pydantic and building the config classes here would add ~0.3 s to every command.
_LAZY = {
    "Config": "builder.config",
    "load_config": "builder.config",
    "build_model": "builder.model",
    "train": "builder.training",
    "load_run": "builder.runs",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'builder' has no attribute {name!r}")
