"""Keras backends by one key (``builder.backend``): the choice, its refusals, and the backend
subset (tests/backend_subset.py plus the layer tests) on JAX and PyTorch, each in a process of
its own, with models moving between the backends both ways."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import builder
import builder.predict
from builder import backend, distribute
from builder.cli import app
from builder.errors import ConfigError
from tests.conftest import LINEAR_CONFIG, PROCESS_TIMEOUT, ROOT, SUBSETS

OTHERS = [name for name in backend.BACKENDS if name != keras.backend.backend()]
# The layer tests, on each backend (test_layers.py's TensorFlow-only shapes sweep stays here).
LAYER_TESTS = ["tests/test_layers.py", "tests/test_encoding_layer.py"]
# Left to this backend: the layers reloading in a fresh process (the cross-backend loads below
# cover loading there) and the truth-table trainings (the shipped threshold config trains there).
LAYER_SKIPS = "not fresh_process and not logical"


def test_precedence_flag_then_config_then_environment_then_default(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert backend.choose("jax", "tensorflow") == ("jax", "--backend")
    assert backend.choose(None, "tensorflow") == ("tensorflow", "config")
    assert backend.choose(None, None) == ("torch", "KERAS_BACKEND")
    monkeypatch.delenv("KERAS_BACKEND")
    assert backend.choose(None, None) == (backend.DEFAULT, "default")


@pytest.mark.parametrize(
    ("flag", "env", "message"),
    [
        ("jaxx", None, "--backend must be one of tensorflow, jax, torch. Received: 'jaxx'"),
        (None, "numpy", "KERAS_BACKEND must be one of tensorflow, jax, torch. Received: 'numpy'"),
    ],
)
def test_an_unknown_backend_is_one_line(monkeypatch, flag, env, message):
    if env:
        monkeypatch.setenv("KERAS_BACKEND", env)
    with pytest.raises(ConfigError) as caught:
        backend.choose(flag)
    assert str(caught.value) == message


def test_another_backend_after_keras_was_imported_is_refused():
    imported = keras.backend.backend()
    other = OTHERS[0]
    with pytest.raises(ConfigError) as caught:
        backend.use(other)
    text = str(caught.value)
    assert f"--backend asks for {other}, but Keras was already imported with {imported}" in text
    assert "\n" not in text
    assert backend.use() == imported  # nothing asked for: the process's own
    assert backend.use(imported) == imported


def test_a_backend_that_is_not_installed_says_how_to_install_it(monkeypatch):
    import importlib.machinery

    real = importlib.machinery.PathFinder.find_spec
    monkeypatch.setattr(
        importlib.machinery.PathFinder,
        "find_spec",
        classmethod(lambda cls, name, *a: None if name == "torch" else real(name, *a)),
    )
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    with pytest.raises(ConfigError, match=r"needs the torch package, which is not installed.*"
                       r"pip install -e '\.\[torch\]'"):  # fmt: skip
        backend.use("torch")


@pytest.mark.parametrize(
    ("kind", "name", "message"),
    [
        ("mirrored", "torch", "mirrored runs on the tensorflow and jax backends only"),
        ("multi_worker", "jax", "multi_worker runs on the tensorflow backend only"),
    ],
)
def test_a_distribution_the_backend_cannot_run_is_refused(kind, name, message):
    with pytest.raises(ConfigError, match=message):
        distribute.check_backend(kind, name)
    distribute.check_backend("none", name)


def test_the_cli_refuses_a_backend_other_than_the_one_keras_runs(tmp_path):
    result = CliRunner().invoke(
        app, ["train", str(LINEAR_CONFIG), "--backend", OTHERS[0], "--runs-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "already imported with" in result.output
    assert not list(tmp_path.iterdir())  # refused before a run directory was made


def test_a_run_records_its_backend(tmp_path, linear_config):
    run = builder.train(linear_config, runs_dir=tmp_path, epochs=1)
    assert run.manifest["backend"] == keras.backend.backend() == run.config.backend
    assert keras.__version__ == run.manifest["versions"]["keras"]
    assert "backend: " + keras.backend.backend() in (run.path / "config.yaml").read_text()


HOME_RUN = """
import sys
from pathlib import Path
import builder, builder.predict
run = builder.train(sys.argv[1], runs_dir=sys.argv[2])
predictions = builder.predict.predict(run, run.config.data_path())
predictions.to_csv(run.path / "predictions.csv", index=False)
Path(sys.argv[3]).write_text(str(run.path))
"""

# The other direction of the last pair: the first backend's process loads the last one's model.
CROSS = """
import os, sys
from pathlib import Path
import numpy as np, pandas as pd
import builder, builder.predict
run = builder.load_run(sys.argv[1])
column = builder.predict.prediction_column(run)
expected = pd.read_csv(Path(sys.argv[1]) / "predictions.csv")[column]
got = builder.predict.predict(run, run.config.data_path())[column]
np.testing.assert_allclose(got, expected, rtol=1e-5)
assert run.manifest["backend"] != os.environ["KERAS_BACKEND"]
assert "tensorflow" not in sys.modules
"""


def test_jax_keeps_its_compilations_in_builders_cache_unless_told_otherwise(tmp_path):
    from builder.backend import JAX_CACHE_MAX_BYTES, jax_cache_settings

    lock = {"jax_compilation_cache_max_size": JAX_CACHE_MAX_BYTES}  # filelock is installed here
    xdg = {"XDG_CACHE_HOME": str(tmp_path)}
    assert jax_cache_settings(xdg) == {
        "jax_compilation_cache_dir": str(tmp_path / "builder" / "jax"),
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        **lock,
    }
    home = jax_cache_settings({})["jax_compilation_cache_dir"]
    assert home == str(Path.home() / ".cache" / "builder" / "jax")
    # JAX's own variables win, each for its own setting.
    assert "jax_compilation_cache_dir" not in jax_cache_settings(
        {**xdg, "JAX_COMPILATION_CACHE_DIR": "/elsewhere"}
    )
    mine = {
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "1",
        "JAX_COMPILATION_CACHE_MAX_SIZE": "9",
    }
    assert set(jax_cache_settings({**xdg, **mine})) == {"jax_compilation_cache_dir"}


class Subsets(threading.Thread):
    """The subset on each backend other than this one, in a thread of subprocesses started
    when the session's tests are collected (``tests/conftest.py``), so that they run on the
    second core beside the suite. In order: this backend trains the linear model in a process
    of its own; each other backend runs tests/backend_subset.py and the layer tests, and loads
    every model trained before it; the first other backend loads the last one's model."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.home = keras.backend.backend()
        self.steps: list[tuple[str, subprocess.CompletedProcess]] = []
        self.trained: list[Path] = []

    def _run(self, what: str, args: list[str], name: str, **env: str) -> bool:
        done = subprocess.run(
            [sys.executable, *args],
            cwd=ROOT,
            # JAX keeps its compilations here (builder.backend.jax_cache_settings), not in the
            # home directory; tests/backend_subset.py checks what it holds.
            env={
                **os.environ,
                "KERAS_BACKEND": name,
                "JAX_COMPILATION_CACHE_DIR": str(self.folder / "jax-cache"),
                **env,
            },
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
        )
        self.steps.append((what, done))
        return done.returncode == 0

    def run(self) -> None:
        home = self.folder / self.home
        home.mkdir()
        found = home / "run.txt"
        args = ["-c", HOME_RUN, str(LINEAR_CONFIG), str(home / "runs"), str(found)]
        if not self._run(f"{self.home}: train", args, self.home):
            return
        self.trained.append(Path(found.read_text()))
        for name in OTHERS:
            out = self.folder / name
            out.mkdir()
            args = ["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                    "tests/backend_subset.py", *LAYER_TESTS, "-k", LAYER_SKIPS]  # fmt: skip
            ok = self._run(
                f"{name}: subset",
                args,
                name,
                BUILDER_SUBSET_OUT=str(out),
                BUILDER_SUBSET_FOREIGN=os.pathsep.join(map(str, self.trained)),
                # Two host devices, for mirrored on JAX (only JAX reads it).
                XLA_FLAGS="--xla_force_host_platform_device_count=2",
            )
            if not ok:
                return
            self.trained.append(Path((out / "run.txt").read_text()))
        if len(OTHERS) > 1:
            self._run(f"{OTHERS[0]}: load", ["-c", CROSS, str(self.trained[-1])], OTHERS[0])

    def failure(self) -> str | None:
        for what, done in self.steps:
            if done.returncode:
                return f"{what}:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
        return None


def start_subsets(folder: Path) -> Subsets:
    """Start the ``Subsets`` thread, writing into ``folder``."""
    subsets = Subsets(folder)
    subsets.start()
    return subsets


@pytest.mark.slow
@pytest.mark.backend_subset
def test_the_subset_passes_on_every_other_backend_and_models_move_between_them(request):
    subsets = request.config.stash.get(SUBSETS, None)
    assert subsets is not None, "tests/conftest.py starts the subsets when this test is selected"
    subsets.join(timeout=3 * PROCESS_TIMEOUT)
    assert not subsets.is_alive(), "the backend subsets did not finish"
    failure = subsets.failure()
    assert failure is None, failure
    assert len(subsets.trained) == 1 + len(OTHERS)
    # Back here: each other backend's model predicts what it predicted there.
    for path in subsets.trained[1:]:
        run = builder.load_run(path)
        assert run.manifest["backend"] != keras.backend.backend()
        column = builder.predict.prediction_column(run)
        expected = pd.read_csv(path / "predictions.csv")[column]
        got = builder.predict.predict(run, run.config.data_path())[column]
        np.testing.assert_allclose(got, expected, rtol=1e-5)
