"""training.distribution: TF_CONFIG checks, MirroredStrategy on logical CPUs, two local workers.

The strategies run in subprocesses: logical devices must be set before TensorFlow starts, and
MultiWorkerMirroredStrategy needs one process per worker. Only loopback addresses are used.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from builder import distribute
from builder.config import parse_config
from builder.errors import ConfigError
from tests.conftest import PROCESS_TIMEOUT, ROOT, config_dict, make_linear_frame, write_yaml

# Mirrored training on 2 logical CPUs splits each global batch in two and sums the gradients;
# the tf.data pipeline then shuffles in another order than on one device, so the runs are not
# bitwise equal. Both converge on the least-squares answer of the linear data: measured test
# MSE differences were 0.1-0.4%; 1% is the stated tolerance.
MIRRORED_REL = 0.01
# Two workers on one CPU each and one process with 2 logical CPUs split every global batch the
# same way, so they compute the same steps: measured equal to 1e-7 relative.
WORKERS_VS_MIRRORED_REL = 1e-4
WORKER_TIMEOUT_S = 300


def cfg(distribution: str, **training) -> object:
    text = "name: t\ndata: {features: [a], target: y}\n"
    parts = [f"distribution: {distribution}", *[f"{k}: {v}" for k, v in training.items()]]
    return parse_config(text + "training: {" + ", ".join(parts) + "}\n")


def env(spec: dict | str | None) -> dict[str, str]:
    if spec is None:
        return {}
    return {"TF_CONFIG": spec if isinstance(spec, str) else json.dumps(spec)}


TWO = {"worker": ["127.0.0.1:2001", "127.0.0.1:2002"]}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (None, "TF_CONFIG must describe the cluster and this machine's task"),
        ("{not json", "TF_CONFIG must be JSON"),
        ({"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}, "host:port"),
        ({"cluster": {**TWO, "ps": ["127.0.0.1:2003"]}}, "only worker and chief tasks"),
        ({"cluster": TWO}, "must have a task"),
        ({"cluster": TWO, "task": {"type": "chief", "index": 0}}, "task.type must be one of"),
        ({"cluster": TWO, "task": {"type": "worker", "index": 2}}, "task.index must be 0 to 1"),
    ],
)
def test_tf_config_is_checked_with_a_clear_error(spec, message):
    with pytest.raises(ConfigError, match="multi_worker") as err:
        distribute.tf_config(env(spec))
    assert message in str(err.value)


def test_the_chief_is_worker_0_or_the_chief_task(monkeypatch):
    config = cfg("multi_worker")
    for index, chief in ((0, True), (1, False)):
        spec = {"cluster": TWO, "task": {"type": "worker", "index": index}}
        monkeypatch.setenv("TF_CONFIG", json.dumps(spec))
        assert distribute.is_chief(config) is chief
    spec = {"cluster": {**TWO, "chief": ["127.0.0.1:2000"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(spec))
    assert distribute.is_chief(config) is False
    monkeypatch.delenv("TF_CONFIG")
    assert distribute.is_chief(cfg("none")) and distribute.is_chief(cfg("mirrored"))


def test_distributed_training_runs_one_step_per_call():
    assert cfg("none").training.steps_per_execution == 32
    assert cfg("mirrored").training.steps_per_execution == 1
    assert cfg("multi_worker", steps_per_execution=1).training.steps_per_execution == 1
    with pytest.raises(ConfigError, match="steps_per_execution must be 1 with distribution"):
        cfg("mirrored", steps_per_execution=8)


class _Python:
    """``python -c CODE`` started in the background; ``result()`` waits for its last line, as
    JSON. The two local workers train meanwhile: on 2 cores the three processes take less time
    together than one after the other."""

    def __init__(self, code: str, folder: Path, timeout: int = 240):
        # Files, not pipes: nobody reads a pipe while the workers train, and a full one blocks.
        self._out, self._err = folder / "stdout.txt", folder / "stderr.txt"
        self._timeout = timeout
        with open(self._out, "w") as out, open(self._err, "w") as err:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(code)],
                stdout=out,
                stderr=err,
                text=True,
                cwd=ROOT,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
            )
        self._result = None

    def result(self) -> dict:
        if self._result is None:
            self._proc.wait(timeout=self._timeout)
            assert self._proc.returncode == 0, self._err.read_text()[-3000:]
            self._result = json.loads(self._out.read_text().strip().splitlines()[-1])
        return self._result

    def stop(self) -> None:
        if self._proc.poll() is None:  # a failed test: never leave it training
            self._proc.kill()
        self._proc.wait(timeout=PROCESS_TIMEOUT)


def _salary_config(distribution: str) -> dict:
    """The shipped salary config for ``distribution``, two epochs."""
    config = yaml.safe_load((ROOT / "configs" / "salary_linear.yaml").read_text())
    config["data"]["path"] = str(ROOT / "data" / "salaries.csv")
    config["training"].update(epochs=2, distribution=distribution)
    config["training"].pop("steps", None)  # a fixed epoch count sets the length itself
    return config


@pytest.fixture(scope="module")
def two_cpus(tmp_path_factory):
    """One process on 2 logical CPUs (logical devices are set before TensorFlow starts) trains
    what both tests below need: the linear data on one device and mirrored, and the salary
    config mirrored. One process: TensorFlow takes about 8 s to start."""
    tmp_path = tmp_path_factory.mktemp("two-cpus")
    csv = tmp_path / "linear.csv"
    make_linear_frame(rows=3000).to_csv(csv, index=False)
    # Few epochs of many steps: under MirroredStrategy each epoch costs about 1.5 s of its own.
    settings = {"epochs": 8, "batch_size": 64, "early_stopping": None}
    settings["optimizer"] = {"learning_rate": 0.05}
    paths = {}
    for kind in ("none", "mirrored"):
        data = config_dict(str(csv), distribution=kind, **settings)
        paths[kind] = str(write_yaml(tmp_path / f"{kind}.yaml", data))
    paths["salary"] = str(write_yaml(tmp_path / "salary.yaml", _salary_config("mirrored")))
    started = _Python(
        f"""
        import json
        from builder.distribute import split_cpu, strategy_for
        split_cpu(2)  # before TensorFlow starts
        import builder
        runs = {{k: builder.train(p, runs_dir={str(tmp_path / "runs")!r})
                for k, p in {paths!r}.items()}}
        print(json.dumps({{
            "replicas": strategy_for(runs["mirrored"].config).num_replicas_in_sync,
            "mse": {{k: r.metrics["test"]["mse"] for k, r in runs.items()}},
            "lsq": runs["none"].metrics["baselines"]["least_squares"]["mse"],
            "strategy": runs["mirrored"].manifest["distribution"]["strategy"],
        }}))
        """,
        tmp_path,
    )
    yield started
    started.stop()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_local_workers_train_the_salary_config_and_the_chief_writes(tmp_path, two_cpus):
    path = write_yaml(tmp_path / "salary_multi_worker.yaml", _salary_config("multi_worker"))
    runs_dir = tmp_path / "runs"
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    workers = []
    for index in range(2):
        spec = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "builder", "train", str(path), "--runs-dir", str(runs_dir)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": json.dumps(spec)},
            )
        )
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=WORKER_TIMEOUT_S))
    finally:
        for worker in workers:  # a bounded run: never leave a worker waiting on its peer
            if worker.poll() is None:
                worker.kill()
                worker.communicate(timeout=PROCESS_TIMEOUT)
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr[-3000:]
    assert "run directory: none on this worker" in outputs[1][0]

    (run_dir,) = runs_dir.glob("salary_linear/*")  # one run directory, from the chief
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["epochs_run"] == 2
    assert manifest["distribution"] == {
        "strategy": "multi_worker",
        "workers": 2,
        "task": {"type": "worker", "index": 0},
    }
    assert f"run directory: {run_dir}" in outputs[0][0]
    assert (run_dir / "model.keras").exists()
    chief_mse = json.loads((run_dir / "metrics.json").read_text())["test"]["mse"]

    # The same config on 2 logical CPUs of one process computes the same steps.
    salary_mirrored = two_cpus.result()["mse"]["salary"]
    assert salary_mirrored == pytest.approx(chief_mse, rel=WORKERS_VS_MIRRORED_REL)


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_one_device(two_cpus):
    result = two_cpus.result()
    assert result["replicas"] == 2 and result["strategy"] == "mirrored"
    single, mirrored = result["mse"]["none"], result["mse"]["mirrored"]
    assert mirrored == pytest.approx(single, rel=MIRRORED_REL)
    assert mirrored == pytest.approx(result["lsq"], rel=MIRRORED_REL)  # both trained
