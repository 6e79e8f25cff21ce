"""Right by default: training lengths that follow the data, validate that reads it, warnings."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

import builder
from builder.config import parse_config, validate_config
from builder.config.names import DEFAULT_STEPS
from builder.data.scoring import baselines, learned_nothing, score
from builder.inspection import raw_equation
from builder.training import MIN_EPOCH_STEPS, epoch_steps, pass_steps, resolve_epochs
from tests.conftest import ROOT

LINEAR = ROOT / "configs" / "salary_linear.yaml"
SALARIES = ROOT / "data" / "salaries.csv"


def _config(**training):
    raw = yaml.safe_load(LINEAR.read_text())
    raw["training"].update(training)
    raw["training"] = {k: v for k, v in raw["training"].items() if v is not None}
    return validate_config(raw, source=LINEAR)


def test_auto_epochs_count_optimizer_steps():
    config = _config(epochs="auto", steps=600, batch_size=256)
    # 7,000 training rows: 28 steps a pass, so 22 epochs make 600 steps.
    assert pass_steps(config, 7000) == 28 and epoch_steps(config, 7000) == 28
    assert resolve_epochs(config, 7000) == 22
    # 210 rows: one step a pass; an epoch is MIN_EPOCH_STEPS steps (several passes).
    assert pass_steps(config, 210) == 1 and epoch_steps(config, 210) == MIN_EPOCH_STEPS
    assert resolve_epochs(config, 210) == int(np.ceil(600 / MIN_EPOCH_STEPS))
    # 700,000 rows: one pass is already more than 600 steps.
    assert resolve_epochs(config, 700_000) == 1


def test_fixed_epochs_are_passes():
    config = _config(epochs=20, steps=None)
    assert resolve_epochs(config, 210) == 20 and epoch_steps(config, 210) == 1


def test_steps_without_auto_is_refused():
    raw = yaml.safe_load(LINEAR.read_text())
    raw["training"].update(epochs=20, steps=600)
    with pytest.raises(builder.ConfigError, match=r"training\.steps .*epochs: auto"):
        validate_config(raw, source=LINEAR)


def test_epochs_auto_is_the_default():
    config = parse_config("name: x\ndata: {features: [a], target: b}\n")
    assert config.training.epochs == "auto" and config.training.steps is None
    assert resolve_epochs(config, 7000) == int(np.ceil(DEFAULT_STEPS / 28))


@pytest.mark.slow
@pytest.mark.parametrize("rows", [300, 999])
def test_linear_recipe_reaches_least_squares_on_small_files(rows, tmp_path):
    csv = tmp_path / f"salaries_{rows}.csv"
    lines = SALARIES.read_text().splitlines(keepends=True)
    csv.write_text("".join(lines[: rows + 1]))
    run = builder.train(LINEAR, data=csv, runs_dir=tmp_path / "runs")
    lsq = run.metrics["baselines"]["least_squares"]
    assert run.metrics["test"]["mse"] <= 1.01 * lsq["mse"]
    coefficients, intercept = raw_equation(run.model, list(run.config.data.feature_names))
    for name, value in lsq["coefficients"].items():
        assert abs(coefficients[name] / value - 1) <= 0.05, (name, coefficients[name], value)
    assert run.metrics["warnings"] == []


def test_learned_nothing_regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    y = x @ [2.0, -1.0] + rng.normal(0, 0.1, 200)
    base = baselines("regression", x[:150], y[:150], x[150:], y[150:], ["a", "b"])
    good = score("regression", y[150:], y[150:] + rng.normal(0, 0.1, 50))
    assert learned_nothing("regression", good, base) is None
    constant = score("regression", y[150:], np.full(50, y[:150].mean()))
    message = learned_nothing("regression", constant, base)
    assert message is not None and "no better than the mean predictor" in message
    diverged = {**constant, "mse": float("nan")}
    assert learned_nothing("regression", diverged, base) is not None


def test_learned_nothing_classification():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 1))
    y = (x[:, 0] > 0.8).astype(float)  # about 21% positives
    base = baselines("classification", x[:300], y[:300], x[300:], y[300:], ["a"])
    assert base["logistic"]["accuracy"] > base["majority_class"]["accuracy"]

    def probabilities(p):
        return np.stack([1 - p, p], axis=1)

    p = 1 / (1 + np.exp(-10 * (x[300:, 0] - 0.8)))
    separated = score("classification", y[300:], probabilities(p))
    assert learned_nothing("classification", separated, base) is None
    majority = score("classification", y[300:], probabilities(np.full(100, y[:300].mean())))
    assert "majority class" in learned_nothing("classification", majority, base)


def _readme_config() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## The config\n\n```yaml\n(.*?)```", text, re.S)
    assert block, "README's config example not found"
    return block.group(1)


def test_readme_example_is_its_own_config():
    config = parse_config(_readme_config(), source=ROOT / "configs" / "readme.yaml")
    shipped = {yaml.safe_load(p.read_text())["name"] for p in (ROOT / "configs").glob("*.yaml")}
    assert config.name not in shipped


@pytest.mark.slow
def test_readme_example_trains_better_than_the_mean(tmp_path):
    config = parse_config(_readme_config(), source=ROOT / "configs" / "readme.yaml")
    run = builder.train(config, runs_dir=tmp_path)
    assert run.metrics["test"]["r2"] > 0.5
    assert run.metrics["warnings"] == []


@pytest.mark.slow
def test_a_network_that_outputs_a_constant_is_warned_about(tmp_path):
    # The old README example: a threshold activation feeding a threshold layer at 0 outputs 1
    # for every row, so the output layer sees a constant.
    text = _readme_config().replace(
        "    - {type: dense, units: 16}      # no activation of its own: the threshold layer is "
        "its step\n",
        "    - {type: dense, units: 16, activation: threshold}\n",
    )
    assert "activation: threshold}" in text
    config = parse_config(text, source=ROOT / "configs" / "readme.yaml")
    run = builder.train(config, epochs=3, runs_dir=tmp_path)
    assert any("no better than the mean predictor" in w for w in run.metrics["warnings"])


def test_early_stopping_outcome_is_recorded(tmp_path, linear_csv):
    from tests.conftest import config_dict

    raw = config_dict(str(linear_csv), epochs=40, early_stopping={"patience": 1, "min_delta": 1e9})
    run = builder.train(validate_config(raw), runs_dir=tmp_path)
    outcome = run.metrics["early_stopping"]
    # min_delta larger than any change: no epoch after the first counts as an improvement.
    assert outcome["stopped_epoch"] == len(run.history) == 2
    assert outcome["restored_epoch"] == 1 and outcome["monitor"] == "val_loss"


@pytest.mark.slow
def test_shipped_tune_config_searches_and_its_best_config_trains(tmp_path):
    from builder.tuning import tune
    from tests.conftest import TUNE_CONFIGS

    assert [p.name for p in TUNE_CONFIGS] == ["salary_tune.yaml"]
    raw = yaml.safe_load(TUNE_CONFIGS[0].read_text())
    csv = tmp_path / "salaries_600.csv"
    csv.write_text("".join(SALARIES.read_text().splitlines(keepends=True)[:601]))
    raw["data"]["path"] = str(csv)
    raw["training"]["steps"] = 64  # a short search: the shipped one trains 2,000 steps a trial
    config = validate_config(raw, source=TUNE_CONFIGS[0])
    result = tune(config, runs_dir=tmp_path / "runs", max_trials=2)
    assert len(result.rows) == 2
    assert result.best["trial"] in {row["trial"] for row in result.rows}
    run = builder.train(result.best_config, runs_dir=tmp_path / "runs")
    assert np.isfinite(run.metrics["test"]["mse"])


def _validate(tmp_path, capsys, csv_text: str, **data):
    from builder.cli_common import validate

    csv = tmp_path / "t.csv"
    csv.write_text(csv_text)
    raw = {
        "name": "t",
        "data": {"path": str(csv), "features": ["a", "b", "c"], "target": "y", **data},
    }
    config = tmp_path / "t.yaml"
    config.write_text(yaml.safe_dump(raw))
    code = validate([config])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


def test_validate_names_every_absent_column(tmp_path, capsys):
    code, out, err = _validate(tmp_path, capsys, "a,x,y\n1,2,3\n")
    assert code == 2 and out == ""
    assert [line.split("must have a column ")[1][:3] for line in err] == ["'b'", "'c'"]


def test_validate_reads_values_with_trainings_messages(tmp_path, capsys):
    rows = "a,b,c,y\n1,x,inf,1\n2,3,,2\n" + "".join(f"{i},{i},{i},{i}\n" for i in range(3, 30))
    declared = ["a", {"name": "b", "type": "numeric"}, "c"]  # else b holds categories
    code, _, err = _validate(tmp_path, capsys, rows, features=declared)
    assert code == 2 and len(err) == 2
    assert "column 'b' must be numeric. Received: 'x' on line 2" in err[0]
    assert "column 'c' must be finite. Received: inf on line 2" in err[1]
    # The same file through training's reader: the first of those lines, word for word.
    from builder.data import read_columns

    with pytest.raises(builder.DataError) as caught:
        read_columns(tmp_path / "t.csv", ["a", "b", "c", "y"])
    assert err[0].endswith(str(caught.value))


def test_validate_counts_empty_cells_and_checks_labels(tmp_path, capsys):
    rows = "a,b,c,y\n" + "".join(f"{i},{'' if i % 7 == 0 else i},{i},{i % 3}\n" for i in range(40))
    code, _, err = _validate(tmp_path, capsys, rows)
    assert code == 2 and len(err) == 1 and "column 'b' must have no empty" in err[0]
    code, _, err = _validate(tmp_path, capsys, rows, missing="drop")
    assert code == 0
    raw_rows = rows.replace(",,", ",1,")
    code, _, err = _validate(tmp_path, capsys, raw_rows, missing="error")
    assert code == 0


def test_validate_refuses_a_three_class_target_for_a_binary_classifier(tmp_path, capsys):
    from builder.cli_common import validate

    csv = tmp_path / "t.csv"
    csv.write_text("a,y\n" + "".join(f"{i},{i % 3}\n" for i in range(40)))
    raw = {
        "name": "t",
        "data": {"path": str(csv), "features": ["a"], "target": "y"},
        "model": {"output": {"activation": "sigmoid"}},
        "training": {"loss": "binary_crossentropy", "metrics": ["accuracy"]},
    }
    config = tmp_path / "t.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert validate([config]) == 2
    message = capsys.readouterr().err
    assert "model.output.units must be 3, one softmax unit per class, for the 3 classes" in message


def test_validate_console_script_names_the_absent_column(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "c.yaml"
    text = (ROOT / "configs" / "salary_linear.yaml").read_text()
    text = text.replace("path: ../data/salaries.csv", f"path: {SALARIES}")
    config.write_text(text.replace("years_in_industry]", "years_in_industy]"))
    done = subprocess.run(
        [sys.executable, "-m", "builder", "validate", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "must have a column 'years_in_industy'. Did you mean 'years_in_industry'?" in done.stderr
    assert "tensorflow" not in done.stderr.lower()


@pytest.mark.slow
def test_train_prints_the_learned_nothing_warning(tmp_path):
    from typer.testing import CliRunner

    from builder.cli import app

    text = _readme_config().replace(
        "    - {type: dense, units: 16}      # no activation of its own: the threshold layer is "
        "its step\n",
        "    - {type: dense, units: 16, activation: threshold}\n",
    )
    config = tmp_path / "readme.yaml"
    config.write_text(text.replace("../data/salaries.csv", str(SALARIES)))
    result = CliRunner().invoke(
        app, ["train", str(config), "--epochs", "2", "--runs-dir", str(tmp_path / "r")]
    )
    assert result.exit_code == 0
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "no better than the mean predictor" in warnings[0]


def test_validate_data_refuses_a_device_at_once(tmp_path, capsys):
    from pathlib import Path

    from builder.cli_common import validate

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"name": "t", "data": {"features": ["a"], "target": "y"}}))
    assert validate([config], data=Path("/dev/zero")) == 2
    assert (
        "must be a file (regular files only). Received: a character device"
        in capsys.readouterr().err
    )
