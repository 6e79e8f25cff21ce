"""The part of the suite that runs on every Keras backend, in a process of its own.

Not collected by the default run (its name does not start with ``test_``): tests/test_backends.py
runs it with ``KERAS_BACKEND`` set to each backend other than the suite's own, together with the
Threshold and CategoryColumns layer tests. ``BUILDER_SUBSET_OUT`` names a folder where it leaves
a run trained here, and ``BUILDER_SUBSET_FOREIGN`` a run trained on another backend with its
predictions, for the cross-backend checks.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import builder
import builder.predict
from builder import training
from builder.errors import ConfigError, Interrupted
from tests.conftest import LINEAR_CONFIG, TRAIN_CONFIGS, TUNE_CONFIGS, config_dict, write_yaml

BACKEND = keras.backend.backend()
OUT = Path(os.environ.get("BUILDER_SUBSET_OUT") or tempfile.mkdtemp(prefix="backend_subset_"))


def test_the_backend_is_the_one_asked_for():
    assert BACKEND == os.environ["KERAS_BACKEND"] != "tensorflow"


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_trains_briefly(path, tmp_path):
    run = builder.train(path, epochs=1, runs_dir=tmp_path)
    assert run.manifest["backend"] == BACKEND
    assert run.config.backend == BACKEND
    assert all(math.isfinite(v) for v in run.metrics["test"].values() if not isinstance(v, dict))


@pytest.mark.parametrize("path", TUNE_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_tune_config_runs_a_trial(path, tmp_path):
    from builder.tuning import tune

    config = training.with_overrides(builder.load_config(path), epochs=1)
    result = tune(config, runs_dir=tmp_path, max_trials=1)
    assert len(result.rows) == 1


def test_builder_train_backend_reaches_least_squares(monkeypatch):
    # The command line, in this process, so that sys.modules below has all it imported.
    from typer.testing import CliRunner

    from builder.cli import app

    monkeypatch.delenv("KERAS_BACKEND")  # the flag alone chooses
    runs_dir = OUT / "runs"
    result = CliRunner().invoke(
        app, ["train", str(LINEAR_CONFIG), "--backend", BACKEND, "--runs-dir", str(runs_dir)]
    )
    assert result.exit_code == 0, result.output
    (path,) = runs_dir.glob("*/*")
    run = builder.load_run(path)
    assert run.manifest["backend"] == BACKEND
    mse = run.metrics["test"]["mse"]
    exact = run.metrics["baselines"]["least_squares"]["mse"]
    assert abs(mse - exact) / exact < 0.01, (mse, exact)
    # Kept, with its predictions, for tests/test_backends.py to load on the other backends.
    builder.predict.predict(run, run.config.data_path()).to_csv(
        path / "predictions.csv", index=False
    )
    (OUT / "run.txt").write_text(str(path))


def test_runs_trained_on_the_other_backends_predict_the_same_here():
    foreign = [Path(p) for p in os.environ.get("BUILDER_SUBSET_FOREIGN", "").split(os.pathsep)]
    assert foreign and all(p.is_dir() for p in foreign), foreign
    for path in foreign:
        run = builder.load_run(path)
        assert run.manifest["backend"] != BACKEND
        expected = pd.read_csv(path / "predictions.csv")
        got = builder.predict.predict(run, run.config.data_path())
        column = builder.predict.prediction_column(run)
        np.testing.assert_allclose(got[column], expected[column], rtol=1e-5)


def test_inspect_and_explain_read_the_model_here():
    from builder.explain import explain
    from builder.inspection import inspect_run

    run = builder.load_run((OUT / "run.txt").read_text())
    assert "equation" in inspect_run(run)  # the linear model's learned equation
    trace = explain(run, run.config.data_path(), 3)
    predicted = builder.predict.predict(run, run.config.data_path())
    column = builder.predict.prediction_column(run)
    assert trace["prediction"] == pytest.approx(float(predicted[column][3]), rel=1e-5)


def test_steps_per_execution_on_this_backend(tmp_path):
    raw = config_dict(str(tmp_path / "unused.csv"), epochs=1, steps_per_execution=8)
    config = training.with_backend(builder.load_config(write_yaml(tmp_path / "c.yaml", raw)))
    # Keras's PyTorch trainer runs one step per call; the others take the config's.
    assert config.training.steps_per_execution == (1 if BACKEND == "torch" else 8)


def test_a_streamed_run_trains(tmp_path):
    from tests.conftest import make_linear_frame

    csv = tmp_path / "data.csv"
    make_linear_frame(rows=1200).to_csv(csv, index=False)
    raw = config_dict(str(csv), epochs=3)
    raw["data"]["streaming"] = True
    run = builder.train(write_yaml(tmp_path / "c.yaml", raw), runs_dir=tmp_path / "runs")
    assert run.manifest["data"]["streaming"] is True
    assert run.metrics["epochs_run"] == 3


def test_an_interrupted_run_resumes(tmp_path, monkeypatch):
    from tests.conftest import make_linear_frame

    csv = tmp_path / "data.csv"
    make_linear_frame(rows=800).to_csv(csv, index=False)
    config = write_yaml(tmp_path / "c.yaml", config_dict(str(csv), epochs=6))
    monkeypatch.setattr(training, "CHECKPOINT_SECONDS", 0.0)

    def stop_at_three(epoch, epochs, logs):
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        builder.train(config, runs_dir=tmp_path / "runs", progress=stop_at_three)
    (run_dir,) = (tmp_path / "runs").glob("*/*")
    resumed = training.resume(run_dir)
    assert resumed.manifest["resumed_from_epoch"] == 3
    assert list(resumed.history["epoch"]) == [1, 2, 3, 4, 5, 6]


def test_distribution_runs_or_is_refused_in_one_line(tmp_path):
    from tests.conftest import make_linear_frame

    csv = tmp_path / "data.csv"
    make_linear_frame(rows=800).to_csv(csv, index=False)
    raw = config_dict(str(csv), epochs=2)
    raw["training"]["distribution"] = "mirrored"
    config = write_yaml(tmp_path / "c.yaml", raw)
    if BACKEND == "jax":
        # tests/test_backends.py gives this process two host devices (XLA_FLAGS).
        import jax

        assert len(jax.devices()) == 2
        run = builder.train(config, runs_dir=tmp_path / "runs")
        assert run.manifest["distribution"]["strategy"] == "mirrored"
        assert math.isfinite(run.metrics["test"]["mse"])
    else:
        with pytest.raises(ConfigError, match="runs on the tensorflow and jax backends only"):
            builder.train(config, runs_dir=tmp_path / "runs")
    raw["training"]["distribution"] = "multi_worker"
    write_yaml(config, raw)
    with pytest.raises(ConfigError, match="multi_worker runs on the tensorflow backend only"):
        builder.train(config, runs_dir=tmp_path / "runs")


def test_asking_for_another_backend_now_is_one_line():
    with pytest.raises(ConfigError, match="already imported with " + BACKEND):
        builder.train(LINEAR_CONFIG, backend="tensorflow")


@pytest.mark.skipif(BACKEND != "jax", reason="JAX's compilation cache")
def test_jax_compilations_are_kept_and_loaded_by_the_next_model(tmp_path):
    import jax

    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    cache = Path(os.environ["JAX_COMPILATION_CACHE_DIR"])  # set by tests/test_backends.py
    builder.train(LINEAR_CONFIG, epochs=1, runs_dir=tmp_path)
    kept = set(cache.glob("*-cache"))
    assert any(p.name.startswith("jit_train_step-") for p in kept), sorted(kept)
    # A second model with the same shapes finds every program it needs there.
    builder.train(LINEAR_CONFIG, epochs=1, runs_dir=tmp_path)
    assert set(cache.glob("*-cache")) == kept


def test_zz_tensorflow_was_never_imported():
    # Last in the file (pytest runs a file's tests in order): nothing above imported it.
    assert "tensorflow" not in sys.modules
    (OUT / "modules.json").write_text(json.dumps(sorted(m for m in sys.modules if "." not in m)))
