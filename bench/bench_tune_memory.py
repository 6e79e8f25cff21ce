"""Resident memory across the trials of one ``builder tune`` search.

Runs a random search of 20 trials (0-3 hidden layers, units, activation, learning rate, batch
size; 3 epochs each) on generated linear data and records the process's resident set size after
every trial. ``--no-clear`` keeps each trial's Keras session (``keras.backend.clear_session``
made a no-op) to show what clearing it buys.

Usage::

    python bench/bench_tune_memory.py [--trials 20] [--no-clear]

Prints one JSON line: RSS in MB after each trial, and the growth from trial 5 to the last
(the first trials also pay for TensorFlow's one-time allocations).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import config_dict, make_linear_frame, write_yaml  # noqa: E402


def rss_mb() -> float:
    """Resident set size of this process (Linux ``/proc``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--no-clear", action="store_true", help="keep every trial's session")
    args = parser.parse_args()

    import keras

    if args.no_clear:
        keras.backend.clear_session = lambda *a, **k: None

    from builder.tuning import tune

    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "data.csv"
        make_linear_frame(rows=3000).to_csv(csv, index=False)
        config = config_dict(
            str(csv),
            epochs=3,
            batch_size={"search": "choice", "values": [64, 128, 256]},
            optimizer={
                "learning_rate": {"search": "float", "min": 1e-3, "max": 0.1, "sampling": "log"}
            },
        )
        config["model"] = {
            "hidden": {
                "layers": {"search": "int", "min": 0, "max": 3},
                "units": {"search": "int", "min": 8, "max": 64, "step": 8},
                "activation": {"search": "choice", "values": ["relu", "tanh", "threshold"]},
            }
        }
        config["tune"] = {"tuner": "random", "max_trials": args.trials, "seed": 1}
        path = write_yaml(Path(tmp) / "search.yaml", config)
        after: list[float] = []

        def progress(event) -> None:
            if event.kind == "trial_end":
                after.append(round(rss_mb(), 1))

        started = time.time()
        before = rss_mb()
        result = tune(path, runs_dir=Path(tmp) / "runs", progress=progress)
        base = after[min(4, len(after) - 1)]
        print(
            json.dumps(
                {
                    "trials": len(result.rows),
                    "clear_session": not args.no_clear,
                    "rss_before_mb": round(before, 1),
                    "rss_after_each_trial_mb": after,
                    "growth_trial5_to_last_mb": round(after[-1] - base, 1),
                    "growth_per_trial_mb": round((after[-1] - base) / max(1, len(after) - 5), 2),
                    "seconds": round(time.time() - started, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
