"""Tests of builder.layers.CategoryColumns, modelled on Keras's own ``relu_test.py``.

Backend-neutral on purpose (``keras.ops``, NumPy and ``fit``; no ``tf.GradientTape``): the layer
must later run on JAX and PyTorch too.
"""

from __future__ import annotations

import json
import re
import textwrap

import keras
import numpy as np
import pytest

from builder.layers import ENCODINGS, CategoryColumns

JOB = {
    "name": "job",
    "vocabulary": ["nurse", "engineer", "teacher"],  # not sorted: the order is the codes'
    "counts": [5, 3, 2],
    "encoding": "one_hot",
}
JOB_FREQ = np.array([0.5, 0.3, 0.2], "float32")
CITY = {
    "name": "city",
    "vocabulary": ["Oslo", "Lima", "Pune", "Kyiv"],
    "counts": [1, 1, 1, 5],
    "encoding": "embedding",
    "embedding_dim": 2,
}
CITY_FREQ = np.array([0.125, 0.125, 0.125, 0.625], "float32")

# Codes that mean "unknown" for a vocabulary of 3 or 4: 0 itself, out of range, fractional,
# non-finite.
UNKNOWN_CODES = [0.0, -1.0, 5.0, 1e9, -1e9, 1.5, 2.0001, np.nan, np.inf, -np.inf]


def numpy_of(x):
    return keras.ops.convert_to_numpy(x)


def embeddings_of(layer):
    (weight,) = layer.trainable_weights
    return numpy_of(weight)


# --- Construction and forward pass -----------------------------------------------------------


def test_docstring_example():
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
    result = layer(np.array([[30.0, 1.0], [40.0, 2.0], [50.0, 0.0], [60.0, 7.0]]))
    expected = [[30.0, 1.0, 0.0], [40.0, 0.0, 1.0], [50.0, 0.75, 0.25], [60.0, 0.75, 0.25]]
    np.testing.assert_array_equal(numpy_of(result), expected)
    assert layer.output_names() == ["age", "job=engineer", "job=nurse"]


def test_one_hot_known_codes_select_identity_rows():
    layer = CategoryColumns([JOB])
    assert layer.output_width == 3
    assert layer.output_names() == ["job=nurse", "job=engineer", "job=teacher"]
    result = layer(np.array([[1.0], [2.0], [3.0], [2.0]], "float32"))
    assert keras.backend.standardize_dtype(result.dtype) == "float32"
    assert tuple(result.shape) == (4, 3)
    np.testing.assert_array_equal(numpy_of(result), np.eye(3)[[0, 1, 2, 1]])
    # No weights at all: the frequencies are constants from the config (a (V + 1) x V table
    # as a weight would be stored in every model file and checkpoint).
    assert layer.weights == []


@pytest.mark.parametrize("code", [*UNKNOWN_CODES, 4.0])
def test_one_hot_unknown_and_invalid_codes_give_training_frequencies(code):
    layer = CategoryColumns([JOB])
    result = numpy_of(layer(np.array([[code], [2.0]], "float32")))
    np.testing.assert_allclose(result[0], JOB_FREQ, rtol=1e-6)
    np.testing.assert_array_equal(result[1], [0.0, 1.0, 0.0])  # a known code beside it is kept
    assert np.isfinite(result).all()


def test_integer_and_float64_inputs_are_read_as_codes():
    layer = CategoryColumns([JOB])
    np.testing.assert_array_equal(numpy_of(layer(np.array([[3], [0]], "int32")))[0], [0, 0, 1])
    result = numpy_of(layer(np.array([[3.0], [1.0 + 1e-12]], "float64")))
    np.testing.assert_array_equal(result[0], [0, 0, 1])
    # 1 + 1e-12 is not a whole number in float64: unknown, not rounded to code 1. (JAX without
    # x64 has no float64: there the input arrives as float32, where 1 + 1e-12 is 1.)
    float64 = keras.ops.convert_to_tensor(1.0, "float64").dtype
    if keras.backend.standardize_dtype(float64) == "float64":
        np.testing.assert_allclose(result[1], JOB_FREQ, rtol=1e-6)


def test_embedding_weights_known_codes_and_weighted_mean_for_unknown():
    keras.utils.set_random_seed(0)
    layer = CategoryColumns([CITY])
    x = np.array([[1.0], [2.0], [3.0], [4.0], *([[c] for c in UNKNOWN_CODES])], "float32")
    result = numpy_of(layer(x))
    assert layer.output_width == 2
    assert layer.output_names() == ["city[0]", "city[1]"]
    assert len(layer.trainable_weights) == 1
    assert layer.non_trainable_weights == []
    embeddings = embeddings_of(layer)
    assert embeddings.shape == (4, 2)
    # Keras's "uniform" initializer: U(-0.05, 0.05), not all equal.
    assert np.abs(embeddings).max() <= 0.05 and np.unique(embeddings).size == 8
    assert result.shape == (4 + len(UNKNOWN_CODES), 2)
    np.testing.assert_array_equal(result[:4], embeddings)
    mean = CITY_FREQ @ embeddings
    for row in result[4:]:
        np.testing.assert_allclose(row, mean, rtol=1e-5, atol=1e-7)


def test_embedding_initializer_follows_keras_seed():
    def fresh(seed):
        keras.utils.set_random_seed(seed)
        layer = CategoryColumns([CITY])
        layer.build((None, 1))
        return embeddings_of(layer)

    np.testing.assert_array_equal(fresh(4), fresh(4))
    assert not np.array_equal(fresh(4), fresh(5))


def test_mixed_columns_keep_input_order():
    keras.utils.set_random_seed(1)
    columns = [CITY, {"name": "age"}, {"name": "x/y"}, JOB, {"name": "z"}]
    layer = CategoryColumns(columns)
    x = np.array(
        [
            [4.0, 30.5, -1.0, 3.0, 7.0],
            [0.0, 41.0, 2.0, 1.0, -7.0],
            [2.0, np.nan, 3.0, 9.0, 0.0],  # a NaN numeric cell is passed on, not encoded
        ],
        "float32",
    )
    result = numpy_of(layer(x))
    assert layer.output_width == 2 + 1 + 1 + 3 + 1 == result.shape[1]
    assert layer.output_names() == [
        "city[0]", "city[1]", "age", "x/y", "job=nurse", "job=engineer", "job=teacher", "z",
    ]  # fmt: skip
    e = embeddings_of(layer)
    expected = np.array(
        [
            [*e[3], 30.5, -1.0, 0.0, 0.0, 1.0, 7.0],
            [*(CITY_FREQ @ e), 41.0, 2.0, 1.0, 0.0, 0.0, -7.0],
            [*e[1], np.nan, 3.0, *JOB_FREQ, 0.0],
        ]
    )
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7)


def test_only_numeric_columns_pass_through():
    layer = CategoryColumns([{"name": "a"}, {"name": "b"}])
    x = np.array([[1.5, -2.0], [np.inf, 1e9]], "float32")
    np.testing.assert_array_equal(numpy_of(layer(x)), x)
    assert layer.weights == []


def test_symbolic_shapes_and_compute_output_shape():
    layer = CategoryColumns([{"name": "age"}, JOB, CITY])
    assert layer(keras.Input((3,))).shape == (None, 6)
    assert layer.compute_output_shape((None, 3)) == (None, 6)
    assert layer.compute_output_shape((8, 3)) == (8, 6)


@pytest.mark.parametrize("shape", [(None, 2), (None, 4), (None,)])
def test_input_width_must_match_columns(shape):
    layer = CategoryColumns([{"name": "age"}, JOB, CITY])
    message = "must have shape (batch, k), one column per entry of `columns` (k = 3)"
    with pytest.raises(ValueError, match=re.escape(message)):
        layer.build(shape)


def test_mixed_precision_keeps_large_codes_exact():
    # In float16, 2049 rounds to 2048: the layer must read codes before any autocast.
    size = 2100
    column = {
        "name": "id",
        "vocabulary": [f"v{i}" for i in range(size)],
        "counts": [1] * size,
        "encoding": "one_hot",
    }
    layer = CategoryColumns([column], dtype="mixed_float16")
    result = numpy_of(layer(np.array([[2049.0], [2100.0], [2101.0]], "float32")))
    assert result.dtype == np.float16
    assert result[0].argmax() == 2048 and result[0].max() == 1.0
    assert result[1].argmax() == 2099 and result[1].max() == 1.0
    np.testing.assert_allclose(result[2], np.full(size, 1 / size), rtol=1e-3)


# --- Validation ---------------------------------------------------------------------------------


def with_(base, **changes):
    column = {**base, **changes}
    return {key: value for key, value in column.items() if value is not ...}


@pytest.mark.parametrize(
    "columns, message",
    [
        ([], "Argument `columns` must be a non-empty list of dicts"),
        (None, "Argument `columns` must be a non-empty list of dicts"),
        ({"name": "a"}, "Argument `columns` must be a non-empty list of dicts"),
        (["age"], "`columns[0]` must be a dict with at least a 'name' key. Received: column='age'"),
        ([{"name": "a"}, {}], "`columns[1].name` must be a non-empty string. Received: name=None"),
        ([{"name": ""}], "`columns[0].name` must be a non-empty string. Received: name=''"),
        ([{"name": 3}], "`columns[0].name` must be a non-empty string. Received: name=3"),
        ([{"name": "a"}, {"name": "a"}], "The names in `columns` must be unique; ['a']"),
        ([JOB, with_(CITY, name="job")], "The names in `columns` must be unique; ['job']"),
        ([with_(JOB, vocab=["a"])], "`columns[0]` has unknown keys 'vocab'"),
        ([{"name": "a", "counts": [1]}], "`columns[0].vocabulary` must be a non-empty list"),
        ([with_(JOB, vocabulary=[])], "Received: vocabulary=[]"),
        ([with_(JOB, vocabulary="abc")], "Received: vocabulary='abc'"),
        ([with_(JOB, vocabulary=["a", 2, "c"])], "Received: vocabulary=['a', 2, 'c']"),
        (
            [{"name": "a"}, with_(JOB, vocabulary=["a", "b", "a"])],
            "`columns[1].vocabulary` must not repeat a value; ['a'] appear more than once",
        ),
        (
            [{"name": "a"}, with_(JOB, counts=[1, 2])],
            "`columns[1].counts` must be a list of positive integers, one per vocabulary value "
            "(3). Received: counts=[1, 2]",
        ),
        ([with_(JOB, counts=[1, 0, 2])], "Received: counts=[1, 0, 2]"),
        ([with_(JOB, counts=[1, -1, 2])], "Received: counts=[1, -1, 2]"),
        ([with_(JOB, counts=[1, 2.5, 2])], "Received: counts=[1, 2.5, 2]"),
        ([with_(JOB, counts=[1, True, 2])], "Received: counts=[1, True, 2]"),
        ([with_(JOB, counts=...)], "Received: counts=None"),
        ([with_(JOB, encoding="onehot")], "must be one of 'one_hot', 'embedding'"),
        ([with_(JOB, encoding=...)], "`columns[0].encoding` must be one of"),
        ([with_(CITY, embedding_dim=...)], "Received: embedding_dim=None"),
        ([with_(CITY, embedding_dim=0)], "`columns[0].embedding_dim` must be a positive integer"),
        ([with_(CITY, embedding_dim=2.0)], "Received: embedding_dim=2.0"),
        ([with_(CITY, embedding_dim=True)], "Received: embedding_dim=True"),
        ([with_(JOB, embedding_dim=2)], "is only for encoding 'embedding', not 'one_hot'"),
    ],
)
def test_invalid_columns_raise_value_error(columns, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        CategoryColumns(columns)


def test_numpy_integers_are_accepted_and_stored_as_ints():
    column = with_(CITY, counts=list(np.array([1, 2, 3, 4])), embedding_dim=np.int64(3))
    config = CategoryColumns([column]).get_config()["columns"][0]
    assert config["counts"] == [1, 2, 3, 4]
    assert all(type(count) is int for count in config["counts"])
    assert type(config["embedding_dim"]) is int
    assert ENCODINGS == ("one_hot", "embedding")


# --- Serialization ---------------------------------------------------------------------------


def test_get_config_from_config_round_trip():
    keras.utils.set_random_seed(2)
    columns = [{"name": "age"}, JOB, CITY]
    layer = CategoryColumns(tuple(columns), name="encode")
    config = layer.get_config()
    assert config["columns"] == columns
    assert config["name"] == "encode"
    assert json.loads(json.dumps(config)) == config
    config["columns"][1]["vocabulary"].append("pilot")  # a copy: the layer is untouched
    assert layer.get_config()["columns"] == columns

    clone = CategoryColumns.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.output_names() == layer.output_names()
    x = np.array([[1.0, 2.0, 3.0], [2.0, 0.0, 0.0], [3.0, 7.0, np.nan]], "float32")
    layer(x)
    clone.build((None, 3))
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(numpy_of(clone(x)), numpy_of(layer(x)))


def test_keras_serialize_deserialize():
    layer = CategoryColumns([JOB, {"name": "age"}])
    serialized = keras.layers.serialize(layer)
    assert serialized["registered_name"] == "builder>CategoryColumns"
    json.dumps(serialized)
    clone = keras.layers.deserialize(serialized)
    assert isinstance(clone, CategoryColumns)
    assert clone.get_config() == layer.get_config()
    x = np.array([[0.0, 1.0], [3.0, 2.0]], "float32")
    np.testing.assert_array_equal(numpy_of(clone(x)), numpy_of(layer(x)))


LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import builder.layers  # registers CategoryColumns: must come before load_model
    import keras

    model_path, x_path, out_path, config_path = sys.argv[1:]
    model = keras.saving.load_model(model_path, safe_mode=True)
    np.save(out_path, keras.ops.convert_to_numpy(model(np.load(x_path))))
    layer = next(la for la in model.layers if isinstance(la, builder.layers.CategoryColumns))
    with open(config_path, "w") as f:
        json.dump({"config": layer.get_config(), "names": layer.output_names()}, f)
    """
)


@pytest.mark.slow
def test_keras_file_reloads_identically_in_a_fresh_process(tmp_path, fresh_process):
    keras.utils.set_random_seed(3)
    encode = CategoryColumns([CITY, {"name": "age"}, JOB], name="encode")
    model = keras.Sequential([keras.Input((3,)), encode, keras.layers.Dense(1)])
    rng = np.random.default_rng(2)
    x = np.column_stack(
        [rng.integers(-1, 6, 64), rng.normal(size=64), rng.integers(0, 5, 64)]
    ).astype("float32")
    x[0, 0] = x[1, 2] = np.nan
    # A little training first, so the saved embeddings are not the initial ones.
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    model.fit(x, rng.normal(size=(64, 1)), epochs=2, batch_size=16, verbose=0)
    model_path, x_path = tmp_path / "model.keras", tmp_path / "x.npy"
    model.save(model_path)
    np.save(x_path, x)
    expected = numpy_of(model(x))

    out_path, config_path = tmp_path / "out.npy", tmp_path / "config.json"
    proc = fresh_process.run(LOAD_SCRIPT, model_path, x_path, out_path, config_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    reloaded = np.load(out_path)
    assert reloaded.dtype == expected.dtype
    np.testing.assert_array_equal(reloaded, expected)
    saved = json.loads(config_path.read_text())
    assert saved["config"] == json.loads(json.dumps(encode.get_config()))
    assert saved["names"] == encode.output_names()


# --- Training ----------------------------------------------------------------------------------


def sgd_step(columns, x, y):
    """One full-batch SGD step of ``CategoryColumns -> Dense(1)``; (E before, E after, model)."""
    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [keras.Input((x.shape[1],)), CategoryColumns(columns), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    before = embeddings_of(model.layers[0])
    model.fit(x, y, epochs=1, batch_size=len(x), verbose=0)
    return before, embeddings_of(model.layers[0]), model


def test_gradient_reaches_only_the_embedding_rows_used():
    x = np.array([[2.0], [2.0], [4.0]], "float32")
    before, after, model = sgd_step([CITY], x, np.full((3, 1), 5.0, "float32"))
    changed = np.abs(after - before).max(axis=1) > 1e-6
    np.testing.assert_array_equal(changed, [False, True, False, True])


def test_gradient_of_unknown_code_reaches_every_row_by_frequency():
    x = np.array([[0.0], [np.nan], [9.0]], "float32")
    before, after, _ = sgd_step([CITY], x, np.full((3, 1), 5.0, "float32"))
    step = after - before
    assert (np.abs(step).max(axis=1) > 1e-6).all()
    # d loss / d E[j] = freq[j] * (the gradient of the mean embedding): rows move in proportion.
    np.testing.assert_allclose(step, np.outer(CITY_FREQ / CITY_FREQ[0], step[0]), rtol=1e-4)


def test_fit_learns_category_effects_and_loss_decreases():
    keras.utils.set_random_seed(6)
    rng = np.random.default_rng(6)
    rows = 256
    job = rng.integers(1, 4, rows)
    city = rng.integers(1, 5, rows)
    age = rng.normal(size=rows)
    y = np.array([0.0, 3.0, -2.0])[job - 1] + np.array([1.0, -1.0, 0.5, 2.0])[city - 1] + age
    x = np.column_stack([job, age, city]).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((3,)),
            CategoryColumns([JOB, {"name": "age"}, CITY]),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    history = model.fit(x, y[:, None], epochs=8, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.5 * losses[0]
    assert losses[-1] < 0.5 * float(np.var(y))
