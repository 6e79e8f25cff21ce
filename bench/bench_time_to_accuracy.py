"""Bench 1: time to accuracy of the salary model with no hidden layer.

builder: ``builder.train("configs/salary_linear.yaml")`` with its shipped defaults, the whole call
(read, split, fit every configured epoch, score, write the run directory), timed after imports.
Reference: ``bench/reference_linear.py``, the plain Keras script of a careful tutorial reader,
stopped at the first epoch whose test MSE is within 1% of exact least squares.
Both use the same rows (data/salaries.csv, the same seeded 70/15/15 split) and are scored against
least squares fitted on their training rows. Runs alternate; the table shows medians.

    python bench/bench_time_to_accuracy.py [--runs 5] [--set training.epochs=30 ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

CONFIG = _common.ROOT / "configs" / "salary_linear.yaml"
CSV = _common.ROOT / "data" / "salaries.csv"
TOLERANCE = 0.01


def _least_squares_test_mse(csv: Path) -> float:
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(_common.BENCH))
    from reference_linear import FEATURES, TARGET, split

    frame = pd.read_csv(csv)
    x = frame[FEATURES].to_numpy(np.float64)
    y = frame[TARGET].to_numpy(np.float64)
    train, _, test = split(len(frame))
    design = np.hstack([x[train], np.ones((len(train), 1))])
    solution, *_ = np.linalg.lstsq(design, y[train], rcond=None)
    pred = x[test] @ solution[:-1] + solution[-1]
    return float(np.mean((pred - y[test]) ** 2))


def child_reference() -> dict:
    import reference_linear

    return reference_linear.run(str(CSV), _least_squares_test_mse(CSV), tolerance=TOLERANCE)


def child_builder(assignments: list[str]) -> dict:
    import keras  # noqa: F401  (imports happen before the clock starts, as for the reference)
    import yaml

    import builder.model  # noqa: F401
    import builder.training
    from builder.config import validate_config

    raw = _common.set_values(yaml.safe_load(CONFIG.read_text()), assignments)
    config = validate_config(raw, source=CONFIG)
    with tempfile.TemporaryDirectory() as runs_dir:
        started = time.perf_counter()
        run = builder.training.train(config, runs_dir=runs_dir)
        seconds = time.perf_counter() - started
    from builder.inspection import raw_equation

    lsq = run.metrics["baselines"]["least_squares"]
    ratio = run.metrics["test"]["mse"] / lsq["mse"]
    coefficients, _ = raw_equation(run.model, list(config.data.features))
    return {
        "seconds": seconds,
        "fit_seconds": run.metrics["timings"]["fit_seconds"],
        "epochs": len(run.history),
        "mse_ratio": ratio,
        "reached": ratio <= 1 + TOLERANCE,
        # The largest relative gap between a learned raw-unit coefficient and least squares'.
        "max_coefficient_gap": max(
            abs(coefficients[name] / value - 1) for name, value in lsq["coefficients"].items()
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], help="builder config override")
    parser.add_argument("--child", choices=["builder", "reference"])
    parser.add_argument(
        "--builder-only", action="store_true", help="skip the reference (to compare settings)"
    )
    args = parser.parse_args()
    if args.child == "reference":
        _common.emit(child_reference())
        return
    if args.child == "builder":
        _common.emit(child_builder(args.set))
        return

    who_runs = ("builder",) if args.builder_only else ("builder", "reference")
    if not args.builder_only:
        _common.check_sklearn()
    me = str(Path(__file__).relative_to(_common.ROOT))
    sets = [f"--set={s}" for s in args.set]
    runs: dict[str, list[dict]] = {who: [] for who in who_runs}
    for i in range(args.runs):
        for who in who_runs:
            result = _common.run_child([me, "--child", who, *sets], sklearn=who == "reference")
            runs[who].append(result)
            print(f"run {i + 1} {who}: {result}", file=sys.stderr, flush=True)
    summary = {}
    for who, results in runs.items():
        summary[who] = {
            "median_seconds": _common.median([r["seconds"] for r in results]),
            "median_epochs": _common.median([r["epochs"] for r in results]),
            "median_mse_ratio": _common.median([r["mse_ratio"] for r in results]),
            "all_reached": all(r["reached"] for r in results),
        }
    gaps = [r["max_coefficient_gap"] for r in runs["builder"]]
    summary["builder"]["max_coefficient_gap"] = max(gaps)
    if args.builder_only:
        rows = [[" ".join(args.set) or "shipped", f"{summary['builder']['median_seconds']:.2f} s"]]
        rows[0] += [f"{summary['builder']['median_mse_ratio']:.5f}"]
        rows[0] += [f"{100 * summary['builder']['max_coefficient_gap']:.2f}%"]
        print(_common.table(["overrides", "time", "test MSE / lsq", "max coefficient gap"], rows))
        return
    speedup = summary["reference"]["median_seconds"] / summary["builder"]["median_seconds"]
    path = _common.write_results(
        "time_to_accuracy",
        {
            "goal": "builder's shipped defaults at least 5x faster than the reference",
            "tolerance": TOLERANCE,
            "overrides": args.set,
            "summary": summary,
            "speedup": speedup,
            "runs": runs,
        },
    )
    rows = [
        [
            who,
            f"{s['median_seconds']:.2f} s",
            f"{s['median_epochs']:g}",
            f"{s['median_mse_ratio']:.4f}",
            "yes" if s["all_reached"] else "NO",
        ]
        for who, s in summary.items()
    ]
    print(_common.table(["", "time (median)", "epochs", "test MSE / lsq", "within 1%"], rows))
    gap = summary["builder"]["max_coefficient_gap"]
    print(f"builder's coefficients within {100 * gap:.2f}% of least squares")
    print(f"speedup (reference / builder): {speedup:.1f}x   -> {path.relative_to(_common.ROOT)}")


if __name__ == "__main__":
    main()
