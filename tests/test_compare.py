"""builder compare: exactly the config keys that differ, metrics side by side, the data."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from builder.cli import app

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def copy_run(run_path, folder, edit=None, manifest_edit=None):
    """A copy of a run directory with its config.yaml (and manifest) edited."""
    shutil.copytree(run_path, folder)
    if edit:
        config = yaml.safe_load((folder / "config.yaml").read_text())
        edit(config)
        (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if manifest_edit:
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest_edit(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def runs(trained_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")

    def two_keys(config):
        config["training"]["batch_size"] = 64
        config["training"]["optimizer"]["learning_rate"] = 0.5

    def hidden(config):
        config["model"]["layers"] = [{"type": "dense", "units": 4, "activation": "relu"}]

    def other_data(manifest):
        manifest["data"]["sha256"] = "f" * 64

    return {
        "a": trained_run.path,
        "b": copy_run(trained_run.path, root / "b" / "run", two_keys),
        "c": copy_run(trained_run.path, root / "c" / "run", hidden),
        "other": copy_run(trained_run.path, root / "other" / "run", None, other_data),
    }


def test_compare_lists_exactly_the_keys_that_differ(runs):
    from builder.compare import compare

    result = compare([runs["a"], runs["b"]])
    assert [row["key"] for row in result["differences"]] == [
        "training.optimizer.learning_rate",
        "training.batch_size",
    ]
    lr = result["differences"][0]["values"]
    assert lr[1] == 0.5 and lr[0] != 0.5
    assert result["same_data"] and result["same_split"] and result["warnings"] == []


def test_a_key_in_one_run_only_is_shown_absent_in_the_others(runs):
    from builder.compare import ABSENT, compare

    result = compare([runs["a"], runs["c"]])
    keys = [row["key"] for row in result["differences"]]
    assert keys and all(key.startswith("model.layers[0].") for key in keys)
    assert "model.layers[0].units" in keys
    for row in result["differences"]:
        assert row["values"][0] == ABSENT and row["values"][1] != ABSENT


def test_same_runs_differ_in_nothing(runs):
    from builder.compare import compare

    assert compare([runs["a"], runs["other"]])["differences"] == []


def test_other_data_is_said_loudly(runs):
    result = invoke("compare", runs["a"], runs["other"])
    assert result.exit_code == 0, result.output
    assert "warning: the runs were not trained on the same data" in result.output
    assert "data: NOT THE SAME" in result.output
    same = invoke("compare", runs["a"], runs["b"])
    assert "warning" not in same.output
    assert "data: the same file (SHA-256" in same.output


def test_compare_command_json_metrics_and_plot(runs, trained_run, tmp_path):
    plot = tmp_path / "curves.png"
    result = invoke("compare", runs["a"], runs["b"], runs["c"], "--json", "--plot", plot)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data["runs"]) == 3
    first = data["runs"][0]
    assert first["test"]["mse"] == trained_run.metrics["test"]["mse"]
    lsq = trained_run.metrics["baselines"]["least_squares"]["mse"]
    assert first["baseline"]["ratio"] == pytest.approx(trained_run.metrics["test"]["mse"] / lsq)
    assert plot.read_bytes().startswith(PNG) and data["plot"] == str(plot)
    text = invoke("compare", runs["a"], runs["b"])
    assert "x least squares mse" in text.output
    assert "training.batch_size" in text.output


def test_a_tune_run_compares_by_its_best_trial(runs, tmp_path):
    from builder.compare import compare

    tune = tmp_path / "salary_tune" / "run"
    tune.mkdir(parents=True)
    config = yaml.safe_load((runs["a"] / "config.yaml").read_text())
    config["training"]["batch_size"] = 128
    (tune / "best.yaml").write_text(yaml.safe_dump(config))
    manifest = json.loads((runs["a"] / "manifest.json").read_text())
    manifest.update(kind="tune", objective="val_loss", best={"trial": "07", "score": 1.25})
    (tune / "manifest.json").write_text(json.dumps(manifest))
    result = compare([runs["a"], tune])
    assert [row["key"] for row in result["differences"]] == ["training.batch_size"]
    assert result["runs"][1]["best"] == {"trial": "07", "objective": "val_loss", "score": 1.25}
    text = invoke("compare", runs["a"], tune)
    assert "tune: best trial 07, val_loss 1.25" in text.output


def test_compare_needs_two_run_directories(runs, tmp_path):
    one = invoke("compare", runs["a"])
    assert one.exit_code == 2
    assert "error: compare needs two or more run directories. Received: 1" in one.output
    missing = invoke("compare", runs["a"], tmp_path / "nope")
    assert missing.exit_code == 2 and missing.output.startswith("error: compare takes run")
