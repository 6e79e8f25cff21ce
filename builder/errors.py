"""The errors builder raises for problems a user can fix.

Every message follows Keras and scikit-learn: where, the rule, what was received, e.g.
``model.layers[1].units must be a positive integer. Received: units=0 (configs/mlp.yaml, line 12)``.
The CLI prints ``str(error)`` as one line and exits 2; anything that is not a ``BuilderError`` is a
bug and keeps its traceback.
"""

from __future__ import annotations


class BuilderError(Exception):
    """Base class of every error caused by the user's input (config, data, model file, path)."""


class ConfigError(BuilderError):
    """A config file is unreadable or breaks a rule of the schema."""


class DataError(BuilderError):
    """A CSV file is unreadable or does not fit the config (columns, values, size)."""


class RunError(BuilderError):
    """A run directory or model file is missing, incomplete, or not a builder model."""


class ExportError(BuilderError):
    """A model cannot be exported in a format: the converter refuses it, the format's runtime is
    not installed, or the exported model's predictions differ from the model's."""


class Interrupted(BuilderError):
    """Training was stopped by the user (Ctrl-C) after saving a checkpoint; exit code 130."""
