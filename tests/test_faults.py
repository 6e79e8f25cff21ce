"""Faults: killed and interrupted trainings resume; files appear whole; bad model files refused."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import builder
from builder.cli import app
from builder.errors import RunError
from builder.runs import atomic_write, create_run_dir, load_run
from tests.conftest import config_dict, make_linear_frame, write_yaml

runner = CliRunner()
# Small batches and one step per execution make epochs slow enough to stop mid-run.
SLOW = {"epochs": 24, "batch_size": 16, "steps_per_execution": 1, "early_stopping": None}


@pytest.fixture(scope="module")
def slow_config(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    csv = folder / "data.csv"
    make_linear_frame(rows=2500, seed=1).to_csv(csv, index=False)
    return write_yaml(folder / "slow.yaml", config_dict(str(csv), **SLOW))


def _sigint_default() -> None:
    # A command a non-interactive shell starts in the background (`.ci/run &`) inherits SIGINT
    # ignored, and Python then keeps ignoring it; the child gets the terminal's default back.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, "-m", "builder", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_sigint_default,
        **kwargs,
    )


def _wait_for_epoch(runs_dir: Path, epoch: int, proc, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for state in runs_dir.glob("*/*/checkpoint/state.json"):
            try:
                if json.loads(state.read_text())["epoch"] >= epoch:
                    return state.parent.parent
            except (json.JSONDecodeError, OSError):
                pass  # never happens with atomic writes; tolerated while polling
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("training did not reach the epoch in time")


def test_sigkill_at_a_random_epoch_then_resume(slow_config, tmp_path):
    reference = builder.train(slow_config, runs_dir=tmp_path / "reference")
    kill_at = random.Random().randint(2, 10)
    runs_dir = tmp_path / "runs"
    proc = _start(["train", slow_config, "--runs-dir", runs_dir])
    run_dir = _wait_for_epoch(runs_dir, kill_at, proc)
    proc.kill()
    proc.wait()
    # The killed run is marked incomplete, and nothing in it is half-written.
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "running"
    assert not (run_dir / "model.keras").exists()
    assert not list(run_dir.glob(".*"))  # no temporary files left behind... or only whole ones
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


def test_ctrl_c_saves_and_says_how_to_resume(slow_config, tmp_path):
    runs_dir = tmp_path / "runs"
    proc = _start(["train", slow_config, "--runs-dir", runs_dir])
    run_dir = _wait_for_epoch(runs_dir, 2, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert f"builder train --resume {run_dir}" in stderr
    assert "Traceback" not in stderr
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
    assert (run_dir / "checkpoint" / "state.json").exists()
    result = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 2 and "already complete" in result.output


def test_resume_refuses_a_changed_data_file(tmp_path):
    csv = tmp_path / "d.csv"
    make_linear_frame(rows=300).to_csv(csv, index=False)
    config = write_yaml(tmp_path / "c.yaml", config_dict(str(csv), epochs=2))
    run = builder.train(config, runs_dir=tmp_path / "runs")
    manifest = json.loads((run.path / "manifest.json").read_text())
    manifest["status"] = "interrupted"
    (run.path / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["train", "--resume", str(run.path)])
    assert result.exit_code == 2 and "no checkpoint" in result.output


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

    with pytest.raises(OSError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_unwritable_runs_dir_is_reported_before_training(linear_config, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    start = time.perf_counter()
    result = runner.invoke(app, ["train", str(linear_config), "--runs-dir", str(blocker / "runs")])
    assert result.exit_code == 2
    assert "runs directory" in result.output and "must be writable" in result.output
    assert time.perf_counter() - start < 20  # no training happened


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
    # The file is a real threat: loading it unsafely does run its code.
    code = (
        "import keras; keras.config.enable_unsafe_deserialization(); "
        f"keras.saving.load_model({str(model)!r}, safe_mode=False)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert marker.exists()


def test_load_run_error_types(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        load_run(tmp_path / "nope")
    np.save(tmp_path / "x.npy", np.zeros(2))
