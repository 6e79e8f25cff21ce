"""Faults: killed and interrupted trainings resume; files appear whole; bad model files refused."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import builder
from builder.cli import app
from builder.errors import DataError, Interrupted, RunError
from builder.runs import atomic_write, create_run_dir, load_run
from tests.conftest import (
    PROCESS_TIMEOUT,
    TARGET,
    config_dict,
    default_signals,
    make_linear_frame,
    write_yaml,
)

runner = CliRunner()
# Small batches and one step per execution make epochs slow enough to stop mid-run. 16 epochs:
# a checkpoint is written at most once a second (training.CHECKPOINT_SECONDS), so even at 0.1 s
# an epoch the first is at epoch 10 and the signal still comes 6 epochs before the end.
SLOW = {"epochs": 16, "batch_size": 16, "steps_per_execution": 1, "early_stopping": None}


@pytest.fixture(scope="module")
def slow_config(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    csv = folder / "data.csv"
    make_linear_frame(rows=2500, seed=1).to_csv(csv, index=False)
    return write_yaml(folder / "slow.yaml", config_dict(str(csv), **SLOW))


@pytest.fixture
def start():
    """Start ``python -m builder ARGS`` in the background; whatever still runs at the end of the
    test (a failed assertion, a timeout) is killed, so no training outlives its test."""
    started: list[subprocess.Popen] = []

    def run(args) -> subprocess.Popen:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "builder", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=default_signals,
        )
        started.append(proc)
        return proc

    yield run
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=PROCESS_TIMEOUT)


def _wait_for_epoch(runs_dir: Path, epoch: int, proc, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for state in runs_dir.glob("*/*/checkpoint/state.json"):
            try:
                text = state.read_text()
            except FileNotFoundError:
                continue  # globbed, then replaced: the next poll reads the new file
            # state.json is replaced whole (runs.atomic_write): a torn read is the bug guarded.
            try:
                if json.loads(text)["epoch"] >= epoch:
                    return state.parent.parent
            except json.JSONDecodeError as err:
                raise AssertionError(f"{state} was read half-written: {text!r}") from err
        assert proc.poll() is None, proc.communicate(timeout=PROCESS_TIMEOUT)
        time.sleep(0.02)
    raise AssertionError("training did not reach the epoch in time")


# The epoch to kill at. Fixed, so that a failure reruns alike; where in the epoch the kill lands
# (and so which checkpoint is the last) still varies with the machine's speed.
KILL_AT = 5


@pytest.mark.slow
def test_sigkill_mid_training_then_resume(slow_config, tmp_path, start):
    reference = builder.train(slow_config, runs_dir=tmp_path / "reference")
    kill_at = KILL_AT
    runs_dir = tmp_path / "runs"
    proc = start(["train", slow_config, "--runs-dir", runs_dir])
    run_dir = _wait_for_epoch(runs_dir, kill_at, proc)
    proc.kill()
    proc.wait(timeout=PROCESS_TIMEOUT)
    # The killed run is marked incomplete, and nothing in it is half-written.
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "running"
    assert not (run_dir / "model.keras").exists()
    # No temporary file is left; the dead process's lock file stays, and locks nothing (the
    # resume below takes it: builder.locks).
    assert [p.name for p in run_dir.glob(".*")] == [".lock"]
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    assert state["epoch"] >= kill_at and len(state["history"]) == state["epoch"]

    result = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    resumed = load_run(run_dir)
    assert resumed.manifest["status"] == "complete"
    assert resumed.manifest["resumed_from_epoch"] == state["epoch"]
    assert len(resumed.history) == SLOW["epochs"]
    assert list(resumed.history["epoch"]) == list(range(1, SLOW["epochs"] + 1))
    mse, ref = resumed.metrics["test"]["mse"], reference.metrics["test"]["mse"]
    assert abs(mse - ref) / ref < 0.01, (mse, ref, kill_at)
    assert not (run_dir / "checkpoint").exists()


@pytest.mark.slow
def test_ctrl_c_saves_and_says_how_to_resume(slow_config, tmp_path, start):
    runs_dir = tmp_path / "runs"
    proc = start(["train", slow_config, "--runs-dir", runs_dir])
    run_dir = _wait_for_epoch(runs_dir, 2, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=PROCESS_TIMEOUT)
    assert proc.returncode == 130, stderr
    assert f"builder train --resume {run_dir}" in stderr
    assert "Traceback" not in stderr
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
    assert (run_dir / "checkpoint" / "state.json").exists()
    result = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 2 and "already complete" in result.output


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    csv = tmp_path / "d.csv"
    make_linear_frame(rows=300).to_csv(csv, index=False)
    config = write_yaml(tmp_path / "c.yaml", config_dict(str(csv), epochs=2))
    run = builder.train(config, runs_dir=tmp_path / "runs")
    manifest = json.loads((run.path / "manifest.json").read_text())
    manifest["status"] = "interrupted"
    (run.path / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["train", "--resume", str(run.path)])
    assert result.exit_code == 2 and "no checkpoint" in result.output


def _interrupted_run(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """``(run_dir, csv)``: a run stopped by Ctrl-C after epoch 2 of 4, with its checkpoint."""
    from builder import training

    csv = tmp_path / "d.csv"
    make_linear_frame(rows=300, seed=2).to_csv(csv, index=False)
    config = write_yaml(tmp_path / "c.yaml", config_dict(str(csv), epochs=4, early_stopping=None))
    monkeypatch.setattr(training, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every epoch

    def ctrl_c(epoch, epochs, logs):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        builder.train(config, runs_dir=tmp_path / "runs", progress=ctrl_c)
    (run_dir,) = (tmp_path / "runs" / "linear_test").iterdir()
    assert json.loads((run_dir / "checkpoint" / "state.json").read_text())["epoch"] == 2
    return run_dir, csv


def _change_one_value(csv: Path) -> None:
    """Rewrite the CSV with one target value changed: same columns, same rows, other data."""
    frame = pd.read_csv(csv)
    frame.loc[len(frame) // 2, TARGET] += 1.0
    frame.to_csv(csv, index=False)


def test_resume_refuses_a_changed_data_file(tmp_path, monkeypatch):
    run_dir, csv = _interrupted_run(tmp_path, monkeypatch)
    original = csv.read_bytes()
    _change_one_value(csv)
    assert csv.read_bytes() != original
    result = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 2, result.output
    assert f"{csv} has changed since the run started" in result.output
    assert "resuming would mix two datasets" in result.output
    # Refused before anything was touched: the run is still interrupted, its checkpoint kept.
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
    assert (run_dir / "checkpoint" / "state.json").exists()
    # The same run with its own data back resumes: the refusal was the changed file's.
    csv.write_bytes(original)
    result = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert load_run(run_dir).manifest["resumed_from_epoch"] == 2


def test_holdout_predictions_refuse_a_changed_data_file(tmp_path):
    """``plot`` re-reads the run's test split: a changed file would plot other rows."""
    from builder.predict import holdout_predictions

    csv = tmp_path / "d.csv"
    make_linear_frame(rows=300, seed=3).to_csv(csv, index=False)
    config = write_yaml(tmp_path / "c.yaml", config_dict(str(csv), epochs=1))
    run = builder.train(config, runs_dir=tmp_path / "runs")
    y_true, _ = holdout_predictions(load_run(run.path))  # the unchanged file is accepted
    assert len(y_true) == run.manifest["data"]["rows"]["test"]
    _change_one_value(csv)
    with pytest.raises(DataError, match="has changed since the run was trained"):
        holdout_predictions(load_run(run.path))
    result = runner.invoke(app, ["plot", str(run.path), "--output-dir", str(tmp_path / "plots")])
    assert result.exit_code == 2, result.output
    assert f"{csv} has changed since the run was trained" in result.output
    assert not (tmp_path / "plots" / "predictions.png").exists()


def _make_run_dir(args):
    runs_dir, name = args
    return str(create_run_dir(runs_dir, name))


def test_simultaneous_runs_get_distinct_directories(tmp_path):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        made = pool.map(_make_run_dir, [(str(tmp_path), "same")] * 16)
    assert len(set(made)) == 16
    assert all(Path(p).is_dir() for p in made)


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(RunError, match=r"metrics\.json could not be written\. Received: disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_unwritable_runs_dir_is_reported_before_training(linear_config, tmp_path, monkeypatch):
    from builder import training

    def no_training(*args, **kwargs):
        raise AssertionError("training started before the runs directory was checked")

    monkeypatch.setattr(training, "fit", no_training)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = runner.invoke(app, ["train", str(linear_config), "--runs-dir", str(blocker / "runs")])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    assert "runs directory" in result.output and "must be writable" in result.output


def test_unwritable_predict_output(trained_run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    csv = tmp_path / "new.csv"
    make_linear_frame(rows=5).to_csv(csv, index=False)
    result = runner.invoke(
        app, ["predict", str(trained_run.path), "--data", str(csv), "-o", str(blocker / "p.csv")]
    )
    assert result.exit_code == 2 and "--output" in result.output


# ----------------------------------------------------------------------------- bad model files


def _inspect(path) -> str:
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1
    return result.output


def test_file_that_is_not_a_model(tmp_path):
    fake = tmp_path / "model.keras"
    fake.write_text("hello")
    assert "could not be loaded as a Keras model" in _inspect(fake)


def test_wrong_suffix(tmp_path):
    other = tmp_path / "model.h5"
    other.write_text("x")
    assert "must be a .keras file" in _inspect(other)


def test_truncated_model_file(trained_run, tmp_path):
    data = (trained_run.path / "model.keras").read_bytes()
    cut = tmp_path / "model.keras"
    cut.write_bytes(data[: len(data) // 2])
    assert "could not be loaded as a Keras model" in _inspect(cut)


@pytest.mark.parametrize("missing", ["config.yaml", "model.keras"])
def test_run_directory_missing_files(trained_run, tmp_path, missing):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(trained_run.path, copy)
    (copy / missing).unlink()
    assert f"must contain {missing}" in _inspect(copy)
    for command in ("predict", "evaluate"):
        result = runner.invoke(app, [command, str(copy), "--data", str(copy / "x.csv")])
        assert result.exit_code == 2


def _lambda_model(path: Path, marker: Path) -> None:
    """A .keras file whose Lambda layer writes ``marker`` whenever its code runs."""
    import keras

    # A lambda, not a def: Keras stores a lambda's bytecode in the file (a def only by name).
    # The path is a constant in the code (Keras cannot restore a lambda's default arguments).
    touch = eval(f"lambda x: (open({str(marker)!r}, 'a').close(), x)[1]")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(touch), keras.layers.Dense(1)])
    model.save(path)


@pytest.mark.slow
def test_serialized_code_is_refused_never_run(tmp_path):
    marker = tmp_path / "ran"
    model = tmp_path / "evil.keras"
    _lambda_model(model, marker)
    marker.unlink(missing_ok=True)
    with zipfile.ZipFile(model) as archive:
        assert "Lambda" in archive.read("config.json").decode()
    message = _inspect(model)
    assert "could not be loaded" in message
    assert not marker.exists()
    # The file is a real threat: loading it unsafely does run its code. Here, not in another
    # process: safe_mode=False holds for this one load only (Keras's SafeModeScope), and the
    # code only touches the marker.
    import keras

    keras.saving.load_model(model, safe_mode=False)
    assert marker.exists()
    assert "could not be loaded" in _inspect(model)  # and this process is safe again


def test_load_run_error_types(trained_run, tmp_path):
    import shutil

    with pytest.raises(RunError, match="does not exist"):
        load_run(tmp_path / "nope")
    np.save(tmp_path / "x.npy", np.zeros(2))
    with pytest.raises(RunError, match=r"x\.npy must be a \.keras file"):
        load_run(tmp_path / "x.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="must contain config.yaml"):
        load_run(tmp_path / "empty")
    broken = {
        "config.yaml": ("name: [", "config.yaml is not a valid builder config"),
        "metrics.json": ("{", "metrics.json must be valid JSON"),
        "manifest.json": ("{", "manifest.json must be valid JSON"),
    }
    for name, (text, message) in broken.items():
        copy = shutil.copytree(trained_run.path, tmp_path / f"broken {name}")
        (copy / name).write_text(text)
        with pytest.raises(RunError, match=message):
            load_run(copy)
