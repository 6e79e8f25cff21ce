"""Writes, locks and signals: nothing clobbered, nothing left behind, permissions as the umask says.

Outputs are created exclusively (``--force`` replaces only a regular file), a write error is one
line, a run being trained is locked, and SIGTERM or SIGHUP stop a command as Ctrl-C does.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import builder
from builder import locks
from builder.cli import app
from builder.errors import Interrupted, RunError
from builder.runs import FILES, check_output, write_csv_frames
from tests.conftest import (
    PROCESS_TIMEOUT,
    config_dict,
    default_signals,
    make_linear_frame,
    run_python,
    write_yaml,
)

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _error_line(result) -> str:
    """The one ``error:`` line a refused command prints (and nothing like a traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error: ")]
    return line


def _hidden(folder: Path) -> list[str]:
    """Hidden files under ``folder``: temporary files (``.name-pid-xxxx.ext``) or a lock."""
    return sorted(p.name for p in folder.rglob(".*"))


def _small_csv(tmp_path: Path, rows: int = 300) -> Path:
    csv = tmp_path / "small.csv"
    make_linear_frame(rows=rows, seed=2).to_csv(csv, index=False)
    return csv


def _interrupted_run(tmp_path, monkeypatch, at_interrupt=None) -> Path:
    """A run stopped by Ctrl-C after epoch 2 of 4, with a checkpoint after every epoch.

    ``at_interrupt(run_dir)`` is called just before the interrupt, while the run is training.
    """
    from builder import training

    csv = _small_csv(tmp_path)
    config = write_yaml(tmp_path / "c.yaml", config_dict(str(csv), epochs=4, early_stopping=None))
    monkeypatch.setattr(training, "CHECKPOINT_SECONDS", 0.0)
    runs_dir = tmp_path / "runs"

    def ctrl_c(epoch, epochs, logs):
        if epoch == 2:
            (run_dir,) = (runs_dir / "linear_test").iterdir()
            if at_interrupt is not None:
                at_interrupt(run_dir)
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        builder.train(config, runs_dir=runs_dir, progress=ctrl_c)
    (run_dir,) = (runs_dir / "linear_test").iterdir()
    return run_dir


def _modes(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): stat.S_IMODE(p.lstat().st_mode)
        for p in [folder, *folder.rglob("*")]
    }


# ------------------------------------------------------------------------------- permissions


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"),
    [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)],
    ids=["umask022", "umask077"],
)
def test_run_files_and_outputs_follow_the_umask(tmp_path, monkeypatch, umask, file_mode, dir_mode):
    while_training: dict[str, int] = {}
    holder: list = []

    def look(run_dir: Path) -> None:
        while_training.update(_modes(run_dir))
        holder.append(locks.holder(run_dir))

    previous = os.umask(umask)
    try:
        run_dir = _interrupted_run(tmp_path, monkeypatch, at_interrupt=look)
        interrupted = _modes(run_dir)
        assert invoke("train", "--resume", run_dir).exit_code == 0
        finished = _modes(run_dir)
        out = tmp_path / "predictions.csv"
        result = invoke("predict", run_dir, "--data", _small_csv(tmp_path), "--output", out)
        assert result.exit_code == 0, result.output
        output = stat.S_IMODE(out.stat().st_mode)
        runs_dirs = {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "runs", run_dir.parent)}
    finally:
        os.umask(previous)

    # Everything a training writes, the checkpoint and the lock file included, while it runs.
    assert {".lock", "manifest.json", "config.yaml", "checkpoint/state.json"} <= set(while_training)
    assert "checkpoint/weights-000002.npz" in while_training
    assert holder == [(os.getpid(), "python")]  # the API's caller holds the lock while training
    expected = {n: dir_mode if n in (".", "checkpoint") else file_mode for n in while_training}
    assert while_training == expected
    assert interrupted == {n: m for n, m in expected.items() if n != ".lock"}
    assert finished == {".": dir_mode, **{name: file_mode for name in FILES}}
    assert output == file_mode
    assert runs_dirs == {dir_mode}  # runs/ and runs/<name>/, made by train


# ----------------------------------------------------------------------- exclusive and --force


def test_an_output_that_appears_meanwhile_is_not_overwritten(trained_run, tmp_path, monkeypatch):
    from builder import predict as predict_mod

    csv = _small_csv(tmp_path)
    out = tmp_path / "out.csv"
    real = predict_mod.predict_chunks

    def then_someone_writes(run, path, **kwargs):
        for frame in real(run, path, **kwargs):
            yield frame
            out.write_text("someone else's\n")  # after the start's check, before the link

    monkeypatch.setattr(predict_mod, "predict_chunks", then_someone_writes)
    result = invoke("predict", trained_run.path, "--data", csv, "--output", out)
    line = _error_line(result)
    assert f"--output {out} already exists (it appeared while it was being written)" in line
    assert "--force" in line
    assert out.read_text() == "someone else's\n"
    assert sorted(tmp_path.iterdir()) == [out, csv]  # and no temporary file


def test_without_hard_links_the_last_step_is_still_exclusive(tmp_path, monkeypatch):
    from builder import runs

    def no_links(src, dst, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")  # vfat, some network shares

    monkeypatch.setattr(runs.os, "link", no_links)
    frame = pd.DataFrame({"a": [1, 2]})
    out = tmp_path / "out.csv"
    assert write_csv_frames(out, [frame], overwrite="never") == 2
    assert out.read_text() == "a\n1\n2\n"

    late = tmp_path / "late.csv"

    def frames():
        yield frame
        late.write_text("theirs\n")

    with pytest.raises(RunError, match="appeared while it was being written"):
        write_csv_frames(late, frames(), overwrite="never")
    assert late.read_text() == "theirs\n"
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_force_replaces_only_a_regular_file(trained_run, tmp_path, kind):
    csv = _small_csv(tmp_path)
    precious = tmp_path / "precious.csv"
    precious.write_text("keep\n")
    out = tmp_path / "out.csv"
    not_regular = f"--output {out} must be a regular file for --force to replace it. Received:"
    if kind == "symlink":
        out.symlink_to(precious)
        expected = f"{not_regular} a symbolic link"
    elif kind == "fifo":
        os.mkfifo(out)
        expected = f"{not_regular} a FIFO (named pipe)"
    else:
        out.mkdir()
        expected = f"--output {out} must name a file. Received: a directory"
    result = invoke("predict", trained_run.path, "--data", csv, "--output", out, "--force")
    assert _error_line(result) == f"error: {expected}"
    assert precious.read_text() == "keep\n"
    mode = out.lstat().st_mode
    if kind == "symlink":
        assert stat.S_ISLNK(mode) and out.readlink() == precious
    elif kind == "fifo":
        assert stat.S_ISFIFO(mode)
    else:
        assert stat.S_ISDIR(mode) and not list(out.iterdir())
        # Without --force a directory is named as such too, not as an existing output.
        result = invoke("predict", trained_run.path, "--data", csv, "--output", out)
        assert _error_line(result) == f"error: {expected}"
    assert _hidden(tmp_path) == []


def test_force_refuses_a_device_and_a_link_that_appears_meanwhile(tmp_path):
    device = r"/dev/null must be a regular file .* Received: a character device"
    with pytest.raises(RunError, match=device):
        check_output(Path("/dev/null"), overwrite="file", what="--output")
    precious = tmp_path / "precious.csv"
    precious.write_text("keep\n")
    out = tmp_path / "out.csv"
    out.write_text("old\n")

    def frames():
        yield pd.DataFrame({"a": [1]})
        out.unlink()
        out.symlink_to(precious)  # swapped in after the start's check

    with pytest.raises(RunError, match="Received: a symbolic link"):
        write_csv_frames(out, frames(), overwrite="file", what="--output")
    assert out.is_symlink() and precious.read_text() == "keep\n"
    assert _hidden(tmp_path) == []
    # A regular file is replaced, and a dangling link counts as existing without --force.
    (tmp_path / "plain.csv").write_text("old\n")
    write_csv_frames(tmp_path / "plain.csv", [pd.DataFrame({"a": [1]})], overwrite="file")
    assert (tmp_path / "plain.csv").read_text() == "a\n1\n"
    (tmp_path / "dangling.csv").symlink_to(tmp_path / "nowhere")
    with pytest.raises(RunError, match="already exists; pass --force"):
        check_output(tmp_path / "dangling.csv", overwrite="never")


# ------------------------------------------------------------------------------ write errors


def test_disk_full_during_predict_is_one_line_and_leaves_nothing(
    trained_run, tmp_path, monkeypatch
):
    csv = _small_csv(tmp_path)
    out = tmp_path / "out.csv"
    real = pd.DataFrame.to_csv

    def full_disk(self, path_or_buf=None, **kwargs):
        if path_or_buf is None:
            return real(self, **kwargs)
        path_or_buf.write("half a row")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    result = invoke("predict", trained_run.path, "--data", csv, "--output", out)
    assert _error_line(result) == (
        f"error: --output {out} could not be written. Received: No space left on device (ENOSPC)"
    )
    assert sorted(tmp_path.iterdir()) == [csv]


def test_disk_full_during_a_checkpoint_fails_the_run_in_one_line(tmp_path, monkeypatch):
    import numpy as np

    from builder import training

    csv = _small_csv(tmp_path)
    config = write_yaml(tmp_path / "c.yaml", config_dict(str(csv), epochs=3))
    monkeypatch.setattr(training, "CHECKPOINT_SECONDS", 0.0)

    def full_disk(file, **arrays):
        Path(file).write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", full_disk)
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    (run_dir,) = (tmp_path / "runs" / "linear_test").iterdir()
    weights = run_dir / "checkpoint" / "weights-000001.npz"
    assert _error_line(result) == (
        f"error: file {weights} could not be written. Received: No space left on device (ENOSPC)"
    )
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "failed"
    assert _hidden(run_dir) == []  # no temporary file, and the lock is gone
    assert not weights.exists()


def test_a_real_write_error_is_one_line(tmp_path):
    """The kernel's own error: a file-size limit makes the write fail with EFBIG."""
    path = tmp_path / "big.txt"
    code = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "from builder.errors import RunError\n"
        "from builder.runs import write_text\n"
        "try:\n"
        f"    write_text({str(path)!r}, 'x' * 100_000)\n"
        "except RunError as err:\n"
        "    print(err)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"file {path} could not be written. Received: File too large (EFBIG)\n"
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ locks


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process that takes the run's lock, says so, and waits to be killed."""
    code = (
        "import sys, time\n"
        "from builder.locks import run_lock\n"
        "with run_lock(sys.argv[1], ['builder', 'train', '--resume', sys.argv[1]]):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True
    )


def test_a_resume_of_a_locked_run_is_refused_and_a_stale_lock_is_not(tmp_path, monkeypatch):
    run_dir = _interrupted_run(tmp_path, monkeypatch)
    other = _hold_lock(run_dir)
    try:
        assert other.stdout.readline() == "held\n"
        result = invoke("train", "--resume", run_dir)
        assert _error_line(result) == (
            f"error: run {run_dir} is in use by process {other.pid} (builder train); "
            "wait for it or stop it."
        )
        # Refused before anything was read or written.
        assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
        assert (run_dir / "checkpoint" / "state.json").exists()
    finally:
        other.kill()
        other.communicate(timeout=PROCESS_TIMEOUT)
    # SIGKILL left the lock file, naming the dead process; the kernel released the lock.
    assert locks.holder(run_dir) == (other.pid, "builder train")
    result = invoke("train", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"
    assert _hidden(run_dir) == []


# ---------------------------------------------------------------------------------- signals


@pytest.mark.parametrize(("name", "code"), [("SIGTERM", 143), ("SIGHUP", 129)])
def test_a_stop_signal_during_predict_leaves_no_file(
    trained_run, tmp_path, monkeypatch, name, code
):
    from builder import predict as predict_mod

    number = getattr(signal, name)
    got: list[int] = []

    def guard(signum, frame):  # if builder installed nothing, the signal must not end pytest
        got.append(signum)

    previous = signal.signal(number, guard)
    csv = _small_csv(tmp_path)
    out = tmp_path / "out.csv"
    real = predict_mod.predict_chunks

    def signalled(run, path, **kwargs):
        for frame in real(run, path, **kwargs):
            yield frame
            os.kill(os.getpid(), number)
            time.sleep(2)  # the handler raises here
            yield frame

    monkeypatch.setattr(predict_mod, "predict_chunks", signalled)
    try:
        result = invoke("predict", trained_run.path, "--data", csv, "--output", out)
        assert signal.getsignal(number) is guard  # put back as it was
    finally:
        signal.signal(number, previous)
    assert got == []
    assert result.exit_code == code, result.output
    assert f"interrupted by {name}" in result.output and "Traceback" not in result.output
    assert sorted(tmp_path.iterdir()) == [csv]


def _start(args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "builder", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
    )


def _wait_for(found, proc: subprocess.Popen, timeout: float = 120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = found()
        if value:
            return value
        assert proc.poll() is None, proc.communicate(timeout=PROCESS_TIMEOUT)
        time.sleep(0.01)
    raise AssertionError("the process did not get there in time")


@pytest.mark.slow
def test_sigterm_stops_a_training_as_ctrl_c_does(tmp_path):
    csv = _small_csv(tmp_path, rows=2500)
    # 16 epochs: as tests/test_faults.py's SLOW, still training when the signal comes.
    slow = {"epochs": 16, "batch_size": 16, "steps_per_execution": 1, "early_stopping": None}
    config = write_yaml(tmp_path / "slow.yaml", config_dict(str(csv), **slow))
    runs_dir = tmp_path / "runs"
    proc = _start(["train", config, "--runs-dir", runs_dir])
    try:
        state = _wait_for(lambda: list(runs_dir.glob("*/*/checkpoint/state.json")), proc)[0]
        run_dir = state.parent.parent
        # While it trains, the run is locked: taking it is refused, naming the training (the
        # lock itself, not a whole resume command, so the signal comes before the last epoch).
        held = f"is in use by process {proc.pid} \\(builder train\\)"
        with pytest.raises(RunError, match=held), locks.run_lock(run_dir, ["builder"]):
            pass
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=PROCESS_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=PROCESS_TIMEOUT)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    epoch = json.loads(state.read_text())["epoch"]
    assert (
        f"interrupted: training interrupted; the last checkpoint is after epoch {epoch}; "
        f"resume with: builder train --resume {run_dir}"
    ) in stderr
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
    assert _hidden(run_dir) == []  # no temporary file, and the lock released and removed
    result = invoke("train", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["epochs_run"] == slow["epochs"]


@pytest.mark.slow
def test_sigterm_during_predict_output_leaves_nothing(trained_run, tmp_path):
    # Enough rows that predict is still writing when the signal comes: the same 1,000 rows
    # repeated (writing them once and copying the text is much faster than pandas).
    lines = make_linear_frame(rows=1000, seed=5).to_csv(index=False).splitlines(keepends=True)
    csv = tmp_path / "big.csv"
    with open(csv, "w", encoding="utf-8") as handle:
        handle.write(lines[0])
        body = "".join(lines[1:])
        for _ in range(600):
            handle.write(body)
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "predictions.csv"
    proc = _start(["predict", trained_run.path, "--data", csv, "--output", out])
    try:
        _wait_for(lambda: list(folder.glob(".predictions-*")), proc)  # writing has started
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=PROCESS_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=PROCESS_TIMEOUT)
    assert proc.returncode == 143, stderr
    assert "interrupted by SIGTERM" in stderr and "Traceback" not in stderr
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("target", ["model.keras", "manifest.json", "data"])
def test_force_never_writes_over_what_predict_reads(trained_run, tmp_path, target):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.path, run_dir)
    csv = _small_csv(tmp_path)
    out = csv if target == "data" else run_dir / target
    before = out.read_bytes()
    result = invoke("predict", run_dir, "--data", csv, "--output", out, "--force")
    source = csv if target == "data" else run_dir / target
    assert _error_line(result) == (
        f"error: --output {out} must not be a file the command reads. "
        f"Received: the same file as {source}"
    )
    assert out.read_bytes() == before
