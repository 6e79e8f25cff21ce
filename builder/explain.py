"""Follow one row through a network, as the article draws it.

Each neuron takes the values before it, multiplies each by its weight, adds them with a bias and
passes the sum through an activation. ``explain`` returns that, layer by layer, for one row of a
CSV: plain data that ``cli.py`` renders as text or JSON. Nothing here prints.

The trace is computed from the layers' weights in numpy (float64), never through
``model.predict``, so it can be checked against the model (``tests/test_explain.py`` does, on
every shipped config).

How it is put together: a row first becomes the network's *inputs* (``row_inputs``: one value
per feature; a numeric feature is its raw value and, through the model's ``Normalization``, its
normalized value; a categorical feature is its text, coded with the model's vocabulary as
``predict`` codes it). The model's ``CategoryColumns`` layer (``builder.layers``), when there is
one, turns each categorical code into its one-hot block (or its embedding row): those encoded
columns (``job_title=nurse``) are what the first layer takes. ``forward`` then takes the values
through *steps*, one per layer that computes something: a ``Dense`` layer (with the activation
layer that directly follows a linear one, such as builder's threshold, folded in: that is the
neuron the config describes), or an element-wise layer (activation, threshold, batch
normalization, dropout). A final ``Rescaling`` is the target scaling, which puts the output back
in the target's units.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from builder.errors import DataError, RunError
from builder.predict import class_labels, code_categories, fill_values, vocabularies_of
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

    # Per input: name, type (numeric or categorical), mean and scale (None without
    # normalization); a categorical one also its encoding and the (start, stop) of its columns
    # in ``encoded``.
    inputs: list[dict[str, Any]]
    raw: np.ndarray  # (rows, n_inputs), as given (codes in categorical columns)
    normalized: np.ndarray  # (rows, n_inputs), after the model's Normalization
    encoded: np.ndarray  # (rows, encoded_width), what the first step receives
    encoded_names: list[str]  # the name of each encoded column (a feature's, or job_title=nurse)
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
        model: a builder model (``keras.Sequential``): Normalization, CategoryColumns, Dense,
            Activation, Threshold, BatchNormalization, Dropout and Rescaling layers.
        x: raw input values, shape ``(rows, len(input_names))``; a categorical column holds
            the model's codes (``c >= 1``: its vocabulary's ``c``-th value; anything else
            counts as unseen, as in ``CategoryColumns``).
        input_names: the name of each input (the config's features).

    Returns:
        The trace; ``trace.output`` equals ``model(x)`` up to float32 rounding.

    Raises:
        RunError: the model has a layer or activation this trace does not know.
    """
    import keras

    from builder.layers import CategoryColumns

    x = np.asarray(x, np.float64)
    layers = list(model.layers)
    names = list(input_names)
    inputs = [{"name": n, "type": "numeric", "mean": None, "scale": None} for n in names]
    values = x
    if layers and isinstance(layers[0], keras.layers.Normalization):
        mean, scale = _normalization(layers.pop(0))
        for i, item in enumerate(inputs):
            item.update(mean=float(mean[i]), scale=float(scale[i]))
        values = (x - mean) / scale
    normalized = values
    if layers and isinstance(layers[0], CategoryColumns):
        layer = layers.pop(0)
        values = _category_columns(model, layer, values, inputs)
        names = layer.output_names()
    encoded, encoded_names = values, list(names)
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
    return Trace(inputs, x, normalized, encoded, encoded_names, steps, values, scaling, output)


def _category_columns(
    model: Any, layer: Any, values: np.ndarray, inputs: list[dict[str, Any]]
) -> np.ndarray:
    """``CategoryColumns`` in numpy: numeric columns pass, a categorical code becomes its
    one-hot block or embedding row, an unseen code the training frequencies' average of them."""
    from builder.inspection import category_blocks

    if len(layer.columns) != values.shape[1]:
        raise RunError(
            f"explain needs one input per column of layer {layer.name!r} "
            f"({len(layer.columns)}). Received: {values.shape[1]}"
        )
    pieces = []
    start = 0
    blocks = category_blocks(model, len(layer.columns))
    for i, (column, block) in enumerate(zip(layer.columns, blocks, strict=True)):
        value = values[:, i]
        if block is None:
            pieces.append(value[:, None])
            start += 1
            continue
        categories, table = block  # (V, width): the identity, or the embedding matrix
        counts = np.asarray(column["counts"], np.float64)
        average = (counts / counts.sum()) @ table
        # The layer's rule: a whole number in 1..V is a category, anything else (NaN, inf,
        # 2.5, 0, V + 1) is unseen.
        with np.errstate(invalid="ignore"):
            known = (value == np.round(value)) & (value >= 1) & (value <= len(categories))
        index = np.where(known, value, 1.0).astype(np.int64) - 1
        pieces.append(np.where(known[:, None], table[index], average))
        width = table.shape[1]
        inputs[i].update(
            type="categorical", encoding=column["encoding"], columns=(start, start + width)
        )
        start += width
    return np.hstack(pieces)


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

    A categorical feature is read as text and coded with the model's vocabulary, as ``predict``
    codes it: a value the vocabulary does not hold is code 0 (unseen), or an error under
    ``data.unknown: error``. Empty cells follow ``data.missing`` as ``predict`` does (``mean``
    fills a numeric one with the training mean the model's normalization holds, a categorical
    one with its most frequent training value; otherwise they are an error).

    Returns:
        ``row``, ``values`` (one float per feature, in the config's order: a categorical
        feature's code), ``text`` ({categorical feature: its text as in the file, stripped})
        and ``actual`` (the target's value when the CSV has that column, else None: a number
        for regression, the class label for classification).

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
    classification = config.task == "classification"
    vocabularies = vocabularies_of(run.model)
    header = data_mod.checked_header(path)
    with_target = target in header and target not in features
    columns = [*features, *([target] if with_target else [])]
    text_columns = [name for name in features if name in vocabularies]
    if with_target and classification:
        text_columns.append(target)  # a label: text, whatever it looks like
    policy = "mean" if config.data.missing == "mean" else "error"
    # The target may be empty in a file to predict for; only the features follow the policy.
    read_policy = "drop" if policy == "error" and with_target else policy
    rows = 0
    for numeric, _ in data_mod.read_column_chunks(
        path, columns, missing=read_policy, text=False, text_columns=text_columns
    ):
        rows += len(numeric)
        if row not in numeric.index:
            continue
        line = numeric.loc[[row]]
        text: dict[str, str | None] = {name: line[name].iloc[0] for name in vocabularies}
        code_categories(run, path, line, vocabularies)
        cells = line.iloc[0]
        found = np.asarray([float(cells[name]) for name in features], np.float64)
        holes = np.isnan(found)
        if holes.any():
            if policy != "mean":
                name = features[int(np.flatnonzero(holes)[0])]
                raise DataError(
                    f"{path}: column '{name}' must have a value on line {row + 2} to explain "
                    f"row {row} (set data.missing to mean to fill it). Received: an empty cell"
                )
            fill = fill_values(run, path)  # predict's fill
            for i, name in enumerate(features):
                if holes[i] and name in vocabularies:
                    text[name] = vocabularies[name].values[0]  # code 1
            found = np.where(holes, fill, found)
        actual = _actual(run, cells[target]) if with_target else None
        return {"row": row, "values": found.tolist(), "text": text, "actual": actual}
    raise DataError(
        f"--row must be below the number of data rows of {path}. Received: row={row} "
        f"({rows} data rows)"
    )


def _actual(run: Run, cell: Any) -> float | str | None:
    """The target cell as a regression's number or a classifier's label (None when empty)."""
    if run.config.task != "classification":
        actual = float(cell)
        return actual if math.isfinite(actual) else None
    if cell is None:
        return None
    labels = class_labels(run)
    code = labels.codes(np.array([cell], dtype=object))[0]
    # A label the model was not trained on is shown as written.
    return labels.classes[int(code)] if np.isfinite(code) else str(cell)


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
    result = explain_values(run, found["values"], actual=found["actual"], text=found["text"])
    return {"data": str(path), "row": row, **result}


def explain_values(
    run: Run,
    values: Sequence[float],
    *,
    actual: float | str | None = None,
    text: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """One row of raw feature values through the network.

    Args:
        run: a loaded run (or bare model file).
        values: one value per feature, in the config's order; a categorical feature's code.
        actual: the target's value, if known (a classifier's: its label).
        text: each categorical feature's text as read (default: the value its code stands for).

    Returns:
        ``name``, ``task``, ``target``, ``inputs`` (per feature: ``name``, ``type``, ``raw``,
        ``value`` as the model's normalization passes it on, and the normalization's ``mean``
        and ``scale``; a categorical feature's ``raw`` is its text, and it adds ``code``,
        ``category`` (the vocabulary value the code stands for, None when unseen),
        ``unseen``, ``encoding`` and ``encoded`` ({encoded column: value}: the active one-hot
        column, every column's training frequency for an unseen value, or the embedding
        row)), ``layers`` (per step: ``name``, ``type``, ``activation``, ``keras_layers``,
        ``units``, ``inputs_left_out`` (one-hot inputs that are 0 for this row, left out of
        the first layer's neurons: their terms are 0) and ``neurons``, each with ``name``,
        ``inputs`` (``name``, ``value``; in the first layer ``raw``, and ``feature`` for an
        encoded column), ``weights`` (one per listed input), ``bias``, ``weighted_sum``,
        ``activation``, ``output``, ``threshold`` for threshold units, and ``influence``: how
        much it moves the next layer for this row, ``|output| x sum |outgoing weights|``),
        ``network_output``, ``target_scaling`` (``scale``, ``offset``) or None, ``output``
        (what the model returns), ``prediction`` (regression: in the target's units;
        classification: the most probable class's label), ``actual``. Classification adds
        ``logits`` and ``probabilities`` ({label: p}, for one sigmoid unit as for softmax
        units); a regression with no hidden layer adds ``contributions``, ``coefficients``
        and ``intercept`` (see ``linear_contributions``), which add up to the prediction.

    Raises:
        DataError: not one value per feature.
        RunError: the model has a layer or activation the trace does not know.
    """
    config = run.config
    features = list(config.data.feature_names)
    x = np.asarray(values, np.float64).reshape(1, -1)
    if x.shape[1] != len(features):
        raise DataError(
            f"explain needs one value per feature ({len(features)}). Received: {x.shape[1]}"
        )
    trace = forward(run.model, x, features)
    vocabularies = vocabularies_of(run.model)
    inputs = [_input_data(trace, i, vocabularies, text or {}) for i in range(len(features))]
    layers = []
    for index, step in enumerate(trace.steps):
        following = trace.steps[index + 1] if index + 1 < len(trace.steps) else None
        first = _first_layer_inputs(trace, inputs, step) if index == 0 else None
        layers.append(_layer_data(step, following, first))
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
        result.update(_classification(run, trace))
    else:
        result["prediction"] = output[0]
        contributions = _contributions(run, trace)
        if contributions is not None:
            result.update(contributions)
    return result


def _input_data(
    trace: Trace, i: int, vocabularies: Mapping[str, Any], text: Mapping[str, str | None]
) -> dict[str, Any]:
    item = trace.inputs[i]
    raw, value = float(trace.raw[0, i]), float(trace.normalized[0, i])
    found: dict[str, Any] = {"name": item["name"], "type": item["type"]}
    found.update(mean=item["mean"], scale=item["scale"])
    if item["type"] != "categorical":
        return {**found, "raw": raw, "value": value}
    start, stop = item["columns"]
    encoded = trace.encoded[0, start:stop]
    names = trace.encoded_names[start:stop]
    values = vocabularies[item["name"]].values
    # The category is what the layer sees: the code as the normalization passes it on.
    seen = value.is_integer() and 1 <= value <= len(values)
    category = values[int(value) - 1] if seen else None
    code: float | int = int(raw) if raw.is_integer() else raw
    one_hot = item["encoding"] == "one_hot"
    return {
        **found,
        "raw": text.get(item["name"], category),
        "code": code,
        "category": category,
        "unseen": not seen,
        "encoding": item["encoding"],
        "value": value,
        "encoded": {
            n: float(v) for n, v in zip(names, encoded, strict=True) if v != 0 or not one_hot
        },
    }


def _first_layer_inputs(
    trace: Trace, inputs: list[dict[str, Any]], step: Step
) -> tuple[list[dict[str, Any]], list[bool]]:
    """Per input of the first step: what its entries add (``feature``, ``raw``), and whether
    its neurons list it (a Dense step leaves out the one-hot columns that are 0 for the row)."""
    extras: list[dict[str, Any]] = []
    listed: list[bool] = []
    for item in inputs:
        if item["type"] != "categorical":
            extras.append({"raw": item["raw"]})
            listed.append(True)
            continue
        start, stop = next(t["columns"] for t in trace.inputs if t["name"] == item["name"])
        for k in range(start, stop):
            extras.append({"feature": item["name"], "raw": item["raw"]})
            active = item["encoding"] != "one_hot" or trace.encoded[0, k] != 0
            listed.append(active or step.elementwise)
    return extras, listed


def _layer_data(
    step: Step, following: Step | None, first: tuple[list[dict], list[bool]] | None
) -> dict:
    row = 0
    out = step.output[row]
    if following is None:
        influence = np.abs(out)
    elif following.elementwise:
        influence = np.abs(out * following.weights[0])
    else:
        influence = np.abs(out) * np.abs(following.weights).sum(axis=1)
    extras, listed = first if first is not None else (None, None)
    kept = [k for k in range(step.inputs.shape[1]) if listed is None or listed[k]]
    neurons = []
    for j, name in enumerate(step.neuron_names):
        if step.elementwise:
            ins, weights = [j], [float(step.weights[0, j])]
        else:
            ins, weights = kept, step.weights[kept, j].tolist()
        neuron = {
            "name": name,
            "inputs": [
                {
                    "name": step.input_names[k],
                    **(extras[k] if extras is not None else {}),
                    "value": float(step.inputs[row, k]),
                }
                for k in ins
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
        "inputs_left_out": 0 if step.elementwise else step.inputs.shape[1] - len(kept),
        "neurons": neurons,
    }


def _classification(run: Run, trace: Trace) -> dict[str, Any]:
    from builder.data.classes import predicted_class
    from builder.training import class_probabilities

    out = trace.output
    logits = trace.steps[-1].weighted_sum[0].tolist() if trace.steps else out[0].tolist()
    labels = class_labels(run).classes
    probabilities = class_probabilities(out)
    if probabilities.shape[1] != len(labels):
        raise RunError(
            f"explain needs one class label per class probability ({probabilities.shape[1]}). "
            f"Received: {len(labels)} labels recorded"
        )
    # predict's rule (ties: the lower class), so that explain and predict name the same class.
    chosen = int(predicted_class(probabilities)[0])
    return {
        "logits": logits,
        "probabilities": dict(zip(labels, probabilities[0].tolist(), strict=True)),
        "prediction": labels[chosen],
    }


def linear_contributions(run: Run, raw: Sequence[float]) -> dict[str, Any] | None:
    """Each feature's share of a no-hidden-layer regression's prediction, in the target's units.

    Args:
        run: a loaded run (or bare model file).
        raw: one raw value per feature (a categorical feature's code).

    Returns:
        ``contributions`` ({feature: share}: a numeric feature's raw-unit coefficient x its raw
        value; a categorical feature's one-hot block (or embedding row) times its weights, in
        the target's units: its category's whole effect), ``coefficients`` (as
        ``builder.inspection.raw_equation`` gives them: a categorical feature's per category,
        relative to its most frequent one) and ``intercept`` (the rest of the prediction: with
        categorical features not the equation's intercept, which also holds the most frequent
        categories' effects); contributions and intercept add up to the prediction. None for a
        model with hidden layers or a classifier.
    """
    features = list(run.config.data.feature_names)
    trace = forward(run.model, np.asarray(raw, np.float64).reshape(1, -1), features)
    return _contributions(run, trace)


def _contributions(run: Run, trace: Trace) -> dict[str, Any] | None:
    from builder.inspection import is_linear, raw_equation

    if (run.config.task or "regression") != "regression" or not is_linear(run.model):
        return None
    features = list(run.config.data.feature_names)
    coefficients, _ = raw_equation(run.model, features)
    (step,) = trace.steps  # is_linear: the output Dense layer is the only step
    w, b = step.weights[:, 0], float(step.bias[0])
    scaling = trace.target_scaling or {"scale": 1.0, "offset": 0.0}
    scale = scaling["scale"]
    contributions: dict[str, float] = {}
    intercept = b * scale + scaling["offset"]
    column = 0
    for i, (name, item) in enumerate(zip(features, trace.inputs, strict=True)):
        if item["type"] == "categorical":
            start, stop = item["columns"]
            contributions[name] = float(trace.encoded[0, start:stop] @ w[start:stop]) * scale
            column = stop
            continue
        contributions[name] = coefficients[name] * float(trace.raw[0, i])
        if item["mean"] is not None:
            intercept -= item["mean"] / item["scale"] * float(w[column]) * scale
        column += 1
    return {"contributions": contributions, "coefficients": coefficients, "intercept": intercept}


def top_indices(values: Sequence[float], limit: int) -> tuple[list[int], int]:
    """The indices of the ``limit`` largest ``values`` (all when one more would fit), in their
    original order, and how many were left out."""
    n = len(values)
    if n <= limit + 1:
        return list(range(n)), 0
    order = np.argsort(-np.abs(np.asarray(values, np.float64)), kind="stable")[:limit]
    return sorted(order.tolist()), n - limit
