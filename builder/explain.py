"""Follow one row through a network, as the article draws it.

Each neuron takes the values before it, multiplies each by its weight, adds them with a bias and
passes the sum through an activation. ``explain`` returns that, layer by layer, for one row of a
CSV: plain data that ``cli.py`` renders as text or JSON. Nothing here prints.

The trace is computed from the layers' weights in numpy (float64), never through
``model.predict``, so it can be checked against the model (``tests/test_explain.py`` does, on
every shipped config).

How it is put together, so that other kinds of input can join later: a row first becomes the
network's *inputs* (``row_inputs``: one named input per value the model's first layer takes; a
numeric feature is one input, its raw value and, through the model's ``Normalization``, its
normalized value). ``forward`` then takes those values through *steps*, one per layer that
computes something: a ``Dense`` layer (with the activation layer that directly follows a linear
one, such as builder's threshold, folded in: that is the neuron the config describes), or an
element-wise layer (activation, threshold, batch normalization, dropout). A final ``Rescaling``
is the target scaling, which puts the output back in the target's units.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from builder.errors import DataError, RunError
from builder.runs import Run

#: The neurons per layer, and the terms per neuron, that the text shows (``--json`` has all).
MAX_NEURONS_SHOWN = 8
MAX_TERMS_SHOWN = 8


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Two branches so that neither overflows in exp.
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _gelu(x: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf, otypes=[float])
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805

#: Keras's activations by name, in numpy, with Keras's default arguments (Keras 3).
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.2 * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "celu": lambda x: np.maximum(x, 0.0) + np.minimum(0.0, np.expm1(np.minimum(x, 0.0))),
    "selu": lambda x: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0.0))),
    "gelu": _gelu,
    "exponential": np.exp,
    "sigmoid": _sigmoid,
    "log_sigmoid": lambda x: -_softplus(-x),
    "hard_sigmoid": lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "hard_silu": lambda x: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "hard_swish": lambda x: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "hard_tanh": lambda x: np.clip(x, -1.0, 1.0),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0.0),
    "soft_shrink": lambda x: np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0.0)),
    "tanh": np.tanh,
    "tanh_shrink": lambda x: x - np.tanh(x),
    "softplus": _softplus,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "silu": lambda x: x * _sigmoid(x),
    "swish": lambda x: x * _sigmoid(x),
    "mish": lambda x: x * np.tanh(_softplus(x)),
    "softmax": _softmax,
    "sparse_plus": lambda x: np.where(x <= -1, 0.0, np.where(x >= 1, x, (x + 1) ** 2 / 4)),
    "squareplus": lambda x: (x + np.sqrt(x**2 + 4.0)) / 2.0,
}


def activation_name(function: Any) -> str:
    """The name of a Keras activation function (``"relu"``), as ``ACTIVATIONS`` keys it."""
    return getattr(function, "__name__", str(function))


@dataclass
class Step:
    """One layer (or a Dense layer and the activation folded into it) over a batch of rows.

    Every neuron ``j`` computes ``weighted_sum[:, j] = inputs @ weights[:, j] + bias[j]`` (a
    dense step) or ``inputs[:, j] * weights[0, j] + bias[j]`` (an element-wise one), then
    ``output = activation(weighted_sum)``.
    """

    name: str
    type: str
    activation: str
    input_names: list[str]
    inputs: np.ndarray
    weights: np.ndarray  # (n_in, units) for a dense step, (1, units) for an element-wise one
    bias: np.ndarray
    weighted_sum: np.ndarray
    output: np.ndarray
    elementwise: bool = False
    threshold: float | None = None
    keras_layers: list[str] = field(default_factory=list)

    @property
    def neuron_names(self) -> list[str]:
        """``hidden_1[0]``, ``hidden_1[1]`` ..."""
        return [f"{self.name}[{j}]" for j in range(self.output.shape[1])]


@dataclass
class Trace:
    """What ``forward`` computed for a batch of rows."""

    inputs: list[dict[str, Any]]  # per input: name, mean, scale (None without normalization)
    raw: np.ndarray  # (rows, n_inputs), as given
    normalized: np.ndarray  # (rows, n_inputs), what the first step receives
    steps: list[Step]
    network_output: np.ndarray  # (rows, units): the last step's output
    target_scaling: dict[str, float] | None  # scale and offset of a final Rescaling
    output: np.ndarray  # (rows, units): what the model returns


def _apply(name: str, z: np.ndarray, threshold: float | None = None) -> np.ndarray:
    if name == "threshold":
        return (z >= threshold).astype(np.float64)
    try:
        return ACTIVATIONS[name](z)
    except KeyError:
        raise RunError(
            f"explain must know every activation of the model. Received: activation={name!r}"
        ) from None


def _elementwise_activation(layer: Any) -> tuple[str, float | None] | None:
    """``(activation, threshold)`` of a layer that only applies an activation, else None."""
    import keras

    from builder.layers import Threshold

    if isinstance(layer, Threshold):
        return "threshold", float(layer.threshold)
    if isinstance(layer, keras.layers.Activation):
        return activation_name(layer.activation), None
    return None


def forward(model: Any, x: np.ndarray, input_names: Sequence[str]) -> Trace:
    """Take rows of raw inputs through the model's layers in numpy, keeping every value.

    Args:
        model: a builder model (``keras.Sequential``): Normalization, Dense, Activation,
            Threshold, BatchNormalization, Dropout and Rescaling layers.
        x: raw input values, shape ``(rows, len(input_names))``.
        input_names: the name of each input (the config's features).

    Returns:
        The trace; ``trace.output`` equals ``model(x)`` up to float32 rounding.

    Raises:
        RunError: the model has a layer or activation this trace does not know.
    """
    import keras

    x = np.asarray(x, np.float64)
    layers = list(model.layers)
    names = list(input_names)
    inputs = [{"name": n, "mean": None, "scale": None} for n in names]
    values = x
    if layers and isinstance(layers[0], keras.layers.Normalization):
        mean, scale = _normalization(layers.pop(0))
        for i, item in enumerate(inputs):
            item.update(mean=float(mean[i]), scale=float(scale[i]))
        values = (x - mean) / scale
    normalized = values
    scaling = None
    if layers and isinstance(layers[-1], keras.layers.Rescaling):
        last = layers.pop()
        scaling = {"scale": float(last.scale), "offset": float(last.offset)}
    steps: list[Step] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        step = _step(layer, values, names)
        i += 1
        folded = _elementwise_activation(layers[i]) if i < len(layers) else None
        if folded and not step.elementwise and step.activation == "linear":
            # Dense(activation=None) then a threshold: one neuron with a step activation.
            step.activation, step.threshold = folded
            step.output = _apply(step.activation, step.weighted_sum, step.threshold)
            step.keras_layers.append(layers[i].name)
            i += 1
        steps.append(step)
        values, names = step.output, step.neuron_names
    output = values if scaling is None else values * scaling["scale"] + scaling["offset"]
    return Trace(inputs, x, normalized, steps, values, scaling, output)


def _normalization(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    import keras

    mean = np.asarray(keras.ops.convert_to_numpy(layer.mean), np.float64).ravel()
    var = np.asarray(keras.ops.convert_to_numpy(layer.variance), np.float64).ravel()
    # Keras divides by max(sqrt(variance), epsilon).
    return mean, np.maximum(np.sqrt(var), keras.config.epsilon())


def _step(layer: Any, values: np.ndarray, names: list[str]) -> Step:
    import keras

    width = values.shape[1]
    ones, zeros = np.ones((1, width)), np.zeros(width)

    def elementwise(kind, weights, bias, activation="linear", threshold=None) -> Step:
        z = values * weights + bias
        return Step(
            layer.name, kind, activation, names, values, weights, bias, z,
            _apply(activation, z, threshold), elementwise=True, threshold=threshold,
            keras_layers=[layer.name],
        )  # fmt: skip

    if isinstance(layer, keras.layers.Dense):
        weights = layer.get_weights()
        kernel = np.asarray(weights[0], np.float64)
        bias = np.asarray(weights[1], np.float64) if len(weights) > 1 else np.zeros(kernel.shape[1])
        z = values @ kernel + bias
        activation = activation_name(layer.activation)
        return Step(
            layer.name, "Dense", activation, names, values, kernel, bias, z,
            _apply(activation, z), keras_layers=[layer.name],
        )  # fmt: skip
    folded = _elementwise_activation(layer)
    if folded:
        kind = "Threshold" if folded[0] == "threshold" else "Activation"
        return elementwise(kind, ones, zeros, *folded)
    if isinstance(layer, keras.layers.Dropout):  # off at prediction: passes values on
        return elementwise("Dropout", ones, zeros)
    if isinstance(layer, keras.layers.BatchNormalization):
        # At prediction: gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta.
        get = keras.ops.convert_to_numpy
        mean = np.asarray(get(layer.moving_mean), np.float64)
        var = np.asarray(get(layer.moving_variance), np.float64)
        gamma = np.asarray(get(layer.gamma), np.float64) if layer.gamma is not None else 1.0
        beta = np.asarray(get(layer.beta), np.float64) if layer.beta is not None else 0.0
        scale = gamma / np.sqrt(var + layer.epsilon)
        return elementwise("BatchNormalization", scale.reshape(1, -1), beta - mean * scale)
    if isinstance(layer, keras.layers.Rescaling):
        return elementwise("Rescaling", ones * float(layer.scale), zeros + float(layer.offset))
    if isinstance(layer, keras.layers.Normalization):
        mean, scale = _normalization(layer)
        return elementwise("Normalization", (1.0 / scale).reshape(1, -1), -mean / scale)
    raise RunError(
        f"explain can follow Dense, Activation, Threshold, BatchNormalization, Dropout, "
        f"Normalization and Rescaling layers. Received: layer {layer.name!r} of type "
        f"{type(layer).__name__}"
    )


def row_inputs(run: Run, path: str | Path, row: int = 0) -> dict[str, Any]:
    """One row of a CSV as the model's raw inputs: the config's features, read by name.

    Empty cells follow ``data.missing`` as ``predict`` does (``mean`` fills them with the
    training means the model's normalization holds; otherwise they are an error).

    Returns:
        ``row``, ``values`` (one float per feature, in the config's order) and ``actual``
        (the target's value when the CSV has that column, else None).

    Raises:
        DataError: the file or a column is missing, a value is bad, or the row does not exist.
    """
    from builder import data as data_mod

    path = Path(path)
    if isinstance(row, bool) or not isinstance(row, int) or row < 0:
        raise DataError(f"--row must be a row number, 0 or more. Received: row={row!r}")
    config = run.config
    features = list(config.data.feature_names)
    target = config.data.target
    header = data_mod.checked_header(path)
    columns = [*features, *([target] if target in header and target not in features else [])]
    policy = "mean" if config.data.missing == "mean" else "error"
    # The target may be empty in a file to predict for; only the features follow the policy.
    read_policy = "drop" if policy == "error" and len(columns) > len(features) else policy
    rows = 0
    for numeric, _ in data_mod.read_column_chunks(path, columns, missing=read_policy, text=False):
        rows += len(numeric)
        if row not in numeric.index:
            continue
        values = numeric.loc[row, features].to_numpy(np.float64)
        holes = np.isnan(values)
        if holes.any():
            if policy != "mean":
                name = features[int(np.flatnonzero(holes)[0])]
                raise DataError(
                    f"{path}: column '{name}' must have a value on line {row + 2} to explain "
                    f"row {row} (set data.missing to mean to fill it). Received: an empty cell"
                )
            fill = _training_means(run)
            values = np.where(holes, fill, values)
        actual = float(numeric.loc[row, target]) if target in numeric.columns else None
        if actual is not None and not math.isfinite(actual):
            actual = None
        return {"row": row, "values": values.tolist(), "actual": actual}
    raise DataError(
        f"--row must be below the number of data rows of {path}. Received: row={row} "
        f"({rows} data rows)"
    )


def _training_means(run: Run) -> np.ndarray:
    import keras

    for layer in run.model.layers:
        if isinstance(layer, keras.layers.Normalization):
            return _normalization(layer)[0]
    raise DataError("empty cells need a model with input normalization (its training means).")


def explain(run: Run, path: str | Path, row: int = 0) -> dict[str, Any]:
    """``builder explain``: one CSV row through the network, as JSON-ready data.

    Args:
        run: a loaded run (or bare model file).
        path: a CSV with the run's feature columns (the target column is optional).
        row: the data row (0 is the first row after the header).

    Returns:
        See ``explain_values``; with ``data`` (the CSV) and ``row`` added.
    """
    found = row_inputs(run, path, row)
    result = explain_values(run, found["values"], actual=found["actual"])
    return {"data": str(path), "row": row, **result}


def explain_values(
    run: Run, values: Sequence[float], *, actual: float | None = None
) -> dict[str, Any]:
    """One row of raw feature values through the network.

    Returns:
        ``name``, ``task``, ``target``, ``inputs`` (per feature: ``name``, ``raw``, ``value`` as
        the first layer receives it, and the normalization's ``mean`` and ``scale``),
        ``layers`` (per step: ``name``, ``type``, ``activation``, ``keras_layers``, ``units``
        and ``neurons``, each with ``name``, ``inputs`` (``name``, ``value``, and ``raw`` in the
        first layer), ``weights``, ``bias``, ``weighted_sum``, ``activation``, ``output``,
        ``threshold`` for threshold units, and ``influence``: how much it moves the next layer
        for this row, ``|output| x sum |outgoing weights|``), ``network_output``,
        ``target_scaling`` (``scale``, ``offset``) or None, ``output`` (what the model returns),
        ``prediction`` (regression: in the target's units; classification: the class),
        ``actual``. Classification adds ``logits`` and ``probabilities`` ({label: p}); a
        regression with no hidden layer adds ``contributions`` ({feature: coefficient x raw
        value}, target units) and ``intercept``, which add up to the prediction.
    """
    config = run.config
    features = list(config.data.feature_names)
    x = np.asarray(values, np.float64).reshape(1, -1)
    if x.shape[1] != len(features):
        raise DataError(
            f"explain needs one value per feature ({len(features)}). Received: {x.shape[1]}"
        )
    trace = forward(run.model, x, features)
    inputs = [
        {**item, "raw": float(trace.raw[0, i]), "value": float(trace.normalized[0, i])}
        for i, item in enumerate(trace.inputs)
    ]
    raw_of = {item["name"]: item["raw"] for item in inputs}
    layers = []
    for index, step in enumerate(trace.steps):
        following = trace.steps[index + 1] if index + 1 < len(trace.steps) else None
        layers.append(_layer_data(step, following, raw_of if index == 0 else None))
    output = trace.output[0].tolist()
    task = config.task or "regression"
    result: dict[str, Any] = {
        "name": config.name,
        "task": task,
        "target": config.data.target,
        "inputs": inputs,
        "layers": layers,
        "network_output": trace.network_output[0].tolist(),
        "target_scaling": trace.target_scaling,
        "output": output,
        "prediction": None,
        "actual": actual,
    }
    if task == "classification":
        result.update(_classification(trace))
    else:
        result["prediction"] = output[0]
        contributions = linear_contributions(run, trace.raw[0])
        if contributions is not None:
            result.update(contributions)
    return result


def _layer_data(step: Step, following: Step | None, raw_of: dict[str, float] | None) -> dict:
    row = 0
    out = step.output[row]
    if following is None:
        influence = np.abs(out)
    elif following.elementwise:
        influence = np.abs(out * following.weights[0])
    else:
        influence = np.abs(out) * np.abs(following.weights).sum(axis=1)
    neurons = []
    for j, name in enumerate(step.neuron_names):
        if step.elementwise:
            ins = [(step.input_names[j], float(step.inputs[row, j]))]
            weights = [float(step.weights[0, j])]
        else:
            ins = list(zip(step.input_names, step.inputs[row].tolist(), strict=True))
            weights = step.weights[:, j].tolist()
        neuron = {
            "name": name,
            "inputs": [
                {"name": n, **({"raw": raw_of[n]} if raw_of else {}), "value": v} for n, v in ins
            ],
            "weights": weights,
            "bias": float(step.bias[j]),
            "weighted_sum": float(step.weighted_sum[row, j]),
            "activation": step.activation,
            "output": float(out[j]),
            "influence": float(influence[j]),
        }
        if step.threshold is not None:
            neuron["threshold"] = step.threshold
        neurons.append(neuron)
    return {
        "name": step.name,
        "type": step.type,
        "activation": step.activation,
        "keras_layers": step.keras_layers,
        "units": len(neurons),
        "neurons": neurons,
    }


def class_labels(units: int) -> list[str]:
    """The labels of a classifier's classes: ``0`` and ``1`` for one output unit."""
    return ["0", "1"] if units == 1 else [str(j) for j in range(units)]


def _classification(trace: Trace) -> dict[str, Any]:
    out = trace.output[0]
    logits = trace.steps[-1].weighted_sum[0].tolist() if trace.steps else out.tolist()
    labels = class_labels(len(out))
    if len(out) == 1:  # one unit: the probability of class 1
        p = float(out[0])
        probabilities = {labels[0]: 1.0 - p, labels[1]: p}
        prediction = labels[1] if p >= 0.5 else labels[0]
    else:
        probabilities = dict(zip(labels, out.tolist(), strict=True))
        prediction = labels[int(np.argmax(out))]
    return {"logits": logits, "probabilities": probabilities, "prediction": prediction}


def linear_contributions(run: Run, raw: Sequence[float]) -> dict[str, Any] | None:
    """Each feature's share of a no-hidden-layer regression's prediction, in the target's units.

    Returns:
        ``contributions`` ({feature: coefficient x raw value}, with the raw-unit coefficients of
        ``builder.inspection.raw_equation``) and ``intercept``, which add up to the prediction;
        None for a model with hidden layers or a classifier.
    """
    from builder.inspection import is_linear, raw_equation

    if (run.config.task or "regression") != "regression" or not is_linear(run.model):
        return None
    features = list(run.config.data.feature_names)
    coefficients, intercept = raw_equation(run.model, features)
    values = dict(zip(features, np.asarray(raw, np.float64).tolist(), strict=True))
    return {
        "contributions": {name: coefficients[name] * values[name] for name in features},
        "coefficients": coefficients,
        "intercept": intercept,
    }


def top_indices(values: Sequence[float], limit: int) -> tuple[list[int], int]:
    """The indices of the ``limit`` largest ``values`` (all when one more would fit), in their
    original order, and how many were left out."""
    n = len(values)
    if n <= limit + 1:
        return list(range(n)), 0
    order = np.argsort(-np.abs(np.asarray(values, np.float64)), kind="stable")[:limit]
    return sorted(order.tolist()), n - limit
