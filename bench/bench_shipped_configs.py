"""What the shipped configs reach on the shipped data: README's table.

Trains every config in configs/ that has no search space, in one process (imports once), with the
shipped settings, and records test metrics against the two baselines, the epochs (resolved from
``epochs: auto``), what early stopping did and the fit time.

    python bench/bench_shipped_configs.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402


def measure(path: Path) -> dict:
    import builder
    from builder.inspection import raw_equation

    with tempfile.TemporaryDirectory() as runs_dir:
        run = builder.train(path, runs_dir=runs_dir)
    m = run.metrics
    out = {
        "config": path.name,
        "fit_seconds": m["timings"]["fit_seconds"],
        "epochs": m["epochs"],
        "epochs_run": m["epochs_run"],
        "early_stopping": m["early_stopping"],
        "warnings": m["warnings"],
        "test": m["test"],
    }
    if m["task"] == "regression":
        lsq = m["baselines"]["least_squares"]
        out["mse_ratio"] = m["test"]["mse"] / lsq["mse"]
        if not run.config.model.layers:
            learned, _ = raw_equation(run.model, list(run.config.data.feature_names))
            gaps = [abs(learned[k] / v - 1) for k, v in lsq["coefficients"].items()]
            out["max_coefficient_gap"] = max(gaps)
    else:
        out["majority_accuracy"] = m["baselines"]["majority_class"]["accuracy"]
        out["logistic_accuracy"] = m["baselines"]["logistic"]["accuracy"]
    return out


def main() -> None:
    configs = [
        p
        for p in sorted((_common.ROOT / "configs").glob("*.yaml"))
        if "search:" not in p.read_text(encoding="utf-8")
    ]
    results = []
    for path in configs:
        result = measure(path)
        results.append(result)
        print(result, file=sys.stderr, flush=True)
    rows = []
    for r in results:
        score = (
            f"{r['mse_ratio']:.5f}x"
            if "mse_ratio" in r
            else f"accuracy {r['test']['accuracy']:.3f} (majority {r['majority_accuracy']:.2f}, "
            f"logistic {r['logistic_accuracy']:.3f})"
        )
        stop = r["early_stopping"] or {}
        ran = f"{r['epochs_run']} of {r['epochs']}"
        if stop.get("stopped_epoch"):
            ran += f" (stopped; epoch {stop['restored_epoch']} restored)"
        rows.append([r["config"], score, ran, f"{r['fit_seconds']:.2f} s"])
    print(_common.table(["config", "test MSE / lsq", "epochs", "fit"], rows))
    path = _common.write_results("shipped_configs", {"results": results})
    print(f"-> {path.relative_to(_common.ROOT)}")


if __name__ == "__main__":
    main()
