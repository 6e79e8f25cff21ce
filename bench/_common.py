"""Shared plumbing for the benchmarks: child processes, medians, result files, tables.

Every measured case runs in a fresh child process (``python <bench> --child ...``) that prints
one JSON line last; timings are taken inside the child after its imports. Results go to
``bench/results/<name>.json``; generated CSVs and the reference's scikit-learn to ``bench/_data``
(gitignored).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
DATA = BENCH / "_data"
# scikit-learn for the reference scripts only: installed here rather than into builder's
# environment, because `import keras` imports scikit-learn whenever it is installed (+1.5-2.5 s to
# every TensorFlow command). `pip install --target bench/_data/deps --no-deps scikit-learn scipy
# joblib threadpoolctl` (bench/README.md).
DEPS = DATA / "deps"
PYTHON = sys.executable


def child_env(*, sklearn: bool = False, extra_path: Path | None = None) -> dict[str, str]:
    """The environment of a measured child: TensorFlow quiet, the same for builder and reference.

    Args:
        sklearn: put ``bench/_data/deps`` on the path (reference scripts).
        extra_path: another folder of packages installed beside the benchmarks, for this child.
    """
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    folders = [ROOT, DEPS if sklearn else None, extra_path]
    env["PYTHONPATH"] = os.pathsep.join(
        [str(p) for p in folders if p] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    return env


def check_sklearn() -> None:
    """Exit with instructions when the reference scripts cannot import scikit-learn."""
    code = "import sklearn"
    done = subprocess.run([PYTHON, "-c", code], env=child_env(sklearn=True), capture_output=True)
    if done.returncode != 0:
        sys.exit(
            "The reference script needs scikit-learn. Install it next to the benchmarks, not "
            "into builder's environment:\n"
            f"  {PYTHON} -m pip install --target {DEPS} scikit-learn && "
            f"rm -rf {DEPS}/numpy*"
        )


def run_child(
    args: list[str],
    *,
    sklearn: bool = False,
    extra_path: Path | None = None,
    timeout: float = 1800,
) -> dict[str, Any]:
    """Run ``python ARGS`` and return the JSON object it printed last."""
    done = subprocess.run(
        [PYTHON, *args],
        env=child_env(sklearn=sklearn, extra_path=extra_path),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.splitlines()[-15:])
        raise RuntimeError(f"child {args} failed ({done.returncode}):\n{tail}")
    return json.loads(lines[-1])


def emit(result: dict[str, Any]) -> None:
    """Print a child's result as the last line of its output."""
    print(json.dumps(result), flush=True)


def median(values: list[float]) -> float:
    """The median (the benchmarks' summary statistic)."""
    return float(statistics.median(values))


def versions(*extra: str) -> dict[str, str]:
    """Versions of what the benchmarks measure, read without importing TensorFlow.

    Args:
        extra: more distributions to name where installed (a bench's backends, say).
    """
    out = {"python": platform.python_version()}
    for name in ("tensorflow-cpu", "tensorflow", "keras", "numpy", "pandas", "builder", *extra):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` with the machine, versions and command recorded."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    record = {
        "benchmark": name,
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_end": os.getloadavg(),
        },
        "versions": versions(),
        **payload,
    }
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table (what bench/README.md shows)."""
    cells = [[str(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def salary_csv(rows: int) -> Path:
    """``bench/_data/salaries_<rows>.csv``, generated (chunked, deterministic) when missing."""
    from builder.salary_data import write_salaries

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"salaries_{rows}.csv"
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr, flush=True)
        partial = path.with_suffix(".partial")
        write_salaries(partial, rows=rows)
        partial.replace(path)
    return path


def set_values(raw: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a config dict."""
    import yaml

    for item in assignments:
        key, _, value = item.partition("=")
        node = raw
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return raw


def epoch_timer():
    """A Keras callback that times ``fit`` (``seconds``) and each epoch (``epochs``)."""
    import keras

    class Timer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.epochs: list[float] = []
            self.started = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(time.perf_counter() - self.epoch_started)

        def on_train_end(self, logs=None):
            self.seconds = time.perf_counter() - self.started

    return Timer()
