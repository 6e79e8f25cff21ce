"""Tests of builder.layers.Threshold, modelled on Keras's own ``relu_test.py``."""

from __future__ import annotations

import json
import re
import textwrap

import keras
import numpy as np
import pytest

from builder.layers import GRADIENTS, Threshold
from tests.conftest import gradient

# Inputs on a grid of multiples of 0.25 are exact in float32, so some equal the threshold exactly.
GRID = np.arange(-2.0, 2.25, 0.25, dtype="float32")

AND_OR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype="float32")
AND_OR_Y = {
    "and": np.array([0, 0, 0, 1], dtype="float32"),
    "or": np.array([0, 1, 1, 1], dtype="float32"),
}


def reference(x, threshold):
    return np.where(x >= threshold, 1.0, 0.0).astype("float32")


def grad_of(layer, x):
    """d sum(layer(x)) / dx as numpy, on whichever backend Keras runs (no public Keras API
    takes a gradient, so each backend's own: tf.GradientTape, jax.grad, torch autograd)."""
    return gradient(layer, x)


# --- Construction and forward pass -----------------------------------------------------------


def test_defaults_and_layer_attributes():
    layer = Threshold()
    assert (layer.threshold, layer.gradient, layer.slope) == (0.0, "sigmoid", 1.0)
    assert layer.built
    assert layer.supports_masking
    assert layer.trainable_weights == []
    assert GRADIENTS == ("none", "straight_through", "sigmoid")
    assert Threshold()(keras.Input((3, 4))).shape == (None, 3, 4)
    assert layer.compute_output_shape((None, 3, 4)) == (None, 3, 4)


def test_docstring_example():
    result = Threshold(threshold=0.5)(np.array([-10.0, 0.0, 0.5, 0.7, 10.0]))
    np.testing.assert_array_equal(result, [0.0, 0.0, 1.0, 1.0, 1.0])


@pytest.mark.parametrize("gradient", GRADIENTS)
@pytest.mark.parametrize("threshold", [-3.0, -1.5, 0.0, 0.25, 2.0, 3.0])
@pytest.mark.parametrize("shape", [(17,), (4, 5), (2, 3, 4), (2, 1, 3, 2)])
def test_outputs_match_numpy_step(gradient, threshold, shape):
    rng = np.random.default_rng(0)
    x = rng.choice(GRID, size=shape)
    x.flat[0] = threshold  # always at least one input exactly at the threshold
    result = Threshold(threshold=threshold, gradient=gradient)(x)
    assert keras.backend.standardize_dtype(result.dtype) == "float32"
    assert tuple(result.shape) == shape
    np.testing.assert_array_equal(result, reference(x, threshold))
    assert set(np.unique(result)) <= {0.0, 1.0}


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_thresholds_below_and_above_all_inputs(gradient):
    np.testing.assert_array_equal(Threshold(-2.5, gradient)(GRID), np.ones_like(GRID))
    np.testing.assert_array_equal(Threshold(2.5, gradient)(GRID), np.zeros_like(GRID))


@pytest.mark.parametrize("gradient", GRADIENTS)
@pytest.mark.parametrize("threshold", [-1.5, 0.0, 0.1, 7.0])
def test_input_equal_to_threshold_gives_one(gradient, threshold):
    x = np.full((3, 2), threshold, dtype="float32")
    np.testing.assert_array_equal(Threshold(threshold, gradient)(x), np.ones_like(x))
    # The next float32 down; for 0.0 the smallest normal one instead of the subnormal -1e-45:
    # TensorFlow on the CPU flushes subnormals to zero, so -1e-45 >= 0.0 is True there.
    below = np.nextafter(x, np.float32(-np.inf)) if threshold else x - np.finfo("float32").tiny
    np.testing.assert_array_equal(Threshold(threshold, gradient)(below), np.zeros_like(x))


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_extreme_and_non_finite_inputs_are_still_exactly_zero_or_one(gradient):
    # x + stop_gradient(hard - x) would give 0.0 at 3e7 (1 - 3e7 rounds to -3e7 in float32).
    x = np.array([-np.inf, -3.4e38, -3e7, np.nan, 3e7, 3.4e38, np.inf], dtype="float32")
    result = Threshold(threshold=0.5, gradient=gradient)(x)
    np.testing.assert_array_equal(result, [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    # The gradient is 0 at inf, -inf and nan; at the huge finite inputs only the identity's isn't.
    expected_grad = np.where(np.isfinite(x) & (gradient == "straight_through"), 1.0, 0.0)
    np.testing.assert_array_equal(grad_of(Threshold(0.5, gradient), x), expected_grad)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [("float32", "float32"), ("float64", "float64"), ("mixed_float16", "float16")],
)
def test_output_dtype_is_the_compute_dtype(dtype, expected):
    x = np.array([[-1, 0, 2]], dtype="int32")  # integer inputs are compared, then cast
    result = Threshold(dtype=dtype)(x)
    # What Keras's own activation layer gives: JAX without x64 computes float64 as float32.
    keras_own = keras.layers.ReLU(dtype=dtype)(x.astype(expected))
    assert keras.backend.standardize_dtype(result.dtype) == keras.backend.standardize_dtype(
        keras_own.dtype
    )
    if keras.backend.backend() != "jax":
        assert keras.backend.standardize_dtype(result.dtype) == expected
    np.testing.assert_array_equal(result, [[0.0, 1.0, 1.0]])


def test_masking_passes_the_mask_through():
    x = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]], dtype="float32")
    mask = np.array([[True, False, True], [False, False, False]])
    np.testing.assert_array_equal(Threshold(threshold=0.5).compute_mask(x, mask), mask)


def test_accepts_numpy_scalars_and_stores_python_floats():
    layer = Threshold(threshold=np.float32(0.5), slope=np.int64(2))
    assert type(layer.threshold) is float and type(layer.slope) is float
    assert (layer.threshold, layer.slope) == (0.5, 2.0)
    json.dumps(layer.get_config())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": float("nan")}, "Argument `threshold` must be a finite number. "
         "Received: threshold=nan"),
        ({"threshold": float("inf")}, "Received: threshold=inf"),
        ({"threshold": -float("inf")}, "Received: threshold=-inf"),
        ({"threshold": "a"}, "Received: threshold='a'"),
        ({"threshold": None}, "Received: threshold=None"),
        ({"threshold": True}, "Received: threshold=True"),
        ({"gradient": "bogus"}, "Argument `gradient` must be one of 'none', 'straight_through', "
         "'sigmoid'. Received: gradient='bogus'"),
        ({"gradient": None}, "Received: gradient=None"),
        ({"gradient": "Sigmoid"}, "Received: gradient='Sigmoid'"),
        ({"slope": 0}, "Argument `slope` must be a finite number > 0. Received: slope=0"),
        ({"slope": -1}, "Received: slope=-1"),
        ({"slope": float("nan")}, "Received: slope=nan"),
        ({"slope": float("inf")}, "Received: slope=inf"),
        ({"slope": True}, "Received: slope=True"),
        ({"slope": "1"}, "Received: slope='1'"),
    ],
)  # fmt: skip
def test_invalid_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Threshold(**kwargs)


# --- Serialization ---------------------------------------------------------------------------


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_get_config_from_config_round_trip(gradient):
    layer = Threshold(threshold=-0.75, gradient=gradient, slope=3.5, name="tlu")
    config = layer.get_config()
    assert config["threshold"] == -0.75
    assert config["gradient"] == gradient
    assert config["slope"] == 3.5
    clone = Threshold.from_config(config)
    assert clone.get_config() == config
    x = np.random.default_rng(1).choice(GRID, size=(6, 5))
    np.testing.assert_array_equal(clone(x), layer(x))


def test_keras_serialize_deserialize():
    layer = Threshold(threshold=0.25, gradient="straight_through", slope=2.0)
    serialized = keras.layers.serialize(layer)
    assert serialized["registered_name"] == "builder>Threshold"
    json.dumps(serialized)
    clone = keras.layers.deserialize(serialized)
    assert isinstance(clone, Threshold)
    assert clone.get_config() == layer.get_config()
    np.testing.assert_array_equal(clone(GRID), layer(GRID))


LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import builder.layers  # registers Threshold: must come before load_model
    import keras

    model_path, x_path, out_path, config_path = sys.argv[1:]
    model = keras.saving.load_model(model_path, safe_mode=True)
    np.save(out_path, keras.ops.convert_to_numpy(model(np.load(x_path))))
    layer = next(la for la in model.layers if isinstance(la, builder.layers.Threshold))
    with open(config_path, "w") as f:
        json.dump(layer.get_config(), f)
    """
)


@pytest.mark.slow
def test_keras_file_reloads_bit_identically_in_a_fresh_process(tmp_path, fresh_process):
    keras.utils.set_random_seed(3)
    tlu = Threshold(threshold=0.1, gradient="sigmoid", slope=2.5, name="tlu")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8), tlu, keras.layers.Dense(2)])
    x = np.random.default_rng(2).normal(size=(64, 3)).astype("float32")
    model_path, x_path = tmp_path / "model.keras", tmp_path / "x.npy"
    model.save(model_path)
    np.save(x_path, x)
    expected = keras.ops.convert_to_numpy(model(x))

    out_path, config_path = tmp_path / "out.npy", tmp_path / "config.json"
    proc = fresh_process.run(LOAD_SCRIPT, model_path, x_path, out_path, config_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    reloaded = np.load(out_path)
    assert reloaded.dtype == expected.dtype
    np.testing.assert_array_equal(reloaded, expected)
    assert json.loads(config_path.read_text()) == json.loads(json.dumps(tlu.get_config()))


# --- Gradients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.0, 0.5, -2.0])
@pytest.mark.parametrize("slope", [0.5, 1.0, 4.0])
def test_sigmoid_gradient_is_the_sigmoid_derivative(threshold, slope):
    offsets = np.array([-6.0, -1.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 1.0, 6.0], dtype="float32")
    x = (threshold + offsets).astype("float32")
    grad = grad_of(Threshold(threshold, "sigmoid", slope), x)
    s = 1.0 / (1.0 + np.exp(-slope * (x.astype("float64") - threshold)))
    np.testing.assert_allclose(grad, slope * s * (1.0 - s), rtol=1e-5, atol=1e-7)
    at = offsets == 0.0
    assert grad[at] == pytest.approx(slope / 4)  # the peak, exactly at the threshold
    # Within 1 / slope of it, at least slope * s(1) * (1 - s(1)) = 0.197 * slope: clearly non-zero.
    assert np.all(grad[np.abs(offsets) * slope <= 1.0] > 0.19 * slope)


def test_straight_through_gradient_is_all_ones():
    x = np.random.default_rng(4).normal(size=(5, 7)).astype("float32") * 10
    np.testing.assert_array_equal(grad_of(Threshold(0.3, "straight_through"), x), np.ones_like(x))


def test_none_gradient_is_all_zeros_not_none():
    x = np.random.default_rng(5).normal(size=(5, 7)).astype("float32")
    x[0, 0] = 0.0  # at the threshold too
    grad = grad_of(Threshold(0.0, "none"), x)
    assert grad is not None
    np.testing.assert_array_equal(grad, np.zeros_like(x))


def test_none_gradient_model_fits_but_does_not_learn():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1), Threshold(gradient="none")])
    model.compile(keras.optimizers.Adam(0.1), "mse", jit_compile=False)
    before = [w.copy() for w in model.get_weights()]
    model.fit(AND_OR_X, AND_OR_Y["and"], batch_size=4, epochs=3, verbose=0)
    for w_before, w_after in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(w_after, w_before)


# --- Training --------------------------------------------------------------------------------


def train(model, loss, y, learning_rate, steps=400):
    """Fits ``steps`` full-batch steps on the 4 rows of a truth table, then returns predictions.

    The table is tiled so that each epoch is ``steps / 2`` steps run in one execution: per-epoch
    overhead (about 70 ms here) and XLA compilation (seconds) would dominate otherwise.
    """
    reps = steps // 2
    model.compile(
        keras.optimizers.Adam(learning_rate),
        loss,
        # PyTorch's trainer runs one step per call (Keras refuses more).
        steps_per_execution=1 if keras.backend.backend() == "torch" else reps,
        jit_compile=False,
    )
    model.fit(
        np.tile(AND_OR_X, (reps, 1)),
        np.tile(y, (reps, 1)),
        batch_size=4,
        epochs=2,
        shuffle=False,
        verbose=0,
    )
    return keras.ops.convert_to_numpy(model(AND_OR_X))  # predict() would trace another function


@pytest.mark.parametrize("target", ["and", "or"])
def test_hidden_threshold_layer_learns_logical_and_or(target):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(4),
            Threshold(),  # the default surrogate: sigmoid, slope 1
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    y = AND_OR_Y[target][:, None]
    predicted = train(model, "binary_crossentropy", y, 0.05) >= 0.5
    assert np.mean(predicted == y) == 1.0


@pytest.mark.parametrize("gradient", ["sigmoid", "straight_through"])
def test_threshold_output_units_learn_logical_and_and_or(gradient):
    # Two independent TLUs as the outputs, one learning AND and the other OR: Dense(2) shares no
    # weight between its units, and Adam is invariant to the 1/2 of the mean over the outputs.
    # Their predictions are exactly 0 or 1, so no rounding is needed. MSE, because
    # binary_crossentropy clips a 0/1 output and its gradient is then zero.
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(2), Threshold(gradient=gradient)]
    )
    y = np.stack([AND_OR_Y["and"], AND_OR_Y["or"]], axis=1)
    predicted = train(model, "mse", y, 0.05)
    assert set(np.unique(predicted)) <= {0.0, 1.0}
    assert np.mean(predicted[:, 0] == y[:, 0]) == 1.0  # AND
    assert np.mean(predicted[:, 1] == y[:, 1]) == 1.0  # OR
