"""builder explain: the numpy trace of one row reproduces the model, layer by layer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from builder.cli import app
from builder.errors import DataError
from builder.explain import explain_values, forward
from builder.runs import Run
from tests.conftest import CONFIGS, FEATURES, TARGET, TRAIN_CONFIGS, TUNE_CONFIGS, make_linear_frame

runner = CliRunner()
ROWS = 400


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def concrete(raw, pick):
    """A config dict with each search space replaced by ``pick(space)``."""
    if isinstance(raw, dict):
        if "search" in raw:
            return pick(raw)
        return {k: concrete(v, pick) for k, v in raw.items()}
    if isinstance(raw, list):
        return [concrete(v, pick) for v in raw]
    return raw


def shipped_configs():
    """Every shipped config as a buildable one; a tune config once per activation choice, at
    its largest sizes (so every kind of hidden layer it can build is traced)."""
    from builder.config import validate_config

    # With their source, so that data.path finds the shipped data (a model for text columns or
    # classes is built for what the data holds).
    out = [
        (path.stem, validate_config(yaml.safe_load(path.read_text()), source=path))
        for path in TRAIN_CONFIGS
    ]
    for path in TUNE_CONFIGS:
        raw = yaml.safe_load(path.read_text())
        choices = raw["model"]["hidden"]["activation"]["values"]
        for choice in choices:

            def pick(space, choice=choice):
                if space["search"] == "choice":
                    return choice if choice in space["values"] else space["values"][-1]
                return space["max"]

            raw_trial = concrete(raw, pick)
            raw_trial.pop("tune", None)
            out.append((f"{path.stem}-{choice}", validate_config(raw_trial, source=path)))
    return out


SHIPPED = shipped_configs()


def category_sizes(model):
    """{input column: its vocabulary's size} for the model's categorical columns."""
    from builder.layers import CategoryColumns

    for layer in model.layers:
        if isinstance(layer, CategoryColumns):
            return {
                i: len(c["vocabulary"]) for i, c in enumerate(layer.columns) if "vocabulary" in c
            }
    return {}


def randomized(config, seed=0):
    """The config's model with random weights and input statistics of the salary data's size.

    A config with categorical features, or with no output (a classifier's comes from its
    classes), is built for its data (``build_for_data``); its categorical columns get random
    codes 0 (unseen) .. V, which the normalization passes on unchanged, as training sets it.
    """
    import keras

    from builder.layers import CategoryColumns
    from builder.model import NORMALIZATION, build_model
    from builder.training import build_for_data, set_normalization

    rng = np.random.default_rng(seed)
    width = len(config.data.feature_names)
    model = None
    path = config.data_path()
    if path is not None and path.exists():
        found = build_for_data(config)
        if config.model.output is None or any(
            isinstance(layer, CategoryColumns) for layer in found.layers
        ):
            model = found
    if model is None:
        model = build_model(config, target_mean=60_000.0, target_std=15_000.0)
    scale = rng.uniform(1, 5e4, width)
    x = rng.normal(0, 1, (ROWS, width)) * scale + scale
    mean, variance = x[:200].mean(axis=0), x[:200].var(axis=0)
    for i, size in category_sizes(model).items():
        x[:, i] = rng.integers(0, size + 1, ROWS)
        mean[i], variance[i] = 0.0, 1.0
    for layer in model.layers:
        if layer.name == NORMALIZATION:
            set_normalization(layer, mean, variance)
        elif isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [rng.normal(1, 0.3, gamma.shape), rng.normal(0, 0.3, beta.shape),
                 rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2, var.shape)]
            )  # fmt: skip
        elif layer.get_weights():
            layer.set_weights([rng.normal(0, 0.7, w.shape) for w in layer.get_weights()])
    return model, x.astype(np.float32)


@pytest.mark.parametrize("name,config", SHIPPED, ids=[name for name, _ in SHIPPED])
def test_trace_reproduces_the_model_on_every_shipped_config(name, config):
    from builder.explain import forward

    model, x = randomized(config)
    expected = np.asarray(model(x, training=False), np.float64)
    trace = forward(model, x, config.data.feature_names)
    # float64 here, float32 in Keras: equal up to float32 rounding of values of this size.
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(trace.output, expected, rtol=1e-5, atol=1e-5 * scale)
    assert trace.output.std() > 0  # rows differ: a constant output would hide a wrong trace
    assert CONFIGS  # the shipped configs were found
    if name.startswith("jobs_"):  # traced through their categories, not around them
        assert category_sizes(model) and "job_title" in config.data.feature_names
        first = trace.steps[0].input_names
        assert first == model.get_layer("categories").output_names() == trace.encoded_names
        assert any(n.startswith("job_title=") for n in first)
    if name == "jobs_level":
        assert trace.output.shape[1] == 4 and trace.steps[-1].activation == "softmax"


def test_the_tune_config_traced_every_activation_it_offers():
    names = [name for name, _ in SHIPPED]
    assert {"salary_tune-relu", "salary_tune-tanh", "salary_tune-threshold"} <= set(names)


def every_layer_config():
    from builder.config import validate_config

    return validate_config(
        {
            "name": "every_layer",
            "data": {"features": ["a", "b", "c"], "target": "y"},
            "model": {
                "layers": [
                    {"type": "dense", "units": 6, "activation": "selu"},
                    {"type": "batch_normalization"},
                    {"type": "dropout", "rate": 0.3},
                    {"type": "dense", "units": 5},
                    {"type": "activation", "activation": "gelu"},
                    {"type": "threshold", "threshold": 0.1},
                    {"type": "dense", "units": 4, "activation": "threshold"},
                    {"type": "dense", "units": 4, "activation": "softplus"},
                ],
                "output": {"units": 1},
            },
        }
    )


def test_trace_follows_every_layer_type():
    from builder.explain import forward

    config = every_layer_config()
    model, x = randomized(config, seed=3)
    trace = forward(model, x, config.data.feature_names)
    np.testing.assert_allclose(trace.output, np.asarray(model(x)), rtol=2e-5, atol=1e-4)
    types = [step.type for step in trace.steps]
    # hidden_2 (Dense, linear) takes the gelu activation layer into its neurons.
    assert types == [
        "Dense", "BatchNormalization", "Dropout", "Dense", "Threshold", "Dense", "Dense", "Dense"
    ]  # fmt: skip
    assert trace.steps[3].activation == "gelu"
    assert trace.steps[5].activation == "threshold"
    for step in (trace.steps[4], trace.steps[5]):
        assert set(np.unique(step.output)) <= {0.0, 1.0}


def test_numpy_activations_match_keras():
    import keras

    from builder.config.names import KERAS_ACTIVATIONS
    from builder.explain import ACTIVATIONS

    x = np.linspace(-6, 6, 241).reshape(-1, 1) * np.ones((1, 3))
    x[:, 1] *= 0.37
    for name in KERAS_ACTIVATIONS:
        expected = np.asarray(keras.activations.get(name)(x.astype(np.float32)), np.float64)
        np.testing.assert_allclose(ACTIVATIONS[name](x), expected, rtol=1e-5, atol=1e-6,
                                   err_msg=name)  # fmt: skip


@pytest.fixture(scope="module")
def row_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("explain") / "rows.csv"
    make_linear_frame(rows=20, seed=5).to_csv(path, index=False)
    return path


def test_contributions_add_up_to_the_prediction(trained_run, row_csv):
    from builder.explain import explain
    from builder.training import predict_array

    result = explain(trained_run, row_csv, row=7)
    frame = make_linear_frame(rows=20, seed=5)
    x = frame[FEATURES].to_numpy(np.float32)[7:8]
    predicted = float(predict_array(trained_run.model, x)[0])
    assert result["prediction"] == pytest.approx(predicted, rel=1e-5)
    total = sum(result["contributions"].values()) + result["intercept"]
    assert total == pytest.approx(result["prediction"], rel=1e-5)
    assert result["contributions"][FEATURES[0]] == pytest.approx(
        result["coefficients"][FEATURES[0]] * frame[FEATURES[0]].iloc[7]
    )
    assert result["actual"] == pytest.approx(frame[TARGET].iloc[7])
    (layer,) = result["layers"]
    (neuron,) = layer["neurons"]
    assert [item["name"] for item in neuron["inputs"]] == FEATURES
    assert neuron["inputs"][0]["raw"] == pytest.approx(frame[FEATURES[0]].iloc[7])


def test_explain_command_json_and_text(trained_run, row_csv):
    result = invoke("explain", trained_run.path, "--data", row_csv, "--row", 3, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for key in ("prediction", "layers", "contributions", "intercept"):
        assert key in data
    neuron = data["layers"][0]["neurons"][0]
    for key in ("inputs", "weights", "bias", "weighted_sum", "activation", "output"):
        assert key in neuron
    assert data["layers"][0]["name"] == "output" and data["layers"][0]["type"] == "Dense"

    text = invoke("explain", trained_run.path, "--data", row_csv, "--row", 3)
    assert text.exit_code == 0, text.output
    assert "prediction: Target Value = " in text.output
    assert "(= the prediction)" in text.output
    assert FEATURES[2] in text.output


def test_explain_row_out_of_range_is_one_line(trained_run, row_csv):
    result = invoke("explain", trained_run.path, "--data", row_csv, "--row", 20)
    assert result.exit_code == 2
    assert "error: --row must be below the number of data rows" in result.output
    assert "Received: row=20 (20 data rows)" in result.output


def test_wide_layer_text_leaves_neurons_out_and_json_has_all(tmp_path):
    """A bare .keras file (features x1..x3) with a 40-unit threshold layer."""
    from builder.config import validate_config

    config = validate_config(
        {
            "name": "wide",
            "data": {"features": ["x1", "x2", "x3"], "target": "y"},
            "model": {"layers": [{"type": "dense", "units": 40, "activation": "threshold"}],
                      "output": {"units": 1}},
        }
    )  # fmt: skip
    model, x = randomized(config, seed=1)
    model.save(tmp_path / "wide.keras")
    csv = tmp_path / "rows.csv"
    np.savetxt(csv, x[:5], delimiter=",", header="x1,x2,x3", comments="")
    text = invoke("explain", tmp_path / "wide.keras", "--data", csv, "--row", 2)
    assert text.exit_code == 0, text.output
    assert (
        "40 neurons; the 8 that move the next layer most for this row (32 left out" in text.output
    )
    assert "threshold: >= 0 -> 1" in text.output or "threshold: < 0 -> 0" in text.output
    data = json.loads(invoke("explain", tmp_path / "wide.keras", "--data", csv, "--row", 2,
                             "--json").output)  # fmt: skip
    hidden = data["layers"][0]
    assert len(hidden["neurons"]) == 40
    assert {n["output"] for n in hidden["neurons"]} <= {0.0, 1.0}
    assert all(n["threshold"] == 0.0 for n in hidden["neurons"])
    # The text's neurons are the most influential ones.
    shown = [line.split(":")[0].strip() for line in text.output.splitlines()
             if line.startswith("  hidden_1[")]  # fmt: skip
    influence = sorted((n["influence"] for n in hidden["neurons"]), reverse=True)
    chosen = [n["influence"] for n in hidden["neurons"] if n["name"] in shown]
    assert sorted(chosen, reverse=True) == influence[:8]


def test_classifier_shows_logits_and_probabilities(tmp_path):
    import keras

    from builder.config import validate_config
    from builder.explain import explain_values
    from builder.runs import Run

    config = validate_config(
        {
            "name": "clf",
            "task": "classification",
            "data": {"features": ["x1", "x2"], "target": "y"},
            "model": {"layers": [{"type": "dense", "units": 3, "activation": "tanh"}],
                      "output": {"units": 1, "activation": "sigmoid"}},
            "training": {"loss": "binary_crossentropy"},
        }
    )  # fmt: skip
    model, x = randomized(config, seed=2)
    result = explain_values(Run(None, config, model), x[4].tolist())
    p = float(np.asarray(model(x[4:5]))[0, 0])
    assert result["probabilities"]["1"] == pytest.approx(p, rel=1e-5)
    assert sum(result["probabilities"].values()) == pytest.approx(1.0)
    assert result["logits"][0] == pytest.approx(float(keras.ops.log(p / (1 - p))), rel=1e-4)
    # predict's rule: class 1 above 0.5 (its argmax of [1 - p, p] takes class 0 on a tie).
    assert result["prediction"] == ("1" if p > 0.5 else "0")
    assert "contributions" not in result


# ---- categorical features and text labels

JOBS_ROWS = 600
LEVELS = ["junior", "lead", "mid", "senior"]  # the recorded order: sorted as text


@pytest.fixture(scope="module")
def jobs_frame():
    from builder.salary_data import generate_jobs

    return generate_jobs(rows=JOBS_ROWS, seed=8)


@pytest.fixture(scope="module")
def jobs_csv(tmp_path_factory, jobs_frame):
    path = tmp_path_factory.mktemp("jobs") / "jobs.csv"
    jobs_frame.to_csv(path, index=False)
    return path


def jobs_config(csv, **extra):
    from builder.config import validate_config

    raw = {
        "name": "jobs",
        "data": {
            "path": str(csv),
            "features": ["age", "years_worked", "job_title",
                         {"name": "region", "encoding": "embedding", "embedding_dim": 2},
                         "remote"],
            "target": "salary",
        },
        "model": {"layers": [], "output": {"units": 1}},
        "training": {"epochs": 3, "batch_size": 128, "early_stopping": None, "seed": 3},
    }  # fmt: skip
    for key, value in extra.items():
        raw[key] = {**raw[key], **value}
    return raw, validate_config(raw)


@pytest.fixture(scope="module")
def jobs_run(tmp_path_factory, jobs_csv):
    """A no-hidden-layer regression on one-hot (job_title, remote) and embedded (region) text."""
    import builder
    from tests.conftest import write_yaml

    folder = tmp_path_factory.mktemp("jobs_run")
    raw, _ = jobs_config(jobs_csv)
    return builder.train(write_yaml(folder / "jobs.yaml", raw), runs_dir=folder / "runs")


@pytest.fixture(scope="module")
def level_run(tmp_path_factory, jobs_csv):
    """A softmax classifier of the four text levels."""
    import builder
    from tests.conftest import write_yaml

    folder = tmp_path_factory.mktemp("level_run")
    raw = {
        "name": "level",
        "task": "classification",
        "data": {"path": str(jobs_csv), "target": "level",
                 "features": ["age", "years_worked", "job_title", "salary"]},
        "model": {"layers": [{"type": "dense", "units": 6, "activation": "tanh"}]},
        "training": {"epochs": 3, "batch_size": 64, "optimizer": {"learning_rate": 0.02}},
    }  # fmt: skip
    return builder.train(write_yaml(folder / "level.yaml", raw), runs_dir=folder / "runs")


@pytest.fixture(scope="module")
def rows_csv(tmp_path_factory, jobs_frame):
    """The first 10 rows, then one with a job title never seen in training (row 10)."""
    frame = jobs_frame.head(11).copy()
    frame.loc[10, "job_title"] = "astronaut"
    path = tmp_path_factory.mktemp("rows") / "rows.csv"
    frame.to_csv(path, index=False)
    return path


def test_trace_encodes_codes_as_the_category_layer_does(jobs_csv):
    """One-hot and embedded columns, odd codes (out of range, fractional, NaN, inf) as unseen,
    and a batch normalization as the first step after the categories."""
    _, config = jobs_config(
        jobs_csv, model={"layers": [{"type": "batch_normalization"},
                                    {"type": "dense", "units": 5, "activation": "elu"}]},
    )  # fmt: skip
    model, x = randomized(config, seed=4)
    layer = model.get_layer("categories")
    jobs, region = layer.columns[2], layer.columns[3]
    v = len(jobs["vocabulary"])
    odd = [0.0, v + 1.0, 2.5, -1.0, np.nan, np.inf, 1.0, float(v)]
    x[: len(odd), 2] = odd
    x[: len(odd), 3] = odd[::-1]
    trace = forward(model, x, config.data.feature_names)
    np.testing.assert_allclose(trace.output, np.asarray(model(x)), rtol=1e-5, atol=1e-5)
    assert trace.encoded_names == layer.output_names()
    start, stop = trace.inputs[2]["columns"]
    assert trace.inputs[2]["type"] == "categorical" and stop - start == v
    block = trace.encoded[:, start:stop]
    frequencies = np.asarray(jobs["counts"]) / sum(jobs["counts"])
    for row, code in enumerate(odd):
        expected = np.eye(v)[int(code) - 1] if code in (1.0, float(v)) else frequencies
        np.testing.assert_allclose(block[row], expected, err_msg=f"code {code}")
    (embedding,) = layer.get_weights()  # (V, 2), independent of explain's lookup by name
    start, stop = trace.inputs[3]["columns"]
    region_codes = x[len(odd) :, 3].astype(int)
    average = np.asarray(region["counts"]) / sum(region["counts"]) @ embedding
    expected = np.where(
        (region_codes > 0)[:, None], embedding[np.maximum(region_codes, 1) - 1], average
    )
    np.testing.assert_allclose(trace.encoded[len(odd) :, start:stop], expected, rtol=1e-6)
    # An element-wise first step takes every encoded column, one per neuron.
    result = explain_values(Run(None, config, model), x[8].tolist())
    first = result["layers"][0]
    assert first["type"] == "BatchNormalization" and first["inputs_left_out"] == 0
    assert [n["inputs"][0]["name"] for n in first["neurons"]] == layer.output_names()


def test_a_categorical_row_shows_its_text_code_and_active_input(jobs_run, jobs_frame, rows_csv):
    from builder.explain import explain
    from builder.predict import predict

    predicted = predict(jobs_run, rows_csv)["predicted_salary"].to_numpy(np.float64)
    layer = jobs_run.model.get_layer("categories")
    jobs = layer.columns[2]["vocabulary"]
    kernel = jobs_run.model.get_layer("output").get_weights()[0][:, 0]
    scale = float(jobs_run.model.get_layer("target_scaling").scale)
    for row in (0, 3):
        result = explain(jobs_run, rows_csv, row=row)
        title = jobs_frame["job_title"].iloc[row]
        item = result["inputs"][2]
        assert item["name"] == "job_title" and item["type"] == "categorical"
        assert item["raw"] == title == item["category"]
        assert item["code"] == jobs.index(title) + 1 and not item["unseen"]
        assert item["encoded"] == {f"job_title={title}": 1.0}
        assert result["inputs"][0] == {**result["inputs"][0], "type": "numeric",
                                       "raw": float(jobs_frame["age"].iloc[row])}  # fmt: skip
        assert result["prediction"] == pytest.approx(predicted[row], rel=1e-5)
        total = sum(result["contributions"].values()) + result["intercept"]
        assert total == pytest.approx(result["prediction"], rel=1e-9)
        # A one-hot feature's share is its category's weight, in the target's units.
        at = layer.output_names().index(f"job_title={title}")
        assert result["contributions"]["job_title"] == pytest.approx(kernel[at] * scale, rel=1e-5)
        assert result["actual"] == pytest.approx(jobs_frame["salary"].iloc[row])
        (output,) = result["layers"]
        (neuron,) = output["neurons"]
        names = [entry["name"] for entry in neuron["inputs"]]
        remote = jobs_frame["remote"].iloc[row]
        region = jobs_frame["region"].iloc[row]
        assert names == ["age", "years_worked", f"job_title={title}", "region[0]", "region[1]",
                         f"remote={remote}"]  # fmt: skip
        assert neuron["inputs"][3] == {**neuron["inputs"][3], "feature": "region", "raw": region}
        assert output["inputs_left_out"] == (len(jobs) - 1) + (2 - 1)
        terms = np.dot(neuron["weights"], [entry["value"] for entry in neuron["inputs"]])
        assert terms + neuron["bias"] == pytest.approx(neuron["weighted_sum"], rel=1e-9)


def test_an_unseen_category_is_the_training_average(jobs_run, rows_csv):
    from builder.explain import explain
    from builder.predict import predict

    result = explain(jobs_run, rows_csv, row=10)
    item = result["inputs"][2]
    assert item["raw"] == "astronaut" and item["code"] == 0 and item["unseen"]
    assert item["category"] is None
    column = jobs_run.model.get_layer("categories").columns[2]
    frequencies = np.asarray(column["counts"]) / sum(column["counts"])
    assert list(item["encoded"].values()) == pytest.approx(frequencies.tolist())
    (neuron,) = result["layers"][0]["neurons"]
    listed = [entry["name"] for entry in neuron["inputs"] if entry.get("feature") == "job_title"]
    assert listed == [f"job_title={v}" for v in column["vocabulary"]]
    predicted = float(predict(jobs_run, rows_csv)["predicted_salary"].iloc[10])
    assert result["prediction"] == pytest.approx(predicted, rel=1e-5)
    total = sum(result["contributions"].values()) + result["intercept"]
    assert total == pytest.approx(result["prediction"], rel=1e-9)

    text = invoke("explain", jobs_run.path, "--data", rows_csv, "--row", 10)
    assert text.exit_code == 0, text.output
    assert "astronaut  -> code 0 (unseen in training: encoded as the training frequencies)" in (
        text.output
    )
    assert "job_title     unseen (training frequencies): " in text.output
    assert "(= the prediction)" in text.output


def test_explain_text_and_json_with_categorical_features(jobs_run, jobs_frame, rows_csv):
    title = jobs_frame["job_title"].iloc[2]
    text = invoke("explain", jobs_run.path, "--data", rows_csv, "--row", 2)
    assert text.exit_code == 0, text.output
    code = jobs_run.model.get_layer("categories").columns[2]["vocabulary"].index(title) + 1
    assert f"{title}  -> code {code} (one-hot: job_title={title} = 1)" in text.output
    assert "-> code" in text.output.split("region", 1)[1].splitlines()[0]
    assert "embedding row of" in text.output
    assert "one-hot inputs that are 0 for this row left out" in text.output
    assert "(raw units: coefficient x value; a text column: its category's effect)" in text.output
    assert f"job_title     {title}: " in text.output
    data = json.loads(invoke("explain", jobs_run.path, "--data", rows_csv, "--row", 2,
                             "--json").output)  # fmt: skip
    assert data["inputs"][2]["raw"] == title and data["inputs"][2]["code"] == code
    assert set(data["contributions"]) == set(jobs_run.config.data.feature_names)


def test_empty_and_unseen_cells_follow_the_config(jobs_run, jobs_frame, tmp_path):
    from builder.explain import explain
    from builder.runs import Run

    frame = jobs_frame.head(3).copy().astype(object)
    frame.loc[1, "job_title"] = ""
    frame.loc[2, "job_title"] = "astronaut"
    csv = tmp_path / "holes.csv"
    frame.to_csv(csv, index=False)
    with pytest.raises(DataError, match="column 'job_title' must have a value on line 3"):
        explain(jobs_run, csv, row=1)

    def with_data(**update):
        config = jobs_run.config
        changed = config.model_copy(update={"data": config.data.model_copy(update=update)})
        return Run(jobs_run.path, changed, jobs_run.model)

    filled = explain(with_data(missing="mean"), csv, row=1)["inputs"][2]
    most = jobs_run.model.get_layer("categories").columns[2]["vocabulary"][0]
    assert filled["code"] == 1 and filled["raw"] == filled["category"] == most
    with pytest.raises(DataError, match="must hold values seen in training.*'astronaut' on line 4"):
        explain(with_data(unknown="error"), csv, row=2)
    assert explain(jobs_run, csv, row=2)["inputs"][2]["unseen"]


def test_a_softmax_classifier_names_its_text_classes(level_run, jobs_frame, rows_csv):
    from builder.explain import explain
    from builder.predict import predict

    predicted = predict(level_run, rows_csv)
    for row in (0, 5, 10):
        result = explain(level_run, rows_csv, row=row)
        probabilities = result["probabilities"]
        assert list(probabilities) == LEVELS
        expected = [float(predicted[f"probability_{label}"].iloc[row]) for label in LEVELS]
        assert list(probabilities.values()) == pytest.approx(expected, rel=1e-5, abs=1e-7)
        assert sum(probabilities.values()) == pytest.approx(1.0)
        logits = np.asarray(result["logits"])
        softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert softmax.tolist() == pytest.approx(list(probabilities.values()))
        assert result["prediction"] == predicted["predicted_level"].iloc[row]
        assert result["actual"] == jobs_frame["level"].iloc[row]
        assert "contributions" not in result
    text = invoke("explain", level_run.path, "--data", rows_csv, "--row", 5)
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    shown = next(line for line in lines if line.startswith("class probabilities: "))
    assert [part.split(":")[0] for part in shown.split(": ", 1)[1].split("  ")] == LEVELS
    assert f"(actual {jobs_frame['level'].iloc[5]})" in text.output
    assert "output (Dense, softmax): 4 neurons" in text.output


def test_a_sigmoid_classifier_with_text_labels(jobs_csv, jobs_frame, rows_csv):
    from builder.config import validate_config
    from builder.explain import explain
    from builder.runs import Run

    config = validate_config(
        {
            "name": "remote",
            "task": "classification",
            "data": {"path": str(jobs_csv), "target": "remote",
                     "features": ["age", "job_title", "salary"]},
            "model": {"layers": [{"type": "dense", "units": 3, "activation": "tanh"}]},
        }
    )  # fmt: skip
    model, _ = randomized(config, seed=5)
    assert model.get_layer("output").units == 1  # two classes: one sigmoid unit
    run = Run(None, config, model, manifest={"classes": ["no", "yes"]})
    jobs = model.get_layer("categories").columns[1]["vocabulary"]
    for row in range(4):
        result = explain(run, rows_csv, row=row)
        cells = jobs_frame.iloc[row]
        x = np.array([[cells["age"], jobs.index(cells["job_title"]) + 1, cells["salary"]]])
        p = float(np.asarray(model(x.astype(np.float32)))[0, 0])
        assert result["probabilities"]["yes"] == pytest.approx(p, rel=1e-5)
        assert result["probabilities"]["no"] == pytest.approx(1 - p, rel=1e-5)
        assert result["prediction"] == ("yes" if p > 0.5 else "no")
        assert result["actual"] == cells["remote"]
