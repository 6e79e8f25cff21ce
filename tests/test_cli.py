"""The command line through typer's CliRunner: exit codes, key lines, one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from builder.cli import app
from tests.conftest import (
    CONFIGS,
    FEATURES,
    LINEAR_CONFIG,
    ROOT,
    TARGET,
    make_linear_frame,
    run_python,
)

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("validate", "schema", "build", "train", "inspect", "predict", "plot"):
        assert command in result.output


def test_validate_shipped_configs():
    result = invoke("validate", *CONFIGS)
    assert result.exit_code == 0, result.output
    assert result.output.count("valid: ") == len(CONFIGS)


def test_validate_reports_invalid_config_with_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\ndata: {features: [a], target: y}\ntraining: {epochs: 0}\n")
    result = invoke("validate", LINEAR_CONFIG, bad)
    assert result.exit_code == 2
    rule = "training.epochs must be a positive integer up to 100,000, or auto"
    assert f"{rule}. Received: epochs=0" in result.output
    assert "Traceback" not in result.output


def test_validate_does_not_import_tensorflow():
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom builder.cli import app\n"
        f"r = CliRunner().invoke(app, ['validate', {str(LINEAR_CONFIG)!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    out = run_python(code, check=True)
    assert out.stdout.strip() == "[]"


def test_schema_is_json():
    result = invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert "data" in schema["properties"] and "training" in schema["properties"]


def test_build_prints_the_keras_summary():
    result = invoke("build", ROOT / "configs" / "salary_linear.yaml")
    assert result.exit_code == 0, result.output
    assert "output (Dense)" in result.output
    assert "Trainable params: 5" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "missing.yaml"], "config file missing.yaml does not exist."),
        (["inspect", "no/such/run"], "run no/such/run does not exist."),
    ],
)
def test_user_errors_are_one_line_exit_2(args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {message}"


def test_debug_shows_the_exception(tmp_path):
    result = invoke("--debug", "build", tmp_path / "missing.yaml")
    assert result.exit_code != 0
    assert result.exception is not None and "does not exist" in str(result.exception)


def test_train_inspect_predict_evaluate_plot_end_to_end(linear_config, tmp_path):
    runs = tmp_path / "runs"
    result = invoke("train", linear_config, "--runs-dir", runs, "--epochs", 2)
    assert result.exit_code == 0, result.output
    assert "least squares" in result.output and "mean predictor" in result.output
    (run,) = (runs / "linear_test").iterdir()
    assert f"run directory: {run}" in result.output

    result = invoke("inspect", run, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["layers"][0]["inputs"] == FEATURES
    assert set(report["equation"]["coefficients"]) == set(FEATURES)
    assert report["equation"]["text"].startswith(f"{TARGET} = ")

    result = invoke("inspect", run)
    assert result.exit_code == 0 and "learned equation" in result.output

    new = tmp_path / "new.csv"
    make_linear_frame(rows=25, seed=2)[list(reversed(FEATURES))].to_csv(new, index=False)
    out = tmp_path / "pred.csv"
    result = invoke("predict", run, "--data", new, "--output", out)
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert len(lines) == 26 and lines[0].endswith(f"predicted_{TARGET}")
    result = invoke("predict", run, "--data", new, "--output", out)
    assert result.exit_code == 2 and "--force" in result.output
    assert invoke("predict", run, "--data", new, "--output", out, "--force").exit_code == 0

    holdout = tmp_path / "holdout.csv"
    make_linear_frame(rows=100, seed=4).to_csv(holdout, index=False)
    result = invoke("evaluate", run, "--data", holdout, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"] == 100

    result = invoke("plot", run)
    assert result.exit_code == 0, result.output
    for name in ("history.png", "predictions.png"):
        assert (run / name).read_bytes().startswith(PNG)
    assert invoke("plot", run, "--network").exit_code == 0
    assert (run / "network.png").read_bytes().startswith(PNG)

    result = invoke("runs", runs)
    assert result.exit_code == 0 and "linear_test" in result.output


def test_plot_activations(tmp_path):
    result = invoke("plot", "activations", "--output-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "activations.png").read_bytes().startswith(PNG)


def test_train_reports_a_missing_column(tmp_path):
    csv = tmp_path / "d.csv"
    make_linear_frame(rows=20).to_csv(csv, index=False)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"name: t\ndata: {{path: d.csv, features: [x.dots, 'Age (years)'], target: '{TARGET}'}}\n"
    )
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    line = result.output.strip()
    assert line.startswith("error: ") and "\n" not in line
    assert "must have a column 'x.dots'" in line and "Did you mean 'x.dot'?" in line
    assert not (tmp_path / "runs").exists()  # nothing half-written
