"""What the command line and the Python API show a first-time user (issue 10's frictions).

The status line while TensorFlow loads, early stopping reported, output readable in a pipe,
predictions at float32 precision, tune runs in ``builder runs`` and a quiet Python API.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from builder import cli
from builder.config import validate_config
from builder.runs import Run, early_stopping, list_runs
from tests.conftest import (
    PROCESS_TIMEOUT,
    ROOT,
    TARGET,
    config_dict,
    make_linear_frame,
    run_python,
    write_yaml,
)

runner = CliRunner()

# TensorFlow's C++ log lines ("I0000 00:00:17... port.cc:153] oneDNN custom operations ...")
# and absl's "WARNING: All log messages before absl::InitializeLog() is called ...".
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} |absl::|oneDNN|cpu_feature_guard", re.MULTILINE)


def invoke(*args, env=None):
    return runner.invoke(cli.app, [str(a) for a in args], env=env)


def rendered(*objects, width: int = cli.PIPE_WIDTH) -> list[str]:
    """The lines rich writes for ``objects`` to a pipe (the CLI's console there)."""
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=width, soft_wrap=True).print(*objects)
    return buffer.getvalue().splitlines()


def quiet_env() -> dict[str, str]:
    """The environment without the variables that quiet TensorFlow (conftest sets them)."""
    drop = ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")
    return {k: v for k, v in os.environ.items() if k not in drop}


# --------------------------------------------------------------------------------------------
# 1. A status line while the backend loads
# --------------------------------------------------------------------------------------------


@pytest.fixture
def fake_backend(tmp_path, monkeypatch):
    """A module that writes a line to stderr when imported, standing in for TensorFlow."""
    name = "fake_backend_for_test_output"
    (tmp_path / f"{name}.py").write_text("import sys\nsys.stderr.write('imported\\n')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_loading_line_comes_before_the_backend_import(fake_backend, capsys):
    import importlib

    with cli._announce_backend((fake_backend,)):
        importlib.import_module(fake_backend)
        importlib.import_module(fake_backend)  # imported once, said once
    assert capsys.readouterr().err == f"{cli.LOADING}\nimported\n"
    assert not any(isinstance(f, cli._AnnounceImport) for f in sys.meta_path)
    module = sys.modules[fake_backend]
    assert type(module.__loader__).__name__ == "SourceFileLoader"  # the wrapper is gone


def test_no_loading_line_without_an_import_or_when_already_loaded(fake_backend, capsys):
    import importlib

    with cli._announce_backend((fake_backend,)):
        pass  # e.g. a missing run directory, reported before TensorFlow is needed
    assert capsys.readouterr().err == ""
    importlib.import_module(fake_backend)
    capsys.readouterr()
    with cli._announce_backend((fake_backend,)):
        importlib.import_module(fake_backend)
    assert capsys.readouterr().err == ""
    assert not any(isinstance(f, cli._AnnounceImport) for f in sys.meta_path)


@pytest.mark.slow
def test_build_says_loading_tensorflow_in_a_pipe_and_nothing_else():
    config = ROOT / "configs" / "salary_linear.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "builder", "build", str(config)],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        env=quiet_env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"{cli.LOADING}\n"
    assert "Trainable params: 5" in result.stdout


def test_a_missing_run_is_reported_without_loading_tensorflow():
    result = subprocess.run(
        [sys.executable, "-m", "builder", "inspect", "no/such/run"],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
    )
    assert result.returncode == 2
    assert result.stderr == "error: run no/such/run does not exist.\n"


# --------------------------------------------------------------------------------------------
# 2. Early stopping reported
# --------------------------------------------------------------------------------------------


def outcome(**fields):
    base = {"monitor": "val_loss", "patience": 30, "epochs_run": 71}
    return {**base, **fields}


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        (
            {"stopped_epoch": 71, "restored_epoch": 41},
            "early stop at epoch 71 (no val_loss improvement for 30 epochs); "
            "restored weights of epoch 41",
        ),
        (
            {"stopped_epoch": 71, "restored_epoch": None},
            "early stop at epoch 71 (no val_loss improvement for 30 epochs); "
            "kept the last epoch's weights (restore_best_weights is off)",
        ),
        (
            {"stopped_epoch": None, "restored_epoch": 60},
            "restored weights of epoch 60 (lowest val_loss)",
        ),
        ({"stopped_epoch": None, "restored_epoch": 71}, None),  # the last epoch was the best
        ({"stopped_epoch": None, "restored_epoch": None}, None),
    ],
)
def test_stopping_text(fields, line):
    assert cli._stopping_text(outcome(**fields)) == line
    assert cli._stopping_text(None) is None


def history(val_loss: list[float]) -> pd.DataFrame:
    n = len(val_loss)
    return pd.DataFrame(
        {"epoch": np.arange(1, n + 1), "loss": np.linspace(2, 1, n), "val_loss": val_loss}
    )


def run_with(hist: pd.DataFrame | None, metrics: dict | None = None, **stopping) -> Run:
    raw = config_dict(None, epochs=10)
    raw["training"]["early_stopping"] = stopping or None
    return Run(None, validate_config(raw), None, hist, metrics or {})


def test_early_stopping_worked_out_from_the_history():
    # Stopped after 6 of 10 epochs; the lowest val_loss (first of the two 1.0) is epoch 3.
    run = run_with(history([3.0, 2.0, 1.0, 1.5, 1.0, 1.2]), patience=3)
    assert early_stopping(run) == {
        "monitor": "val_loss",
        "patience": 3,
        "epochs_run": 6,
        "stopped_epoch": 6,
        "restored_epoch": 3,
    }
    kept_last = run_with(history([3.0, 2.0, 1.0, 1.5]), patience=1, restore_best_weights=False)
    assert early_stopping(kept_last)["restored_epoch"] is None
    every_epoch = run_with(history([float(10 - i) for i in range(10)]), patience=3)
    assert early_stopping(every_epoch)["stopped_epoch"] is None
    assert early_stopping(every_epoch)["restored_epoch"] == 10
    assert early_stopping(run_with(history([1.0, 2.0]))) is None  # no early stopping configured


def test_early_stopping_prefers_what_training_recorded():
    recorded = {"monitor": "val_loss", "patience": 3, "stopped_epoch": 6, "restored_epoch": 2}
    run = run_with(
        history([3.0, 2.0, 1.0, 1.5, 1.0, 1.2]), {"early_stopping": recorded}, patience=3
    )
    assert early_stopping(run) == {**recorded, "epochs_run": 6}


@pytest.mark.slow
def test_train_reports_the_early_stop_and_prints_whole_lines_in_a_pipe(linear_csv, tmp_path):
    raw = config_dict(str(linear_csv), epochs=6)
    # No epoch improves val_loss by 1e12: stopped after the second, the first one restored.
    raw["training"]["early_stopping"] = {"patience": 1, "min_delta": 1e12}
    config = write_yaml(tmp_path / "stop.yaml", raw)
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert (
        "early stop at epoch 2 (no val_loss improvement for 1 epoch); restored weights of epoch 1"
        in result.stdout
    )
    # The progress in a pipe: whole plain lines (rich cut them at 80 columns: "val_mae 7…").
    progress = [line for line in result.stderr.splitlines() if "epoch 2/6" in line]
    assert len(progress) == 1 and progress[0].startswith("training linear_test: epoch 2/6  ")
    assert "val_mae" in progress[0] and len(progress[0]) > 80
    assert "…" not in result.output
    (run_dir,) = (tmp_path / "runs" / "linear_test").iterdir()
    assert (
        json.loads((run_dir / "metrics.json").read_text())["early_stopping"]["stopped_epoch"] == 2
    )


# --------------------------------------------------------------------------------------------
# 3. Output readable in a pipe
# --------------------------------------------------------------------------------------------


def dense_report(name: str, inputs: list[str], units: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "name": name,
        "activation": "relu",
        "inputs": inputs,
        "units": [f"{name}[{j}]" for j in range(units)],
        "kernel": (rng.normal(size=(len(inputs), units)) / 7).tolist(),
        "bias": (rng.normal(size=units) / 50).tolist(),
    }


FEATURES4 = ["age", "years_worked", "past_salary", "years_in_industry"]
HIDDEN1 = [f"hidden_1[{i}]" for i in range(32)]


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize(
    "layer",
    [dense_report("hidden_1", FEATURES4, 32), dense_report("hidden_2", HIDDEN1, 16, seed=1)],
    ids=["4x32", "32x16"],
)
def test_weights_tables_fit_the_width_and_show_every_weight(layer, width):
    tables, left_out = cli._layer_tables(layer, width)
    lines = rendered(*tables)
    assert max(len(line) for line in lines) <= width
    assert left_out == "" and "…" not in "".join(lines)
    text = "\n".join(lines)
    for row in layer["kernel"]:
        for value in row:
            assert cli._fmt(value) in text
    for value in layer["bias"]:
        assert cli._fmt(value) in text
    if layer["name"] == "hidden_1":  # 4 inputs: a row per unit, a column per feature
        assert len(tables) == 1 and all(f in lines[1] for f in FEATURES4)


def test_weights_tables_leave_out_beyond_the_limit():
    layer = dense_report("wide", [f"x{i}" for i in range(40)], 64)
    tables, left_out = cli._layer_tables(layer, 80)
    assert left_out == "32 more units, 8 more inputs"
    lines = rendered(*tables)
    assert max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    assert "bias" in text and "[31]" in text and "[32]" not in text
    assert "x31" in text and "x32" not in text


def test_the_console_does_not_cut_lines_in_a_pipe():
    console = cli._Console()
    assert not console.is_terminal()  # pytest captures stdout
    assert console.rich.width == cli.PIPE_WIDTH


def test_tune_results_wrap_their_hyperparameters_at_80_columns():
    names = [f"model.hidden.layer_{i}.{p}" for i in (1, 2, 3) for p in ("units", "dropout")]
    rows = [
        {"trial": str(t), "status": "COMPLETED", "val_loss": 6.1e7 + t, "epochs_run": 23,
         **{n: 0.123456 * (t + 1) for n in names}}
        for t in range(3)
    ]  # fmt: skip
    columns = ["trial", "status", "val_loss", "epochs", "epochs_run", "seconds", *names]
    result = SimpleNamespace(objective="val_loss", direction="min", rows=rows, columns=columns)
    lines = rendered(cli._results_table(result), width=80)
    assert max(len(line) for line in lines) <= 80 and "…" not in "".join(lines)
    assert "hidden.layer_3.dropout=0.3704" in "\n".join(lines)


# --------------------------------------------------------------------------------------------
# 4. Predictions at the precision they have
# --------------------------------------------------------------------------------------------


def test_predictions_are_written_as_the_shortest_float32_repr(trained_run, tmp_path):
    from builder.predict import predict

    new = tmp_path / "new.csv"
    make_linear_frame(rows=40, seed=3).to_csv(new, index=False)
    result = invoke("predict", trained_run.path, "--data", new)
    assert result.exit_code == 0, result.output
    written = [line.rsplit(",", 1)[1] for line in result.stdout.splitlines()[1:]]
    assert len(written) == 40
    expected = predict(trained_run, new)[f"predicted_{TARGET}"]
    assert expected.dtype == np.float32
    for text, value in zip(written, expected, strict=True):
        assert np.float32(text) == value  # round-trips the model's float32 output
        assert text == str(np.float32(value))  # and is its shortest repr: no float64 noise


# --------------------------------------------------------------------------------------------
# 5. Tune runs in `builder runs`
# --------------------------------------------------------------------------------------------


def write_run(folder: Path, manifest: dict, metrics: dict | None = None, results=None) -> None:
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    if results is not None:
        pd.DataFrame(results).to_csv(folder / "results.csv", index=False)


@pytest.fixture
def runs_dir(tmp_path):
    base = {"status": "complete", "objective": "val_loss", "direction": "min", "max_trials": 20}
    write_run(
        tmp_path / "salary_tune" / "20260101-000002",
        {**base, "kind": "tune", "started": "2026-01-01T00:00:02Z", "trials_run": 20,
         "best": {"trial": "07", "score": 41234567.0, "learning_rate": 0.01}},
    )  # fmt: skip
    write_run(
        tmp_path / "salary_tune" / "20260101-000001",
        {**base, "kind": "tune", "status": "interrupted", "started": "2026-01-01T00:00:01Z"},
        results=[
            {"trial": "00", "status": "COMPLETED", "val_loss": 5.5e7},
            {"trial": "01", "status": "COMPLETED", "val_loss": 4.5e7},
            {"trial": "02", "status": "FAILED", "val_loss": None},
        ],
    )
    write_run(
        tmp_path / "salary_linear" / "20260101-000000",
        {"status": "complete", "started": "2026-01-01T00:00:00Z", "epochs_run": 20},
        {"test": {"mse": 75.0, "r2": 0.9}, "baselines": {"least_squares": {"mse": 75.0}}},
    )
    return tmp_path


def test_list_runs_gives_tune_runs_their_best_trial(runs_dir):
    rows = {Path(r["path"]).name: r for r in list_runs(runs_dir)}
    done, stopped, trained = (
        rows["20260101-000002"],
        rows["20260101-000001"],
        rows["20260101-000000"],
    )
    assert done["kind"] == "tune" and trained["kind"] == "train"
    assert done["tune"] == {
        "objective": "val_loss",
        "direction": "min",
        "trials": 20,
        "max_trials": 20,
        "best_trial": "07",
        "best_score": 41234567.0,
    }
    # Interrupted: no best in the manifest; the best finished trial of results.csv.
    assert stopped["tune"]["best_trial"] == "01" and stopped["tune"]["best_score"] == 4.5e7
    assert stopped["tune"]["trials"] == 3


def test_runs_shows_tune_rows_and_fits_80_columns(runs_dir):
    result = invoke("runs", runs_dir, env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "tune: best val_loss 41,234,567 (trial 07 of 20)" in result.stdout
    assert "tune: best val_loss 45,000,000 (trial 01 of 3)" in result.stdout
    assert "test mse 75 (1.000x least squares)" in result.stdout
    narrow = invoke("runs", runs_dir, env={"COLUMNS": "80"})
    lines = narrow.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in narrow.stdout
    assert "41,234,567" in narrow.stdout  # wrapped between words, never cut


# --------------------------------------------------------------------------------------------
# 6. The Python API is quiet
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_python_api_prints_no_tensorflow_log_lines(tmp_path):
    config = ROOT / "configs" / "salary_linear.yaml"
    code = (
        "import builder\n"
        f"model = builder.build_model(builder.load_config({str(config)!r}))\n"
        "print(model.count_params())\n"
    )
    result = run_python(code, env=quiet_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "14"
    assert not TF_LOG_LINE.search(result.stderr), result.stderr


def test_importing_builder_sets_the_quiet_defaults_and_keeps_the_users():
    code = (
        "import os, builder\n"
        "print(os.environ['TF_CPP_MIN_LOG_LEVEL'], os.environ['TF_ENABLE_ONEDNN_OPTS'])\n"
    )
    env = {**quiet_env(), "TF_CPP_MIN_LOG_LEVEL": "1"}
    result = run_python(code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "0"]
