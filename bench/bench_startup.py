"""What scikit-learn's presence costs every ``builder train``: the whole command, with and without.

Keras imports scikit-learn at start whenever it can (for ``keras.wrappers``), so an environment
that has it pays that import in every command that loads TensorFlow. builder's default install
leaves scikit-learn out (it comes with the ``bayesian`` extra, for Keras Tuner's Bayesian search).
This bench runs the README's main job, ``builder train configs/salary_linear.yaml``, in a fresh
process both ways, alternating, in one environment that has scikit-learn: "without" blocks the
import (``sys.modules["sklearn"] = None``, which Keras sees as not installed).

    python bench/bench_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

# The console script's own code path, with the import blocked first when asked.
CHILD = (
    "import sys\n"
    "if sys.argv[1] == 'without':\n    sys.modules['sklearn'] = None\n"
    "from builder.cli_fast import main\n"
    "main(sys.argv[2:])\n"
)


def _run(case: str, runs_dir: str) -> float:
    command = [
        _common.PYTHON,
        "-c",
        CHILD,
        case,
        "train",
        "configs/salary_linear.yaml",
        "--runs-dir",
        runs_dir,
    ]
    started = time.perf_counter()
    subprocess.run(
        command, env=_common.child_env(), cwd=_common.ROOT, check=True, capture_output=True
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    probe = "import sklearn, sys; print(sys.modules['sklearn'].__version__)"
    found = subprocess.run([_common.PYTHON, "-c", probe], capture_output=True, text=True)
    if found.returncode != 0:
        sys.exit("This bench needs scikit-learn in this environment: pip install -e '.[bayesian]'")
    cases = ("with", "without")
    samples: dict[str, list[float]] = {case: [] for case in cases}
    _common.DATA.mkdir(parents=True, exist_ok=True)
    runs_dir = tempfile.mkdtemp(prefix="bench_startup_", dir=_common.DATA)
    try:
        for case in cases:  # warm-up: bytecode and page cache
            _run(case, runs_dir)
        for _ in range(args.runs):
            for case in cases:
                samples[case].append(_run(case, runs_dir))
    finally:
        shutil.rmtree(runs_dir, ignore_errors=True)
    with_, without = (_common.median(samples[c]) for c in cases)
    path = _common.write_results(
        "startup",
        {
            "command": "builder train configs/salary_linear.yaml (whole process)",
            "runs": args.runs,
            "scikit_learn": found.stdout.strip(),
            "median_seconds": {"with_scikit_learn": with_, "without_scikit_learn": without},
            "saved_seconds": with_ - without,
            "ratio": with_ / without,
            "samples": samples,
            "load_average_at_start": os.getloadavg(),
        },
    )
    rows = [
        ["scikit-learn importable", f"{with_:.2f} s"],
        ["scikit-learn absent", f"{without:.2f} s"],
        ["saved", f"{with_ - without:.2f} s ({with_ / without:.2f}x)"],
    ]
    print(_common.table(["`builder train configs/salary_linear.yaml`", "wall (median)"], rows))
    print(f"-> {path.relative_to(_common.ROOT)}")


if __name__ == "__main__":
    main()
