"""The model side of streaming: a model built from the statistics pass instead of arrays.

``builder.training.fit`` calls ``build`` for a ``builder.streaming.CsvStream``: target scaling and
input normalization come from ``CsvStream.scan`` (float64, training split only), so the file is
not read again to adapt the ``Normalization`` layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from builder.config import Config
from builder.streaming import StreamStats


def set_normalization(layer: Any, mean: np.ndarray, variance: np.ndarray) -> None:
    """Give a ``keras.layers.Normalization`` layer statistics computed elsewhere.

    The same state as ``layer.adapt`` on data with that mean and (population) variance: the
    layer's ``mean`` and ``variance`` weights are what ``adapt`` and ``.keras`` loading assign,
    and ``finalize_state`` makes them the constants the layer applies (and saves).
    """
    values = {"mean": mean, "variance": variance}
    assigned = set()
    for weight in layer.weights:
        name = weight.name.split("/")[-1]
        if name in values:
            weight.assign(np.asarray(values[name], np.float32).reshape(weight.shape))
            assigned.add(name)
    if assigned != set(values):  # a Keras change: fail loudly rather than train unnormalized
        raise RuntimeError(f"Normalization layer has no mean/variance weights: {layer.weights}")
    layer.finalize_state()


def build(config: Config, stats: StreamStats) -> Any:
    """The config's model with target scaling and normalization from the statistics pass."""
    from builder.model import NORMALIZATION, build_model

    model = build_model(config, target_mean=stats.target_mean, target_std=stats.target_std or 1.0)
    if config.data.normalize == "zscore":
        set_normalization(
            model.get_layer(NORMALIZATION), stats.feature_mean, stats.feature_variance
        )
    return model
