"""builder: describe a neural network in YAML, get a real ``keras.Sequential``.

``from builder import load_config`` stays light; names that need TensorFlow (``build_model``,
``train``, ``load_run``) import it on first use, so config-only tools answer at once.
"""

from __future__ import annotations

from typing import Any

from builder.config import Config, load_config
from builder.errors import BuilderError, ConfigError, DataError, RunError

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

_LAZY = {"build_model": "builder.model", "train": "builder.training", "load_run": "builder.runs"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'builder' has no attribute {name!r}")
