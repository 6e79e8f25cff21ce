"""Permutation importance: the feature that drives a generated target comes first."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from builder.cli import app
from tests.conftest import FEATURES

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_the_driving_feature_comes_first(trained_run):
    from builder.importance import permutation_importance

    result = permutation_importance(trained_run)
    names = [item["name"] for item in result["features"]]
    # y = 3 a - 2 b + 0.05 c: c ("Big Number", std ~28,600) moves y by ~1,400 per std; a by
    # ~35, b by ~10 (the fixture's 3-epoch model has not settled the small two's order).
    assert names[0] == "Big Number" and sorted(names) == sorted(FEATURES)
    first, *rest = result["features"]
    assert first["mean"] > 10 * max(item["mean"] for item in rest)
    assert first["mean"] > 3 * first["std"]  # the spread is small next to the effect
    assert len(first["increases"]) == result["repeats"] == 5
    assert result["rows"] == 450 and result["seed"] == 7  # 15% of 3,000; training.seed
    assert result["loss"] == "mse" and result["test_loss"] > 0


def test_importance_is_repeatable_and_seeded(trained_run):
    from builder.importance import permutation_importance

    one = permutation_importance(trained_run, repeats=3)
    two = permutation_importance(trained_run, repeats=3)
    other = permutation_importance(trained_run, repeats=3, seed=8)
    assert one == two
    assert one["features"][0]["increases"] != other["features"][0]["increases"]


def test_an_unused_feature_scores_zero(trained_run):
    """Shuffling a column the model ignores (its weight set to 0) changes no prediction."""
    import keras

    from builder.importance import permutation_importance
    from builder.predict import holdout_split
    from builder.runs import Run

    model = keras.models.clone_model(trained_run.model)
    model.set_weights(trained_run.model.get_weights())
    model.get_layer("normalization").finalize_state()  # so that it applies the statistics set
    dense = model.get_layer("output")
    kernel, bias = dense.get_weights()
    kernel[1] = 0.0
    dense.set_weights([kernel, bias])
    run = Run(trained_run.path, trained_run.config, model, metrics=trained_run.metrics)
    result = permutation_importance(run, split=holdout_split(trained_run))
    by_name = {item["name"]: item for item in result["features"]}
    assert by_name["x.dot"]["mean"] == pytest.approx(0.0, abs=1e-9 * result["test_loss"])
    assert by_name["x.dot"]["std"] == pytest.approx(0.0, abs=1e-9 * result["test_loss"])


def test_inspect_importance_json_and_table(trained_run):
    result = invoke("inspect", trained_run.path, "--importance", "--json")
    assert result.exit_code == 0, result.output
    importance = json.loads(result.output)["importance"]
    assert [item["name"] for item in importance["features"]][0] == "Big Number"
    assert set(item["name"] for item in importance["features"]) == set(FEATURES)
    text = invoke("inspect", trained_run.path, "--importance")
    assert text.exit_code == 0, text.output
    assert "permutation importance: increase in test mse" in text.output
    assert text.output.index("Big Number", text.output.index("permutation")) > 0
    plain = invoke("inspect", trained_run.path, "--json")
    assert "importance" not in json.loads(plain.output)


def test_importance_of_a_bare_model_file_is_one_line(trained_run):
    import shutil

    from builder.importance import permutation_importance  # noqa: F401  (the module imports)

    folder = trained_run.path.parent / "bare"
    folder.mkdir(exist_ok=True)
    shutil.copy(trained_run.path / "model.keras", folder / "model.keras")
    result = invoke("inspect", folder / "model.keras", "--importance")
    assert result.exit_code == 2
    assert result.output.startswith("error: a model file outside a run directory has no test")
    assert len(result.output.strip().splitlines()) == 1
    assert np.isfinite(trained_run.metrics["test"]["mse"])


# ---- categorical features and classifiers

JOB_FEATURES = ["age", "years_worked", "job_title", "region", "salary"]


@pytest.fixture(scope="module")
def jobs_csv(tmp_path_factory):
    """Generated jobs with a two-class text label too: senior (senior or lead) yes or no."""
    from builder.salary_data import generate_jobs

    frame = generate_jobs(rows=700, seed=12)
    frame["senior"] = np.where(frame["level"].isin(["senior", "lead"]), "yes", "no")
    path = tmp_path_factory.mktemp("jobs") / "jobs.csv"
    frame.to_csv(path, index=False)
    return path


def _train(folder, csv, target, layers):
    import builder
    from tests.conftest import write_yaml

    raw = {
        "name": target,
        "task": "classification",
        "data": {"path": str(csv), "features": JOB_FEATURES, "target": target},
        "model": {"layers": layers},
        "training": {"epochs": 4, "batch_size": 64, "optimizer": {"learning_rate": 0.02},
                     "seed": 5},
    }  # fmt: skip
    return builder.train(write_yaml(folder / f"{target}.yaml", raw), runs_dir=folder / "runs")


@pytest.fixture(scope="module")
def level_run(tmp_path_factory, jobs_csv):
    """Four text classes: softmax outputs."""
    return _train(tmp_path_factory.mktemp("level"), jobs_csv, "level",
                  [{"type": "dense", "units": 8, "activation": "tanh"}])  # fmt: skip


@pytest.fixture(scope="module")
def senior_run(tmp_path_factory, jobs_csv):
    """Two text classes: one sigmoid unit, no hidden layer."""
    return _train(tmp_path_factory.mktemp("senior"), jobs_csv, "senior", [])


def _cross_entropy(probabilities, codes):
    """Mean -log p(true class), written without Keras (its float32 clipping at 1e-7)."""
    p = np.clip(probabilities[np.arange(len(codes)), codes.astype(int)], 1e-7, 1 - 1e-7)
    return float(-np.mean(np.log(p)))


def test_multiclass_importance_shuffles_whole_categories(level_run):
    from builder.importance import permutation_importance
    from builder.predict import holdout_split
    from builder.training import predict_probabilities

    result = permutation_importance(level_run, repeats=3)
    assert result["loss"] == "sparse_categorical_crossentropy"
    x, y = holdout_split(level_run)
    probabilities = predict_probabilities(level_run.model, x)
    assert probabilities.shape == (len(y), 4)
    assert result["test_loss"] == pytest.approx(_cross_entropy(probabilities, y), rel=1e-4)
    assert result["test_loss"] == pytest.approx(level_run.metrics["test"]["log_loss"], rel=1e-4)
    by_name = {item["name"]: item for item in result["features"]}
    assert sorted(by_name) == sorted(JOB_FEATURES)  # one entry per feature, not per category
    assert by_name["job_title"]["type"] == by_name["region"]["type"] == "categorical"
    assert by_name["salary"]["type"] == "numeric"
    # The same shuffles, scored here: a categorical feature's codes move between rows as they
    # are (whole categories, all valid codes), and the loss is the (n, 4) cross-entropy.
    rng = np.random.default_rng(result["seed"])
    codes = set(np.unique(x[:, 2]))
    for j, name in enumerate(JOB_FEATURES):
        for r in range(3):
            shuffled = x.copy()
            shuffled[:, j] = x[rng.permutation(len(y)), j]
            assert set(np.unique(shuffled[:, 2])) == codes
            loss = _cross_entropy(predict_probabilities(level_run.model, shuffled), y)
            assert by_name[name]["increases"][r] == pytest.approx(
                loss - result["test_loss"], rel=1e-3, abs=1e-5
            )
    assert max(by_name["years_worked"]["mean"], by_name["salary"]["mean"]) > 0.05


def test_a_categorical_feature_the_model_ignores_scores_zero(level_run):
    """Its one-hot block's weights set to 0: no shuffle of its codes changes a prediction."""
    import keras

    from builder.importance import permutation_importance
    from builder.predict import holdout_split
    from builder.runs import Run

    model = keras.models.clone_model(level_run.model)
    model.set_weights(level_run.model.get_weights())
    # set_weights fills the normalization's statistics; finalize_state makes it apply them.
    model.get_layer("normalization").finalize_state()
    x, _ = holdout_split(level_run)
    np.testing.assert_allclose(model(x), level_run.model(x), rtol=1e-6, atol=1e-7)
    names = model.get_layer("categories").output_names()
    block = [i for i, n in enumerate(names) if n.startswith("job_title=")]
    dense = model.get_layer("hidden_1")
    kernel, bias = dense.get_weights()
    kernel[block] = 0.0
    dense.set_weights([kernel, bias])
    run = Run(level_run.path, level_run.config, model, metrics=level_run.metrics)
    result = permutation_importance(run, split=holdout_split(level_run), repeats=2)
    by_name = {item["name"]: item for item in result["features"]}
    assert by_name["job_title"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert by_name["region"]["mean"] != pytest.approx(0.0, abs=1e-9)


def test_binary_importance_scores_one_sigmoid_unit(senior_run):
    from builder.importance import permutation_importance
    from builder.predict import holdout_split
    from builder.training import model_outputs

    result = permutation_importance(senior_run, repeats=2)
    assert result["loss"] == "binary_crossentropy"
    x, y = holdout_split(senior_run)
    outputs = model_outputs(senior_run.model, x)
    assert outputs.shape == (len(y), 1)
    p = np.clip(outputs[:, 0], 1e-7, 1 - 1e-7)
    expected = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert result["test_loss"] == pytest.approx(expected, rel=1e-4)
    names = [item["name"] for item in result["features"]]
    assert names[0] in ("years_worked", "salary") and result["features"][0]["mean"] > 0.01


def test_inspect_importance_table_shows_the_feature_types(level_run):
    text = invoke("inspect", level_run.path, "--importance")
    assert text.exit_code == 0, text.output
    table = text.output[text.output.index("permutation importance") :]
    assert "sparse_categorical_crossentropy" in table
    row = next(line for line in table.splitlines() if "job_title" in line)
    assert "categorical" in row
    assert "job_title=" not in table
    data = json.loads(invoke("inspect", level_run.path, "--importance", "--json").output)
    types = {item["name"]: item["type"] for item in data["importance"]["features"]}
    assert types == {"age": "numeric", "years_worked": "numeric", "job_title": "categorical",
                     "region": "categorical", "salary": "numeric"}  # fmt: skip
