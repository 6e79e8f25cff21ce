"""The one place builder reaches into Keras's private modules (``keras.src``).

Each access works around a Keras fault that has no public hook, names its upstream issue, and
is made only for the Keras versions it was checked on (``CHECKED``); outside them it returns
``None`` and the caller goes without its workaround.
"""

from __future__ import annotations

import re
from typing import Any

# Keras versions whose internals below are known (checked on 3.15 by tests/backend_subset.py and
# tests/test_distribute.py, which fail without the workarounds). The lower bound is pyproject's.
CHECKED = ((3, 10), (4, 0))  # from, below


def checked() -> bool:
    """Whether the installed Keras is one of the ``CHECKED`` versions."""
    import keras

    version = tuple(int(part) for part in re.findall(r"\d+", keras.__version__)[:2])
    low, high = CHECKED
    return low <= version < high


def lazy_tensorflow() -> Any | None:
    """Keras's lazy TensorFlow module, which its optional TensorFlow checks read.

    keras-team/keras#18455 (closed unfixed): on every backend, those checks import TensorFlow
    whenever it is installed. ``None`` outside ``CHECKED``.
    """
    if not checked():
        return None
    from keras.src.utils import module_utils  # noqa: TID251  (this module is the exception)

    return module_utils.tensorflow


def tensorflow_trainer() -> Any | None:
    """Keras's TensorFlow trainer module (``fit`` under a ``tf.distribute`` strategy).

    Keras has no public hook for how ``fit`` builds and reduces under a strategy
    (tensorflow/tensorflow#72388, closed unfixed). ``None`` outside ``CHECKED`` or where the
    module has moved.
    """
    if not checked():
        return None
    try:
        from keras.src.backend.tensorflow import trainer  # noqa: TID251  (the exception)
    except ImportError:
        return None
    return trainer
