"""Training end to end: run directory, yardsticks, determinism, reload, predict, evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import yaml

import builder
from builder.config import load_config
from builder.data import scoring as metrics_mod
from builder.data import split_rows
from builder.errors import DataError
from builder.inspection import raw_equation
from builder.predict import evaluate, predict, predict_chunks
from builder.runs import FILES, load_run
from tests.conftest import (
    FEATURES,
    PROCESS_TIMEOUT,
    ROOT,
    TARGET,
    TRAIN_CONFIGS,
    TRUE_COEF,
    config_dict,
    make_linear_frame,
    write_yaml,
)


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_trains_briefly(path, tmp_path):
    run = builder.train(path, epochs=2, runs_dir=tmp_path)
    assert sorted(p.name for p in run.path.iterdir()) == sorted(FILES)
    assert len(run.history) == 2
    assert all(np.isfinite(v) for v in run.metrics["test"].values())
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert manifest["status"] == "complete"


def test_run_directory_describes_itself(trained_run, linear_csv):
    path = trained_run.path
    manifest = json.loads((path / "manifest.json").read_text())
    import hashlib

    assert manifest["data"]["sha256"] == hashlib.sha256(linear_csv.read_bytes()).hexdigest()
    assert sum(manifest["data"]["rows"].values()) == 3000
    assert manifest["seed"] == 7 and manifest["versions"]["keras"].startswith("3.")
    resolved = yaml.safe_load((path / "config.yaml").read_text())
    assert resolved["data"]["path"] == str(linear_csv.resolve())
    assert resolved["training"]["optimizer"]["name"] == "adam"  # defaults filled in
    history = pd.read_csv(path / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3] and "val_loss" in history
    assert "Trainable params: 4" in (path / "summary.txt").read_text()
    metrics = json.loads((path / "metrics.json").read_text())
    assert set(metrics["baselines"]) == {"mean_predictor", "least_squares"}


def test_shipped_linear_config_reaches_least_squares(tmp_path):
    run = builder.train(ROOT / "configs" / "salary_linear.yaml", runs_dir=tmp_path)
    lsq = run.metrics["baselines"]["least_squares"]
    assert run.metrics["test"]["mse"] <= 1.01 * lsq["mse"]
    coef, _ = raw_equation(run.model, list(run.config.data.feature_names))
    for name, ref in lsq["coefficients"].items():
        assert coef[name] == pytest.approx(ref, rel=0.01), name


def test_linear_weights_match_numpy_least_squares(tmp_path):
    """The no-hidden-layer model's raw-unit weights against numpy.linalg.lstsq."""
    frame = make_linear_frame(rows=4000, seed=3, noise=2.0)
    csv = tmp_path / "truth.csv"
    frame.to_csv(csv, index=False)
    config = write_yaml(
        tmp_path / "c.yaml",
        config_dict(str(csv), epochs=60, early_stopping=None, batch_size=128),
    )
    run = builder.train(config, runs_dir=tmp_path / "runs")
    rows = split_rows(len(frame), 0.15, 0.15, 42)["train"]
    x = frame[FEATURES].to_numpy()[rows]
    design = np.hstack([x, np.ones((len(x), 1))])
    reference, *_ = np.linalg.lstsq(design, frame[TARGET].to_numpy()[rows], rcond=None)
    coef, intercept = raw_equation(run.model, FEATURES)
    np.testing.assert_allclose([coef[f] for f in FEATURES], reference[:-1], rtol=0.01)
    assert intercept == pytest.approx(reference[-1], rel=0.01)
    np.testing.assert_allclose(reference[:-1], TRUE_COEF, rtol=0.05)  # and the truth is found


def _train_in_subprocess(config, runs_dir):
    code = textwrap.dedent(
        f"""
        import builder, numpy as np
        run = builder.train({str(config)!r}, runs_dir={str(runs_dir)!r})
        np.save({str(runs_dir / "weights.npy")!r},
                np.concatenate([w.ravel() for w in run.model.get_weights()]))
        """
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, timeout=PROCESS_TIMEOUT
    )
    (run_dir,) = (runs_dir / "linear_test").iterdir()
    return np.load(runs_dir / "weights.npy"), json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_same_config_and_seed_is_deterministic_across_processes(
    trained_run, linear_config, tmp_path
):
    # trained_run: the same config (3 epochs, seed 7) trained in this process, which has run
    # other tests before; a fresh process must get the same weights and scores, bit for bit.
    weights, metrics = _train_in_subprocess(linear_config, tmp_path / "a")
    here = np.concatenate([w.ravel() for w in trained_run.model.get_weights()])
    np.testing.assert_array_equal(weights, here)
    assert metrics["test"] == trained_run.metrics["test"]


@pytest.mark.slow
def test_reload_in_fresh_process_predicts_exactly(trained_run, tmp_path, fresh_process):
    x = make_linear_frame(rows=50, seed=9)[FEATURES].to_numpy(np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = trained_run.model.predict(x, verbose=0)
    code = textwrap.dedent(
        f"""
        import numpy as np
        from builder.runs import load_run
        run = load_run({str(trained_run.path)!r})
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "y.npy")!r}, run.model.predict(x, verbose=0))
        """
    )
    result = fresh_process.run(code)
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)


def test_predict_needs_only_features_in_any_order(trained_run, tmp_path):
    frame = make_linear_frame(rows=40, seed=5)
    shuffled = frame[["Big Number", "comment", "x.dot", "Age (years)"]]  # no target, new order
    csv = tmp_path / "new.csv"
    shuffled.to_csv(csv, index=False)
    result = predict(load_run(trained_run.path), csv)
    assert list(result.columns) == [*shuffled.columns, f"predicted_{TARGET}"]
    assert list(result["comment"]) == list(frame["comment"])  # row order kept
    expected = trained_run.model.predict(frame[FEATURES].to_numpy(np.float32), verbose=0)[:, 0]
    np.testing.assert_allclose(result[f"predicted_{TARGET}"], expected, rtol=1e-6)


def test_evaluate_on_another_csv(trained_run, tmp_path):
    csv = tmp_path / "holdout.csv"
    make_linear_frame(rows=200, seed=11).to_csv(csv, index=False)
    result = evaluate(load_run(trained_run.path), csv)
    assert result["rows"] == 200
    assert set(result["metrics"]) == {"mse", "rmse", "mae", "r2"}
    assert all(np.isfinite(v) for v in result["metrics"].values())


def test_predict_and_evaluate_in_chunks_match_the_whole_file(trained_run, tmp_path):
    csv = tmp_path / "new.csv"
    make_linear_frame(rows=40, seed=6).to_csv(csv, index=False)
    run = load_run(trained_run.path)
    chunks = list(predict_chunks(run, csv, chunk_rows=7))
    assert [len(c) for c in chunks] == [7, 7, 7, 7, 7, 5]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), predict(run, csv))
    frame = pd.read_csv(csv)
    y = frame[TARGET].to_numpy(np.float64)
    expected = metrics_mod.regression_metrics(y, predict(run, csv)[f"predicted_{TARGET}"])
    for chunk_rows in (7, 1000):
        result = evaluate(run, csv, chunk_rows=chunk_rows)
        assert result["rows"] == 40 and set(result["metrics"]) == set(expected)
        for name, value in expected.items():
            assert result["metrics"][name] == pytest.approx(value, rel=1e-9), name


def test_predict_refuses_to_overwrite_a_prediction_column(trained_run, tmp_path):
    frame = make_linear_frame(rows=10, seed=3)
    frame[f"predicted_{TARGET}"] = 0.0
    csv = tmp_path / "again.csv"
    frame.to_csv(csv, index=False)
    with pytest.raises(DataError, match=f"already has a column 'predicted_{TARGET}'"):
        predict(load_run(trained_run.path), csv)


def test_predict_output_is_whole_or_absent_when_a_later_chunk_is_bad(trained_run, tmp_path):
    from typer.testing import CliRunner

    from builder.cli import app

    frame = make_linear_frame(rows=140_000, seed=8)  # more than one 131,072-row chunk
    frame[FEATURES[0]] = frame[FEATURES[0]].astype(object)
    frame.loc[135_000, FEATURES[0]] = "n/a?"
    csv = tmp_path / "big.csv"
    frame.to_csv(csv, index=False)
    out = tmp_path / "out" / "pred.csv"
    out.parent.mkdir()
    result = CliRunner().invoke(
        app, ["predict", str(trained_run.path), "--data", str(csv), "--output", str(out)]
    )
    assert result.exit_code == 2
    assert f"column '{FEATURES[0]}' must be numeric. Received: 'n/a?' on line 135002" in (
        result.output
    )
    assert list(out.parent.iterdir()) == []  # no output, no temporary file


def test_overrides_apply(linear_config, tmp_path):
    config = load_config(linear_config)
    run = builder.train(config, epochs=1, seed=3, runs_dir=tmp_path)
    assert len(run.history) == 1 and run.config.training.seed == 3
