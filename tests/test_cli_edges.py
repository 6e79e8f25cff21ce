"""The command line's own mistakes: usage errors, odd output paths, a console one column wide.

Usage errors go through ``builder.cli.main`` (what the console script runs), not typer's test
runner, because the one-line rendering lives there.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from builder import cli
from builder.config import load_config
from builder.model import build_model, summary_text
from tests.conftest import PROCESS_TIMEOUT, ROOT


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "x.yaml", "--nope"], "No such option: --nope (see 'builder train --help')"),
        (["nosuch"], "No such command 'nosuch'. (see 'builder --help')"),
        (["predict", "run"], "Missing option '--data'. (see 'builder predict --help')"),
        (["train", "x.yaml", "--epochs", "many"], "Invalid value for '--epochs': "),
        (["tune", "x.yaml", "--max-trials", "0"], "Invalid value for '--max-trials': "),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as info:
        cli.main(args)
    assert info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), captured.err
    assert "Usage:" not in captured.err and captured.out == ""


def test_help_still_exits_0(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    assert "train" in capsys.readouterr().out


def test_output_with_a_trailing_slash_is_a_directory_not_a_file(
    trained_run, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    csv = tmp_path / "p.csv"
    csv.write_text("x1,x2,x3\n1,2,3\n")
    with pytest.raises(SystemExit) as info:
        cli.main(["predict", str(trained_run.path), "--data", str(csv), "--output", "new/"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        err
        == "error: --output new/ must name a file. Received: a directory path (it ends in a slash)"
    )
    assert not (tmp_path / "new").exists()


def test_the_summary_is_laid_out_in_a_console_one_column_wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1")
    text = summary_text(build_model(load_config(ROOT / "configs" / "salary_mlp.yaml")))
    assert "Layer (type)" in text and "Param #" in text
    assert max(len(line) for line in text.splitlines()) > 40


def test_predict_to_a_closed_stdout_refuses_in_one_line(trained_run, tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("x1,x2,x3\n1,2,3\n")
    command = f"{sys.executable} -m builder predict {trained_run.path} --data {csv} >&-"
    result = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=PROCESS_TIMEOUT
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: standard output is closed, so predictions have nowhere to go; pass --output FILE"
    )


def test_plot_into_a_folder_that_is_a_file_is_one_line(trained_run, tmp_path, capsys):
    blocker = tmp_path / "f.png"
    blocker.write_text("x\n")
    with pytest.raises(SystemExit) as info:
        cli.main(["plot", str(trained_run.path), "--output-dir", str(blocker)])
    assert info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"error: cannot write the plot '{blocker}/") and "(File exists)" in line
    assert blocker.read_text() == "x\n"
