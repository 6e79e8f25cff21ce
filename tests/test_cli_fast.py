"""The console script's fast path: ``validate`` and ``schema`` without typer, same as the app."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from builder import SCHEMA_FILE
from builder.cli import app
from builder.cli_fast import main
from tests.conftest import CONFIGS, LINEAR_CONFIG, PROCESS_TIMEOUT, ROOT

BAD = "name: t\ndata: {features: [a], target: y}\ntraining: {epochs: 0}\n"


def run_fast(args, capsys):
    """``builder ARGS`` through the console script's ``main``: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exited.value.code or 0, captured.out, captured.err


def run_typer(args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("case", ["valid", "valid_and_invalid", "missing_file", "schema"], ids=str)
def test_fast_path_prints_what_the_typer_app_prints(case, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    args = {
        "valid": ["validate", *CONFIGS],
        "valid_and_invalid": ["validate", LINEAR_CONFIG, bad],
        "missing_file": ["validate", tmp_path / "nope.yaml"],
        "schema": ["schema"],
    }[case]
    fast = run_fast(args, capsys)
    assert fast == run_typer(args)
    assert fast[0] == (0 if case in ("valid", "schema") else 2)
    assert gc.isenabled()


def test_fast_path_reports_each_bad_config_on_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    code, out, err = run_fast(["validate", LINEAR_CONFIG, bad], capsys)
    assert code == 2
    assert out == f"valid: {LINEAR_CONFIG} (salary_linear, regression)\n"
    assert err.startswith("invalid: training.epochs must be a positive integer up to 100,000")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_schema_prints_the_shipped_file(capsys):
    code, out, _ = run_fast(["schema"], capsys)
    assert code == 0
    assert out == SCHEMA_FILE.read_text(encoding="utf-8")
    assert {"data", "model", "training"} <= set(json.loads(out)["properties"])


@pytest.mark.parametrize(
    ("args", "expect_code", "expect"),
    [
        (["validate", "--help"], 0, "Config files to check"),
        (["--help"], 0, "Commands"),
        (["validate"], 2, "Missing argument"),
        (["schema", "extra"], 2, "unexpected extra argument"),
    ],
    ids=["validate-help", "help", "no-files", "schema-extra"],
)
def test_anything_else_goes_to_the_typer_app(args, expect_code, expect, capsys):
    code, out, err = run_fast(args, capsys)
    assert code == expect_code
    assert expect in out + err


PROBE = (
    "import sys\nfrom builder.cli_fast import main\n"
    "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
    "print(sorted(m for m in ('tensorflow', 'keras', 'typer', 'click', 'pydantic', 'rich')"
    " if m in sys.modules))\n"
)


@pytest.mark.parametrize(
    ("args", "loaded"),
    [
        (["validate", str(LINEAR_CONFIG)], "['pydantic']"),
        (["schema"], "[]"),
    ],
    ids=["validate", "schema"],
)
def test_fast_commands_import_neither_typer_nor_tensorflow(args, loaded):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=PROCESS_TIMEOUT,
    )
    assert out.stdout.splitlines()[-1] == loaded


def test_console_script_flushes_before_it_exits(tmp_path):
    # `python -m builder` runs main() as the console script does: ending with os._exit, so
    # anything left unflushed would be lost.
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as usual
    out = subprocess.run(
        [sys.executable, "-m", "builder", "validate", str(LINEAR_CONFIG), str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=PROCESS_TIMEOUT,
    )
    assert out.returncode == 2
    assert out.stdout == f"valid: {LINEAR_CONFIG} (salary_linear, regression)\n"
    assert out.stderr.startswith("invalid: training.epochs must be a positive integer up to")
    schema = subprocess.run(
        [sys.executable, "-m", "builder", "schema"],
        capture_output=True,
        cwd=ROOT,
        env=env,
        check=True,
        timeout=PROCESS_TIMEOUT,
    )
    assert schema.stdout == SCHEMA_FILE.read_bytes()


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("args", [["schema"], ["validate", str(LINEAR_CONFIG)]], ids=str)
def test_a_reader_that_leaves_early_gets_no_traceback(args, unbuffered):
    # `builder schema | head -1`: the pipe closes before builder writes. Exit 1, quietly, as the
    # typer app (click) does.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "wb") as closed_pipe:
        done = subprocess.run(
            [sys.executable, "-m", "builder", *args],
            stdout=closed_pipe,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=PROCESS_TIMEOUT,
        )
    assert (done.returncode, done.stderr) == (1, "")
