"""Config -> ``keras.Sequential``. No I/O: data statistics come in as arguments.

The model takes raw feature values and returns the target in its own units:

    features -> normalization -> [categories] -> hidden layers -> output -> target_scaling

``normalization`` is a ``keras.layers.Normalization`` (adapted on the training split by
``builder.train``); ``target_scaling`` is a ``Rescaling(scale=std, offset=mean)`` for regression
targets: the network trains on a standardized target, since a raw one in the tens of thousands
(a salary) is out of reach of learning rates and initializations sized for values near 1.
``categories`` (``builder.layers.CategoryColumns``) is there when some features are categorical:
their cells hold integer codes (``builder.data.columns``), which it one-hot encodes or embeds.
"""

from __future__ import annotations

import keras

from builder.config import (
    ActivationLayer,
    BatchNormalizationLayer,
    Config,
    DenseArgs,
    DenseLayer,
    DropoutLayer,
    ThresholdLayer,
)
from builder.layers import CategoryColumns, Threshold

NORMALIZATION = "normalization"
CATEGORIES = "categories"
OUTPUT = "output"
TARGET_SCALING = "target_scaling"


def build_model(
    config: Config,
    *,
    target_mean: float = 0.0,
    target_std: float = 1.0,
    encoding: list[dict] | None = None,
) -> keras.Sequential:
    """Build the (uncompiled) Keras model a config describes.

    Args:
        config: a validated config.
        target_mean: training-split mean of the target, for regression with target scaling.
        target_std: training-split standard deviation of the target (1.0 for a constant target).
        encoding: ``CategoryColumns``'s ``columns`` when some features are categorical: the
            model then takes their codes and encodes them itself, after the normalization
            (which leaves codes as they are: mean 0, variance 1).

    Returns:
        A built ``keras.Sequential`` named after the config. Its ``normalization`` layer, when
        present, is not adapted yet.

    Raises:
        ConfigError: the config's ``backend`` is not the one Keras was imported with.
    """
    from builder.backend import use

    use(None, config.backend)  # this module imported Keras: a different backend is an error
    layers: list[keras.layers.Layer] = [
        keras.Input(shape=(len(config.data.feature_names),), name="features")
    ]
    if config.data.normalize == "zscore":
        layers.append(keras.layers.Normalization(axis=-1, name=NORMALIZATION))
    if encoding is not None:
        layers.append(CategoryColumns(columns=encoding, name=CATEGORIES))
    counts: dict[str, int] = {}
    for spec in config.model.layers:
        kind = "hidden" if spec.type == "dense" else spec.type
        counts[kind] = counts.get(kind, 0) + 1
        layers.extend(_layer(spec, f"{kind}_{counts[kind]}"))
    if config.model.output is None:
        raise ValueError("the output layer is chosen from the data's classes first (with_data)")
    layers.extend(_dense(config.model.output, OUTPUT))
    if config.task == "regression" and config.training.target_scaling == "zscore":
        layers.append(
            keras.layers.Rescaling(
                scale=float(target_std), offset=float(target_mean), name=TARGET_SCALING
            )
        )
    return keras.Sequential(layers, name=config.name)


def _layer(spec, name: str) -> list[keras.layers.Layer]:
    if isinstance(spec, DenseLayer):
        return _dense(spec, name)
    if isinstance(spec, DropoutLayer):
        return [keras.layers.Dropout(spec.rate, name=name)]
    if isinstance(spec, BatchNormalizationLayer):
        return [
            keras.layers.BatchNormalization(momentum=spec.momentum, epsilon=spec.epsilon, name=name)
        ]
    if isinstance(spec, ThresholdLayer):
        return [
            Threshold(threshold=spec.threshold, gradient=spec.gradient, slope=spec.slope, name=name)
        ]
    if isinstance(spec, ActivationLayer):
        if spec.activation == "threshold":
            return [Threshold(name=name)]
        return [keras.layers.Activation(spec.activation, name=name)]
    raise TypeError(f"unknown layer spec {spec!r}")  # the schema makes this unreachable


def _dense(spec: DenseArgs, name: str) -> list[keras.layers.Layer]:
    # `threshold` never reaches Keras: its own keras.activations.threshold means something else.
    step = spec.activation == "threshold"
    dense = keras.layers.Dense(
        spec.units,
        activation=None if step else spec.activation,
        use_bias=spec.use_bias,
        kernel_initializer=spec.kernel_initializer,
        bias_initializer=spec.bias_initializer,
        kernel_regularizer=_regularizer(spec.kernel_regularizer),
        bias_regularizer=_regularizer(spec.bias_regularizer),
        name=name,
    )
    return [dense, Threshold(name=f"{name}_threshold")] if step else [dense]


def _regularizer(spec):
    if spec is None:
        return None
    return keras.regularizers.L1L2(l1=spec.l1, l2=spec.l2)


def summary_text(model: keras.Model) -> str:
    """The Keras summary as plain text (what ``model.summary()`` prints)."""
    parts: list[str] = []
    # line_length=None lets Keras size the columns; a fixed width cuts off "Param #".
    import os
    import shutil

    # Keras lays the summary out with rich at the console's width (COLUMNS included), and fails
    # ("Insufficient console width") or wraps every character where that is narrower than a
    # table; rich reads COLUMNS, so for the call a too-narrow one is widened.
    narrow = shutil.get_terminal_size((SUMMARY_WIDTH, 24)).columns < MIN_SUMMARY_WIDTH
    saved = os.environ.get("COLUMNS")
    if narrow:
        os.environ["COLUMNS"] = str(SUMMARY_WIDTH)
    try:
        model.summary(print_fn=lambda text, **_: parts.append(text), line_length=None)
    finally:
        if narrow and saved is None:
            os.environ.pop("COLUMNS", None)
        elif narrow:
            os.environ["COLUMNS"] = saved
    return "".join(parts).rstrip("\n")


#: Consoles narrower than this get the summary at ``SUMMARY_WIDTH`` columns.
MIN_SUMMARY_WIDTH = 60
SUMMARY_WIDTH = 100
