"""Look inside a trained model: weights by feature and, with no hidden layer, the equation.

Returns plain data (dicts, lists, floats); ``cli.py`` renders it as tables or JSON. Nothing here
prints.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from builder.runs import Run


def _dense_weights(model: Any) -> list[tuple[Any, np.ndarray, np.ndarray | None]]:
    import keras

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            weights = layer.get_weights()
            kernel = np.asarray(weights[0], np.float64)
            bias = np.asarray(weights[1], np.float64) if len(weights) > 1 else None
            out.append((layer, kernel, bias))
    return out


def normalization_stats(model: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and scale of the model's ``Normalization`` layer, as float64.

    Args:
        model: a Keras model.

    Returns:
        ``(mean, scale)``, one value per feature, where the layer computes
        ``(x - mean) / scale``; ``None`` when the model has no such layer.
    """
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            mean = np.asarray(keras.ops.convert_to_numpy(layer.mean), np.float64).ravel()
            var = np.asarray(keras.ops.convert_to_numpy(layer.variance), np.float64).ravel()
            # Keras divides by max(sqrt(variance), epsilon); mirror it exactly.
            return mean, np.maximum(np.sqrt(var), keras.config.epsilon())
    return None


def _rescaling(model: Any) -> tuple[float, float]:
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Rescaling):
            return float(layer.scale), float(layer.offset)
    return 1.0, 0.0


def is_linear(model: Any) -> bool:
    """True for the article's network: one Dense layer with a linear activation and one unit."""
    import keras

    dense = _dense_weights(model)
    if len(dense) != 1 or dense[0][1].shape[1] != 1:
        return False
    from builder.layers import CategoryColumns

    layer = dense[0][0]
    allowed = (
        keras.layers.Dense,
        keras.layers.Normalization,
        keras.layers.Rescaling,
        CategoryColumns,
    )
    return layer.activation.__name__ == "linear" and all(
        isinstance(other, allowed) for other in model.layers
    )


def raw_equation(model: Any, features: list[str]) -> tuple[dict[str, float], float]:
    """Coefficients and intercept of a linear model in the data's raw units.

    The model computes ``y = ((x - m) / s) @ w + b`` then ``y * scale + offset``; expanding gives
    ``y = x @ (w * scale / s) + (b - (m / s) @ w) * scale + offset``. A categorical feature
    (``builder.layers.CategoryColumns``) gets one coefficient per category but its most frequent
    one, named ``feature=value``: that category's effect relative to the most frequent (the
    reference, whose effect the intercept takes), as a regression table with dummy coding gives
    them and as least squares reports them (``builder.data.columns.Design``).
    """
    ((_, kernel, bias),) = _dense_weights(model)
    w = kernel[:, 0]
    b = float(bias[0]) if bias is not None else 0.0
    norm = normalization_stats(model)
    width = len(features)
    mean, div = norm if norm is not None else (np.zeros(width), np.ones(width))
    scale, offset = _rescaling(model)
    blocks = category_blocks(model, width)
    coefficients: dict[str, float] = {}
    intercept = b * scale + offset
    row = 0
    for i, name in enumerate(features):
        block = blocks[i]
        if block is None:
            coefficients[name] = float(w[row] * scale / div[i])
            intercept -= float(mean[i] / div[i] * w[row]) * scale
            row += 1
            continue
        values, encoded = block
        effects = encoded @ w[row : row + encoded.shape[1]] * scale
        row += encoded.shape[1]
        intercept += float(effects[0])
        for value, effect in zip(values[1:], effects[1:], strict=True):
            coefficients[f"{name}={value}"] = float(effect - effects[0])
    return coefficients, float(intercept)


def category_blocks(model: Any, width: int) -> list[tuple[list[str], np.ndarray] | None]:
    """Per feature: ``None`` for a numeric one; for a categorical one its vocabulary and the
    rows its categories encode to (``(V, outputs)``: the identity for one-hot, the embedding
    matrix for an embedding), as the model's ``CategoryColumns`` layer holds them."""
    from builder.layers import CategoryColumns

    layer = next((la for la in model.layers if isinstance(la, CategoryColumns)), None)
    if layer is None:
        return [None] * width
    import keras

    found: list[tuple[list[str], np.ndarray] | None] = []
    for i, column in enumerate(layer.columns):
        if "vocabulary" not in column:
            found.append(None)
            continue
        values = list(column["vocabulary"])
        if column["encoding"] == "embedding":
            (weight,) = [v for v in layer.weights if v.name == f"embeddings_{i}"]
            encoded = np.asarray(keras.ops.convert_to_numpy(weight), np.float64)
        else:
            encoded = np.eye(len(values))
        found.append((values, encoded))
    return found


def format_equation(target: str, coefficients: dict[str, float], intercept: float) -> str:
    """``salary = 0.51 x past_salary + 1,392 x years_in_industry + ... + 33,206``."""
    terms = sorted(coefficients.items(), key=lambda kv: -abs(kv[1]))
    text = f"{target} = "
    for i, (name, value) in enumerate(terms):
        sign = "-" if value < 0 else "+"
        lead = ("-" if value < 0 else "") if i == 0 else f" {sign} "
        text += f"{lead}{_number(abs(value))} x {name}"
    sign = "-" if intercept < 0 else "+"
    return f"{text} {sign} {_number(abs(intercept))}"


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:,.2f}"
    return f"{value:.4g}"


def inspect_run(run: Run) -> dict[str, Any]:
    """Everything ``builder inspect`` shows, as JSON-ready data.

    Returns:
        ``summary`` (Keras summary text), ``layers`` (each Dense layer's kernel and bias; the first
        one's rows labelled by feature), and for a model with no hidden layer ``equation``: the
        raw-unit coefficients and intercept next to the least-squares ones recorded at training.
    """
    from builder.model import summary_text

    features = list(run.config.data.feature_names)
    layers = []
    previous = features
    previous = first_layer_inputs(run)
    for layer, kernel, bias in _dense_weights(run.model):
        rows = list(previous)
        units = [f"{layer.name}[{j}]" for j in range(kernel.shape[1])]
        layers.append(
            {
                "name": layer.name,
                "activation": layer.activation.__name__,
                "inputs": rows,
                "units": units,
                "kernel": kernel.tolist(),
                "bias": bias.tolist() if bias is not None else None,
            }
        )
        previous = units
    report: dict[str, Any] = {
        "name": run.config.name,
        "path": str(run.path) if run.path else None,
        "target": run.config.data.target,
        "features": features,
        "summary": summary_text(run.model),
        "layers": layers,
        "test": run.metrics.get("test", {}),
        "equation": None,
    }
    if is_linear(run.model):
        coef, intercept = raw_equation(run.model, features)
        lsq = run.metrics.get("baselines", {}).get("least_squares", {})
        equation: dict[str, Any] = {
            "text": format_equation(run.config.data.target, coef, intercept),
            "coefficients": coef,
            "intercept": intercept,
            "least_squares": None,
        }
        if "coefficients" in lsq and "intercept" in lsq:
            equation["least_squares"] = {
                "text": format_equation(
                    run.config.data.target, lsq["coefficients"], lsq["intercept"]
                ),
                "coefficients": lsq["coefficients"],
                "intercept": lsq["intercept"],
            }
        references = {
            name: block[0][0]
            for name, block in zip(features, category_blocks(run.model, len(features)), strict=True)
            if block is not None
        }
        if references:
            # Each category's coefficient is its effect relative to the most frequent one.
            equation["reference_categories"] = references
        report["equation"] = equation
    return report


def first_layer_inputs(run: Run) -> list[str]:
    """The names of the first Dense layer's inputs: the features, or with categorical ones the
    encoded columns (``feature=value`` for one-hot, ``feature[i]`` for an embedding)."""
    from builder.layers import CategoryColumns

    for layer in run.model.layers:
        if isinstance(layer, CategoryColumns):
            return layer.output_names()
    return list(run.config.data.feature_names)


def network_weights(run: Run) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """``(kernel, bias)`` of each Dense layer, for drawing the network."""
    return [(kernel, bias) for _, kernel, bias in _dense_weights(run.model)]
