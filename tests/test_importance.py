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
