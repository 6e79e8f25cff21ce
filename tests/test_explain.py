"""builder explain: the numpy trace of one row reproduces the model, layer by layer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from builder.cli import app
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

    out = [(path.stem, validate_config(yaml.safe_load(path.read_text()))) for path in TRAIN_CONFIGS]
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
            out.append((f"{path.stem}-{choice}", validate_config(raw_trial)))
    return out


SHIPPED = shipped_configs()


def randomized(config, seed=0):
    """The config's model with random weights and input statistics of the salary data's size."""
    import keras

    from builder.model import NORMALIZATION, build_model

    rng = np.random.default_rng(seed)
    width = len(config.data.feature_names)
    model = build_model(config, target_mean=60_000.0, target_std=15_000.0)
    scale = rng.uniform(1, 5e4, width)
    x = rng.normal(0, 1, (ROWS, width)) * scale + scale
    for layer in model.layers:
        if layer.name == NORMALIZATION:
            layer.adapt(x[:200])
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
    assert result["prediction"] == ("1" if p >= 0.5 else "0")
    assert "contributions" not in result
