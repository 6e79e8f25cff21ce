"""Shared fixtures: small generated CSVs and configs, so no test needs the network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

ROOT = Path(__file__).resolve().parent.parent
# Every subprocess a test starts ends within this many seconds, or the test fails (a hang guard,
# not a speed check: a loaded 2-core machine takes about 10 s to start TensorFlow and train).
PROCESS_TIMEOUT = 300


def default_signals() -> None:
    """A ``preexec_fn`` that gives a child the default SIGINT, SIGTERM and SIGHUP.

    A command that a non-interactive shell starts in the background (``.ci/run &``) inherits
    SIGINT ignored (and may inherit the others ignored); Python and builder then rightly keep
    ignoring them, and a test that stops its child with one would see it go on.
    """
    import signal

    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)


def run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    """``python -c CODE`` in a fresh process, text captured, bounded by ``PROCESS_TIMEOUT``."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        **kwargs,
    )


#: Where the session keeps the backend subsets' thread (tests/test_backends.py).
SUBSETS = pytest.StashKey()


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected
def pytest_collection_modifyitems(config, items):
    # The subset on the other backends runs in subprocesses beside the suite (the suite is
    # mostly one busy core); its test goes last and waits for them.
    waiting = [item for item in items if item.get_closest_marker("backend_subset")]
    if not waiting:
        return
    items[:] = [item for item in items if item not in waiting] + waiting
    import tempfile

    from tests.test_backends import start_subsets

    folder = Path(tempfile.mkdtemp(prefix="builder-backends-"))
    config.stash[SUBSETS] = start_subsets(folder)
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
LINEAR_CONFIG = ROOT / "configs" / "salary_linear.yaml"
# Configs with search spaces are for `builder tune`; `build` and `train` refuse them.
TRAIN_CONFIGS = [p for p in CONFIGS if "search:" not in p.read_text(encoding="utf-8")]
TUNE_CONFIGS = [p for p in CONFIGS if p not in TRAIN_CONFIGS]

# A known linear truth with awkward column names: spaces, dots, capitals.
FEATURES = ["Age (years)", "x.dot", "Big Number"]
TRUE_COEF = np.array([3.0, -2.0, 0.05])
TRUE_INTERCEPT = 100.0
TARGET = "Target Value"


def make_linear_frame(rows: int = 3000, seed: int = 0, noise: float = 1.0) -> pd.DataFrame:
    """Rows of ``y = 3 a - 2 b + 0.05 c + 100 + noise`` plus an unused text column."""
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [rng.uniform(20, 60, rows), rng.normal(0, 5, rows), rng.uniform(1e3, 1e5, rows)]
    )
    y = x @ TRUE_COEF + TRUE_INTERCEPT + rng.normal(0, noise, rows)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame.insert(1, "comment", [f"row {i}" for i in range(rows)])  # extra column, ignored
    frame[TARGET] = y
    return frame


def config_dict(data_path: str | None, **training) -> dict:
    """A no-hidden-layer config for the generated linear data."""
    return {
        "name": "linear_test",
        "data": {"path": data_path, "features": FEATURES, "target": TARGET},
        "model": {"layers": [], "output": {"units": 1}},
        "training": {"epochs": 3, "seed": 7, **training},
    }


def write_yaml(path: Path, data: dict) -> Path:
    """Write a config dict as YAML and return the path."""
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def linear_csv(tmp_path_factory) -> Path:
    """A CSV with a known linear truth (3,000 rows)."""
    path = tmp_path_factory.mktemp("data") / "linear data.csv"
    make_linear_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def linear_config(tmp_path_factory, linear_csv) -> Path:
    """A config for ``linear_csv`` (3 epochs: for plumbing tests, not accuracy)."""
    folder = tmp_path_factory.mktemp("configs")
    return write_yaml(folder / "linear.yaml", config_dict(str(linear_csv)))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, linear_config):
    """One short training run, shared by the inspect, predict, evaluate and plot tests."""
    import builder

    runs_dir = tmp_path_factory.mktemp("runs")
    return builder.train(linear_config, runs_dir=runs_dir)


def gradient(fn, x: np.ndarray) -> np.ndarray:
    """``d sum(fn(x)) / dx`` as numpy, on whichever backend Keras runs.

    Keras has no public gradient op, so each backend's own: ``tf.GradientTape``, ``jax.grad``,
    torch's autograd.
    """
    import keras

    name = keras.backend.backend()
    x = np.asarray(x)
    if name == "jax":
        import jax
        import jax.numpy as jnp

        return np.asarray(jax.grad(lambda v: jnp.sum(fn(v)))(jnp.asarray(x)))
    if name == "torch":
        import torch

        t = torch.tensor(x, requires_grad=True)
        fn(t).sum().backward()
        return t.grad.numpy()
    import tensorflow as tf

    t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(t)
        y = fn(t)
    return tape.gradient(y, t).numpy()


# ------------------------------------------------------------------------------ fresh process

#: The loop of the one Python process that the "in a fresh process" checks share (see
#: ``fresh_process``). Each request is a line of JSON: code and argv, as for ``python -c CODE
#: ARGS``; each answer a line: returncode, stdout, stderr. Answers go through a copy of fd 1;
#: fd 1 itself then points at stderr, so nothing a library writes there can break an answer.
FRESH_LOOP = """
import contextlib, io, json, os, sys, traceback
answers = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
for line in sys.stdin:
    job = json.loads(line)
    sys.argv, sys.stdin = ["-c", *job["argv"]], open(os.devnull)
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            exec(compile(job["code"], "<string>", "exec"), {"__name__": "__main__"})
        except SystemExit as stop:
            if stop.code is not None and not isinstance(stop.code, int):
                print(stop.code, file=sys.stderr)
            code = 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
    answers.write(json.dumps({"returncode": code, "stdout": out.getvalue(),
                              "stderr": err.getvalue()}) + "\\n")
    answers.flush()
"""


class FreshProcess:
    """One Python process, started for the session, that runs code as ``python -c`` would.

    For the checks that a file written here reads back elsewhere (a saved model, a run): the
    process never saw this one's objects, only the files. Starting Python with TensorFlow costs
    about 8 s, so the checks share it: each runs in its own globals, and none of them changes
    state that another reads (they load files and predict).
    """

    def __init__(self, folder: Path):
        self._log = folder / "stderr.txt"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
        with open(self._log, "w") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", FRESH_LOOP],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=ROOT,
                env=env,
            )

    def run(self, code: str, *args: object) -> subprocess.CompletedProcess:
        """Run ``code`` with ``sys.argv[1:]`` = ``args``; its output captured, as ``run_python``."""
        import json
        import select

        argv = [str(a) for a in args]
        self._proc.stdin.write(json.dumps({"code": code, "argv": argv}) + "\n")
        self._proc.stdin.flush()
        ready, _, _ = select.select([self._proc.stdout], [], [], PROCESS_TIMEOUT)
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            self._proc.kill()
            tail = self._log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"the fresh process ended or hung: {tail}")
        answer = json.loads(line)
        return subprocess.CompletedProcess(["python", "-c", code, *argv], **answer)

    def close(self) -> None:
        # Nothing is left to write: killed, not waited for (TensorFlow takes seconds to exit).
        self._proc.kill()
        self._proc.communicate(timeout=PROCESS_TIMEOUT)


@pytest.fixture(scope="session")
def fresh_process(tmp_path_factory):
    """A ``FreshProcess`` that the session's reload checks share."""
    process = FreshProcess(tmp_path_factory.mktemp("fresh-process"))
    yield process
    process.close()
