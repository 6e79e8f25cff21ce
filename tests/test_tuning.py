"""Search spaces in configs, and builder tune end to end on small generated data."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import builder
from builder.cli import app
from builder.config import load_config, parse_config, validate_config
from builder.errors import ConfigError
from builder.search import spaces
from tests.conftest import config_dict, make_linear_frame, write_yaml

# Every trial trains through builder.training.fit exactly as builder train would, with the
# same seed, so retraining best.yaml reproduced the best trial's score bit for bit in every run
# here; the tolerance only leaves room for a platform whose kernels are not deterministic.
REPRODUCE_REL = 1e-5

HIDDEN = {
    "layers": {"search": "int", "min": 0, "max": 2},
    "units": {"search": "int", "min": 4, "max": 16, "step": 4},
    "activation": {"search": "choice", "values": ["relu", "tanh", "threshold"]},
}


def search_config(csv, tuner: str = "random", trials: int = 4, epochs: int = 3) -> dict:
    config = config_dict(
        str(csv),
        epochs=epochs,
        batch_size={"search": "choice", "values": [64, 128]},
        optimizer={
            "learning_rate": {"search": "float", "min": 1e-3, "max": 0.1, "sampling": "log"}
        },
    )
    config["model"] = {"hidden": copy.deepcopy(HIDDEN)}
    config["tune"] = {"tuner": tuner, "max_trials": trials, "seed": 3}
    return config


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("tune-data") / "small.csv"
    make_linear_frame(rows=1500).to_csv(path, index=False)
    return path


BASE = """\
name: t
data: {features: [a, b], target: y}
model:
  layers:
    - {type: dense, units: UNITS, activation: ACT}
    - {type: dropout, rate: RATE}
training:
  optimizer: {learning_rate: LR}
  batch_size: BS
"""
VALUES = {"UNITS": "8", "ACT": "relu", "RATE": "0.1", "LR": "0.01", "BS": "64"}


def with_values(**changes: str) -> str:
    text = BASE
    for key, value in {**VALUES, **changes}.items():
        text = text.replace(key, value)
    return text


def test_search_spaces_parse_where_values_go():
    config = parse_config(
        with_values(
            UNITS="{search: int, min: 8, max: 64, step: 8}",
            ACT="{search: choice, values: [relu, tanh, threshold]}",
            RATE="{search: float, min: 0, max: 0.5}",
            LR="{search: float, min: 1e-4, max: 1e-1, sampling: log}",  # YAML 1.2 floats
            BS="{search: choice, values: [64, 128, 256]}",
        )
    )
    found = dict(spaces(config))
    assert set(found) == {
        "model.layers[0].units",
        "model.layers[0].activation",
        "model.layers[1].rate",
        "training.optimizer.learning_rate",
        "training.batch_size",
    }
    assert found["training.optimizer.learning_rate"].min == 1e-4
    assert found["model.layers[1].rate"].min == 0.0 and isinstance(
        found["model.layers[1].rate"].min, float
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"UNITS": "{search: int, min: 0, max: 8}"},
            "model.layers[0].units.min must be a positive integer. Received: min=0",
        ),
        (
            {"UNITS": "{search: int, min: 16, max: 8}"},
            "model.layers[0].units.max must be at least min. Received: min=16, max=8",
        ),
        (
            {"UNITS": "{search: float, min: 1, max: 8}"},
            "model.layers[0].units.search must be int or choice for this key",
        ),
        (
            {"UNITS": "{search: int, min: 1, max: 8, stepp: 2}"},
            "model.layers[0].units.stepp is not a known key. Did you mean 'step'?",
        ),
        (
            {"ACT": "{search: choice, values: [relu, relux]}"},
            "model.layers[0].activation.values must be a known activation",
        ),
        (
            {"ACT": "{search: int, min: 1, max: 2}"},
            "model.layers[0].activation.search must be choice for this key",
        ),
        (
            {"RATE": "{search: float, min: 0, max: 1.0}"},
            "model.layers[1].rate.max must be less than 1.0. Received: max=1.0",
        ),
        (
            {"LR": "{search: float, min: 0, max: 0.1, sampling: log}"},
            "training.optimizer.learning_rate.min must be greater than 0 for sampling: log",
        ),
        (
            {"BS": "{search: choice, values: [64, 0]}"},
            "training.batch_size.values must be a positive integer. Received: values=0",
        ),
        (
            {"BS": "{search: choice, values: [64, 64]}"},
            "training.batch_size.values must not repeat a value. Received: 64 twice",
        ),
    ],
)
def test_invalid_search_spaces_name_the_key_path(changes, message):
    with pytest.raises(ConfigError) as err:
        parse_config(with_values(**changes), source="c.yaml")
    assert message in str(err.value)
    assert "(c.yaml, line" in str(err.value)


def test_hidden_block_without_spaces_is_shorthand_for_layers():
    config = parse_config(
        "name: t\ndata: {features: [a], target: y}\n"
        "model:\n  hidden: {layers: 2, units: 8, activation: tanh, dropout: 0.1}\n"
    )
    assert config.model.hidden is None
    assert [layer.type for layer in config.model.layers] == [
        "dense",
        "dropout",
        "dense",
        "dropout",
    ]
    assert config.model.layers[0].units == 8 and config.model.layers[2].activation == "tanh"


def test_hidden_block_and_layers_are_alternatives():
    with pytest.raises(ConfigError, match="model.hidden must not be given with model.layers"):
        parse_config(
            "name: t\ndata: {features: [a], target: y}\n"
            "model:\n  layers: [{type: dense, units: 3}]\n  hidden: {layers: 1, units: 2}\n"
        )


def test_tune_objective_must_be_logged():
    with pytest.raises(
        ConfigError, match=r"tune.objective must be one of .*Did you mean 'val_mae'"
    ):
        parse_config("name: t\ndata: {features: [a], target: y}\ntune: {objective: val_maee}\n")


def test_size_limit_counts_the_largest_network_of_a_space():
    with pytest.raises(ConfigError, match="model must have at most 50,000,000 trainable"):
        parse_config(
            "name: t\ndata: {features: [a], target: y}\nmodel:\n  hidden:\n"
            "    layers: {search: int, min: 1, max: 64}\n"
            "    units: {search: int, min: 8, max: 4096}\n"
        )


def test_train_and_build_refuse_search_spaces_with_one_line(tmp_path, small_csv):
    path = write_yaml(tmp_path / "search.yaml", search_config(small_csv))
    with pytest.raises(ConfigError, match="is a search space .*builder tune"):
        builder.train(path, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
    for command in ("train", "build"):
        result = CliRunner().invoke(app, [command, str(path)])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, result.output
        assert lines[0].startswith("error: model.hidden.layers is a search space (and 4 more)")
        assert "builder tune" in lines[0]


def test_tune_refuses_a_config_without_spaces(tmp_path, small_csv):
    from builder.tuning import tune

    path = write_yaml(tmp_path / "plain.yaml", config_dict(str(small_csv)))
    with pytest.raises(ConfigError, match="no search space"):
        tune(path, runs_dir=tmp_path / "runs")
    config = search_config(small_csv)
    config["training"]["distribution"] = "multi_worker"
    with pytest.raises(ConfigError, match="must be none or mirrored for builder tune"):
        tune(write_yaml(tmp_path / "mw.yaml", config), runs_dir=tmp_path / "runs")


def test_bayesian_without_its_extra_is_one_clear_line(tmp_path, small_csv, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec

    def without_sklearn(name, *args):  # as in an install without the `bayesian` extra
        return None if name == "sklearn" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_sklearn)
    path = write_yaml(tmp_path / "b.yaml", search_config(small_csv, tuner="bayesian"))
    result = CliRunner().invoke(app, ["tune", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    line = result.output.strip()
    assert line.startswith("error: tune.tuner: bayesian needs sklearn, which builder installs")
    assert "pip install -e '.[bayesian]'" in line and "Received: tuner='bayesian'" in line
    assert line.endswith(f"({path}, line {_line_of(path, 'tuner:')})")
    assert "\n" not in line and not (tmp_path / "runs").exists()
    monkeypatch.undo()  # with scikit-learn (the test extra installs it) the same config tunes
    from builder.search import require_tunable

    require_tunable(load_config(path))


def _line_of(path, text):
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_changed_search_space_gets_another_tuner_project(small_csv):
    from builder.tuning import config_hash

    first = validate_config(search_config(small_csv))
    more_trials = search_config(small_csv)
    more_trials["tune"]["max_trials"] = 50
    wider = search_config(small_csv)
    wider["model"]["hidden"]["units"]["max"] = 32
    digest = config_hash(first, "abc")
    assert config_hash(validate_config(more_trials), "abc") == digest  # more trials: same project
    assert config_hash(validate_config(wider), "abc") != digest
    assert config_hash(first, "another data file") != digest


@pytest.mark.slow
def test_random_search_end_to_end_and_best_yaml_reproduces(tmp_path, small_csv):
    from builder.tuning import tune

    path = write_yaml(tmp_path / "search.yaml", search_config(small_csv, trials=4))
    events = []
    result = tune(path, runs_dir=tmp_path / "runs", progress=events.append)

    # The run directory: project keyed by the config hash, results, best.yaml, manifest.
    manifest = yaml.safe_load((result.path / "manifest.json").read_text())
    assert manifest["kind"] == "tune" and manifest["status"] == "complete"
    assert result.project == result.path / "tuner" / manifest["config_hash"]
    assert (result.project / "oracle.json").exists()
    assert [e.kind for e in events].count("trial_end") == 4
    assert [e.number for e in events if e.kind == "trial_end"] == [1, 2, 3, 4]

    # Results: only the hyperparameters each trial used.
    table = pd.read_csv(result.path / "results.csv", dtype={"trial": str}).set_index("trial")
    assert len(table) == 4 and (table["status"] == "COMPLETED").all()
    assert any(row["model.hidden.layers"] < 2 for row in result.rows)  # some shallower trial
    for row in result.rows:
        layers = row["model.hidden.layers"]
        for index in (1, 2):
            for key in ("units", "activation"):
                name = f"model.hidden.layer_{index}.{key}"
                assert (name in row) == (index <= layers), (row, name)
                if name in table:
                    assert pd.isna(table.loc[row["trial"], name]) == (index > layers)
    assert "tuner/epochs" not in result.columns

    # best.yaml: a plain config that builder train accepts and that reproduces the score.
    best = load_config(result.best_config)
    assert spaces(best) == [] and best.tune is None
    assert best.data_path().is_absolute()
    run = builder.train(result.best_config, runs_dir=tmp_path / "runs")
    score = result.best["val_loss"]
    assert run.history["val_loss"].min() == pytest.approx(score, rel=REPRODUCE_REL)
    assert score == min(r["val_loss"] for r in result.rows)


@pytest.mark.slow
@pytest.mark.parametrize("tuner", ["hyperband", "bayesian"])
def test_other_tuners_run_and_reproduce(tmp_path, small_csv, tuner):
    from builder.tuning import tune

    config = search_config(small_csv, tuner=tuner, trials=3, epochs=3)
    result = tune(write_yaml(tmp_path / "s.yaml", config), runs_dir=tmp_path / "runs")
    assert len(result.rows) == 3
    best = load_config(result.best_config)
    assert best.training.epochs == result.best["epochs"]  # Hyperband: the round's epochs
    run = builder.train(best, runs_dir=tmp_path / "runs")
    assert run.history["val_loss"].min() == pytest.approx(
        result.best["val_loss"], rel=REPRODUCE_REL
    )


@pytest.mark.slow
def test_tune_command_prints_results_and_best_config(tmp_path, small_csv):
    config = search_config(small_csv, trials=2, epochs=2)
    path = write_yaml(tmp_path / "search.yaml", config)
    result = CliRunner().invoke(
        app, ["tune", str(path), "--runs-dir", str(tmp_path / "runs"), "--max-trials", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "best 2 of 2 trials (val_loss)" in result.output
    assert "best config: " in result.output and "best.yaml" in result.output
    (best,) = (tmp_path / "runs").glob("*/*/best.yaml")
    assert spaces(load_config(best)) == []


def test_hypermodel_builds_a_compiled_model_for_keras_tuner(small_csv):
    import keras_tuner as kt

    from builder import training
    from builder.tuning import ConfigHyperModel

    config = validate_config(search_config(small_csv))
    splits = training.load_data(config, config.data_path())
    hypermodel = ConfigHyperModel(config, splits)
    hp = kt.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    names = [param.name for param in hp.space]
    assert names[:2] == ["training.optimizer.learning_rate", "training.batch_size"]
    assert "model.hidden.layer_2.units" in names  # declared, inactive at the default depth
    hp.values["model.hidden.layers"] = 2
    hp.ensure_active_values()  # defaults for the layers that became active
    model = hypermodel.build(hp)
    assert model.optimizer is not None  # compiled
    dense = [layer.name for layer in model.layers if type(layer).__name__ == "Dense"]
    assert dense == ["hidden_1", "hidden_2", "output"]
