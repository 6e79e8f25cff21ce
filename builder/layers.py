"""Custom Keras layers that builder configs can name.

- ``Threshold``: the step-function activation that a config's ``activation: threshold`` means.
- ``CategoryColumns``: encodes integer-coded categorical feature columns (one-hot or a trainable
  embedding) and passes numeric columns through, as the first layer of a ``keras.Sequential``.

Only public Keras 3 APIs (``keras.ops``, ``keras.layers``, ``keras.saving``) are used here, so the
layers run on any Keras backend (and hold no string ops, so they export to ONNX). This module
imports nothing from the rest of builder: the config schema imports ``GRADIENTS`` from it, and
builder's model loader must import it before ``keras.saving.load_model`` so that the layers are
registered (otherwise Keras reports ``Could not locate class 'Threshold'``).

Keras 3's own ``keras.activations.threshold`` is a different function ("x where x > threshold,
else default_value"); a config's ``activation: threshold`` means this module's ``Threshold`` layer.
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
from keras import ops

#: The backward passes ``Threshold`` offers, in the order they are documented.
GRADIENTS = ("none", "straight_through", "sigmoid")

#: The encodings ``CategoryColumns`` offers for a categorical column.
ENCODINGS = ("one_hot", "embedding")


def _is_real(value) -> bool:
    """True for an int or float (Python or NumPy), False for bools and everything else."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@keras.saving.register_keras_serializable(package="builder")
class Threshold(keras.layers.Layer):
    """Threshold logic unit (step function) activation layer.

    The forward pass is always the exact Heaviside step, whatever `gradient` is: every output is
    exactly `0.0` or `1.0`, in the layer's compute dtype. The step has no useful derivative, so
    `gradient` picks the surrogate used in the backward pass only.

    Formula:
    ``` python
    f(x) = 1.0 if x >= threshold
    f(x) = 0.0 otherwise            # including x = nan

    # Backward pass, by `gradient`:
    #   "none":             df/dx = 0 (the pure step: a model compiles and fits but never learns)
    #   "straight_through": df/dx = 1 (straight-through estimator)
    #   "sigmoid":          df/dx = slope * s * (1 - s),  s = sigmoid(slope * (x - threshold))
    # and df/dx = 0 where x is inf, -inf or nan.
    ```

    Example:
    ``` python
    threshold_layer = Threshold(threshold=0.5)
    input = np.array([-10.0, 0.0, 0.5, 0.7, 10.0])
    result = threshold_layer(input)
    # result = [0., 0., 1., 1., 1.]
    ```

    Args:
        threshold: Finite float. Inputs greater than or equal to it map to `1.0`, the others to
            `0.0`. Defaults to `0.0`.
        gradient: One of `"none"`, `"straight_through"` or `"sigmoid"`: the surrogate gradient
            used in the backward pass (see the formula). Defaults to `"sigmoid"`.
        slope: Finite float > 0. Steepness of the `"sigmoid"` surrogate; its gradient peaks at
            `slope / 4` at the threshold. Ignored by the other surrogates. Defaults to `1.0`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.
    """

    # Default slope=1.0 (the plain logistic sigmoid), from measurements with Adam, Dense(4 or 16)
    # -> Threshold -> Dense(1, sigmoid): slope 2 reached 100% on XOR about twice as fast (24 of 24
    # runs vs 23 of 24 for slope 1) but ended level with slope 1 on a noisy 8-feature problem
    # (test accuracy 0.757 vs 0.752, 5 seeds), while slope 3 already left units stuck (XOR 19 of
    # 24) and slope 0.5 learned slowly (XOR 17 of 24). 1.0 sits mid-way in the range that works.
    def __init__(self, threshold=0.0, gradient="sigmoid", slope=1.0, **kwargs):
        super().__init__(**kwargs)
        if not _is_real(threshold) or not math.isfinite(threshold):
            raise ValueError(
                f"Argument `threshold` must be a finite number. Received: threshold={threshold!r}"
            )
        if not isinstance(gradient, str) or gradient not in GRADIENTS:
            raise ValueError(
                "Argument `gradient` must be one of "
                f"{', '.join(repr(name) for name in GRADIENTS)}. Received: gradient={gradient!r}"
            )
        if not _is_real(slope) or not math.isfinite(slope) or slope <= 0:
            raise ValueError(
                f"Argument `slope` must be a finite number > 0. Received: slope={slope!r}"
            )

        # Plain Python floats keep the config JSON-serializable (NumPy scalars are accepted).
        self.threshold = float(threshold)
        self.gradient = gradient
        self.slope = float(slope)
        self.supports_masking = True
        self.built = True

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        hard = ops.cast(ops.greater_equal(x, self.threshold), self.compute_dtype)

        # The surrogate sees only finite inputs, so that `soft - stop_gradient(soft)` is exactly 0
        # (inf - inf and nan would turn the output into nan) and its gradient is 0 at inf and nan.
        x = ops.where(ops.isfinite(x), x, ops.zeros_like(x))
        if self.gradient == "sigmoid":
            soft = ops.sigmoid(self.slope * (x - self.threshold))
        elif self.gradient == "straight_through":
            soft = x
        else:  # "none": a zero gradient rather than None, so that `fit` runs (and learns nothing).
            soft = 0.0 * x

        # `hard + (soft - stop_gradient(soft))`, not `soft + stop_gradient(hard - soft)`: the added
        # term is exactly 0 here, while the latter can round away from 0 or 1 (with the identity,
        # x = 3e7 gives 3e7 + (1 - 3e7) = 0.0 in float32, as 1 - 3e7 rounds to -3e7).
        return hard + (soft - ops.stop_gradient(soft))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "threshold": self.threshold,
                "gradient": self.gradient,
                "slope": self.slope,
            }
        )
        return config

    def compute_output_shape(self, input_shape):
        return input_shape


def _is_int(value) -> bool:
    """True for an int (Python or NumPy), False for bools and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


_NUMERIC_KEYS = {"name"}
_CATEGORICAL_KEYS = {"name", "vocabulary", "counts", "encoding", "embedding_dim"}


def _checked_column(index: int, column) -> dict:
    """One entry of `CategoryColumns`'s `columns`, validated, as a plain JSON-able dict."""
    where = f"columns[{index}]"
    if not isinstance(column, dict):
        raise ValueError(
            f"`{where}` must be a dict with at least a 'name' key. Received: column={column!r}"
        )
    name = column.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"`{where}.name` must be a non-empty string. Received: name={name!r}")
    # Any key but `name` makes the column categorical, so that a stray `counts` or `encoding`
    # without a vocabulary is reported rather than silently read as a numeric column.
    if set(column) == _NUMERIC_KEYS:
        return {"name": name}
    unknown = sorted(map(repr, set(column) - _CATEGORICAL_KEYS))
    if unknown:
        raise ValueError(
            f"`{where}` has unknown keys {', '.join(unknown)}; the keys are 'name' for a numeric "
            "column, plus 'vocabulary', 'counts', 'encoding' and (for 'embedding') "
            f"'embedding_dim' for a categorical one. Received: column={column!r}"
        )

    vocabulary = column.get("vocabulary")
    if (
        not isinstance(vocabulary, list | tuple)
        or not vocabulary
        or not all(isinstance(value, str) for value in vocabulary)
    ):
        raise ValueError(
            f"`{where}.vocabulary` must be a non-empty list of strings. "
            f"Received: vocabulary={vocabulary!r}"
        )
    if len(set(vocabulary)) != len(vocabulary):
        repeated = sorted({value for value in vocabulary if vocabulary.count(value) > 1})
        raise ValueError(
            f"`{where}.vocabulary` must not repeat a value; {repeated!r} appear more than once. "
            f"Received: vocabulary={vocabulary!r}"
        )
    counts = column.get("counts")
    if (
        not isinstance(counts, list | tuple)
        or len(counts) != len(vocabulary)
        or not all(_is_int(count) and count > 0 for count in counts)
    ):
        raise ValueError(
            f"`{where}.counts` must be a list of positive integers, one per vocabulary value "
            f"({len(vocabulary)}). Received: counts={counts!r}"
        )
    encoding = column.get("encoding")
    if not isinstance(encoding, str) or encoding not in ENCODINGS:
        raise ValueError(
            f"`{where}.encoding` must be one of {', '.join(map(repr, ENCODINGS))}. "
            f"Received: encoding={encoding!r}"
        )
    checked = {
        "name": name,
        "vocabulary": list(vocabulary),
        "counts": [int(count) for count in counts],
        "encoding": encoding,
    }
    dim = column.get("embedding_dim")
    if encoding == "embedding":
        if not _is_int(dim) or dim <= 0:
            raise ValueError(
                f"`{where}.embedding_dim` must be a positive integer for encoding 'embedding'. "
                f"Received: embedding_dim={dim!r}"
            )
        checked["embedding_dim"] = int(dim)
    elif "embedding_dim" in column:
        raise ValueError(
            f"`{where}.embedding_dim` is only for encoding 'embedding', not {encoding!r}. "
            f"Received: embedding_dim={dim!r}"
        )
    return checked


@keras.saving.register_keras_serializable(package="builder")
class CategoryColumns(keras.layers.Layer):
    """Encodes integer-coded categorical columns and passes numeric columns through.

    Each input column is described by one entry of `columns`, in input order. A numeric column
    is copied to the output unchanged. A categorical column holds, as a float, an integer code:
    `c` in `1..V` means `vocabulary[c - 1]`, and `0` means "unknown" (a value not seen in
    training). It becomes `V` one-hot columns, or `embedding_dim` columns of a trainable
    embedding. An unknown value is encoded as the training-frequency-weighted average of the
    known ones, so a model predicts for it what it predicts for an average training row. Codes
    that are out of range, not whole numbers, infinite or NaN count as unknown.

    Formula:
    ``` python
    # For a categorical column with counts n_1..n_V:
    freq = [n_1, ..., n_V] / (n_1 + ... + n_V)
    T = [freq; identity(V)]          # (V + 1, V), constant (not trainable)
    code = c if c in {1, ..., V} else 0
    f(c) = T[code]                   # "one_hot":   V columns
    f(c) = T[code] @ E               # "embedding": E is a trainable (V, embedding_dim) weight
    # so a known code c gives the one-hot row e_c (or E[c - 1], 0-based), and code 0 gives
    # freq (or freq @ E).
    ```

    Example:
    ``` python
    layer = CategoryColumns(
        columns=[
            {"name": "age"},
            {
                "name": "job",
                "vocabulary": ["engineer", "nurse"],
                "counts": [3, 1],
                "encoding": "one_hot",
            },
        ]
    )
    input = np.array([[30.0, 1.0], [40.0, 2.0], [50.0, 0.0], [60.0, 7.0]])
    result = layer(input)
    # result = [[30., 1.  , 0.  ],
    #           [40., 0.  , 1.  ],
    #           [50., 0.75, 0.25],
    #           [60., 0.75, 0.25]]
    # layer.output_names() = ["age", "job=engineer", "job=nurse"]
    ```

    Args:
        columns: Non-empty list of dicts, one per input column, in input order, with unique
            `"name"`s. A numeric column is `{"name": str}`. A categorical column also has
            `"vocabulary"` (non-empty list of unique strings: the values of codes `1..V`),
            `"counts"` (positive integers, one per value: how often each appeared in training),
            `"encoding"` (`"one_hot"` or `"embedding"`) and, for `"embedding"` only,
            `"embedding_dim"` (positive integer). The embedding weight starts `"uniform"`, as
            in `keras.layers.Embedding`, seeded by `keras.utils.set_random_seed`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        `(batch, k)`, `k = len(columns)` (or `(batch, ..., k)`); floats, with integer codes in
        the categorical columns.

    Output shape:
        `(batch, output_width)` (or `(batch, ..., output_width)`): one column per numeric
        column, `V` per one-hot column and `embedding_dim` per embedding column, in input
        order (see `output_names()`).
    """

    def __init__(self, columns, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(columns, list | tuple) or not columns:
            raise ValueError(
                "Argument `columns` must be a non-empty list of dicts, one per input column. "
                f"Received: columns={columns!r}"
            )
        checked = [_checked_column(i, column) for i, column in enumerate(columns)]
        names = [column["name"] for column in checked]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(
                f"The names in `columns` must be unique; {repeated!r} appear more than once. "
                f"Received: names={names!r}"
            )
        self.columns = checked
        # The integer codes are read from the input as given: autocasting a float32 input to a
        # float16 compute dtype would make codes above 2048 inexact.
        self.autocast = False
        self._tables = {}
        # Keyed by the column's index as a string: TensorFlow's SavedModel writer (used by
        # `model.export`) refuses a tracked dict with a non-string key.
        self._embeddings = {}

    @property
    def output_width(self) -> int:
        """The number of output columns."""
        return sum(_width(column) for column in self.columns)

    def output_names(self) -> list[str]:
        """The output columns' names, in order.

        Returns:
            A numeric column's `name`; `f"{name}={value}"` for each vocabulary value of a
            one-hot column; `f"{name}[{i}]"`, `i` in `0..embedding_dim - 1`, for an embedding.
        """
        names = []
        for column in self.columns:
            name = column["name"]
            if "vocabulary" not in column:
                names.append(name)
            elif column["encoding"] == "one_hot":
                names.extend(f"{name}={value}" for value in column["vocabulary"])
            else:
                names.extend(f"{name}[{i}]" for i in range(column["embedding_dim"]))
        return names

    def build(self, input_shape=None):
        if input_shape is not None:
            width = tuple(input_shape)[-1] if len(input_shape) else None
            if len(input_shape) < 2 or (width is not None and width != len(self.columns)):
                raise ValueError(
                    "Input of CategoryColumns must have shape (batch, k), one column per "
                    f"entry of `columns` (k = {len(self.columns)}). "
                    f"Received: input_shape={tuple(input_shape)}"
                )
        # Weights are made in column order, the same on every build, so that a saved model's
        # weights load back into the right columns. Variable names use the column's index: a
        # column name may hold characters (such as "/") that Keras refuses in a variable name.
        for i, column in enumerate(self.columns):
            if "vocabulary" not in column:
                continue
            counts = np.asarray(column["counts"], dtype="float64")
            # A constant from the config, not a weight: (V + 1) x V one-hot rows would be
            # stored in every model file and checkpoint.
            self._tables[i] = counts / counts.sum()
            if column["encoding"] == "embedding":
                self._embeddings[str(i)] = self.add_weight(
                    shape=(len(counts), column["embedding_dim"]),
                    initializer="uniform",
                    trainable=True,
                    name=f"embeddings_{i}",
                )
        self.built = True

    def call(self, inputs):
        x = inputs
        if not keras.backend.is_float_dtype(keras.backend.standardize_dtype(x.dtype)):
            x = ops.cast(x, "float32")
        pieces = []
        start = None  # the first column of the current run of numeric columns
        for i, column in enumerate([*self.columns, None]):
            if column is not None and "vocabulary" not in column:
                start = i if start is None else start
                continue
            # One slice per run of numeric columns keeps the graph (and an ONNX export) small.
            if start is not None:
                pieces.append(ops.cast(x[..., start:i], self.compute_dtype))
                start = None
            if column is None:
                break
            size = len(column["vocabulary"])
            value = x[..., i]
            # NaN fails every comparison, and inf fails `<= size`, so both count as unknown.
            known = ops.logical_and(
                ops.equal(value, ops.round(value)),
                ops.logical_and(ops.greater_equal(value, 1.0), ops.less_equal(value, size)),
            )
            index = ops.cast(ops.where(known, value - 1.0, ops.zeros_like(value)), "int32")
            frequencies = ops.convert_to_tensor(self._tables[i], dtype=self.compute_dtype)
            known = ops.expand_dims(known, -1)
            if column["encoding"] == "embedding":
                table = ops.cast(self._embeddings[str(i)], self.compute_dtype)
                rows = ops.take(table, index, axis=0)
                average = ops.matmul(ops.expand_dims(frequencies, 0), table)
            else:
                rows = ops.one_hot(index, size, dtype=self.compute_dtype)
                average = ops.expand_dims(frequencies, 0)
            pieces.append(ops.where(known, rows, average))
        return pieces[0] if len(pieces) == 1 else ops.concatenate(pieces, axis=-1)

    def get_config(self):
        config = super().get_config()
        # Copies, so that editing a returned config leaves the layer alone.
        config.update({"columns": [_copy_column(column) for column in self.columns]})
        return config

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape)[:-1], self.output_width)


def _width(column: dict) -> int:
    """How many output columns one checked `CategoryColumns` column makes."""
    if "vocabulary" not in column:
        return 1
    if column["encoding"] == "one_hot":
        return len(column["vocabulary"])
    return column["embedding_dim"]


def _copy_column(column: dict) -> dict:
    return {key: list(value) if isinstance(value, list) else value for key, value in column.items()}
