"""Bench 2: training throughput of the salary MLP, builder against the same model by hand.

builder: ``builder.training.fit`` on ``configs/salary_mlp.yaml`` (in memory, shipped training
defaults; early stopping off so both run every epoch). Reference: ``bench/reference_mlp.py``, the
same layers, optimizer, rows, epochs and batch size, with Keras's defaults. Throughput is
training rows x epochs / the wall time of ``model.fit`` (first epoch, with its tracing, and the
validation pass of every epoch included), and separately for epochs 2 onward (steady state).
Runs alternate; the table shows medians.

    python bench/bench_throughput.py [--rows 1000000] [--epochs 3] [--runs 5]
                                     [--set training.steps_per_execution=1 ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

CONFIG = _common.ROOT / "configs" / "salary_mlp.yaml"


def _result(rows: int, epochs: int, timer) -> dict:
    steady = timer.epochs[1:] or timer.epochs
    return {
        "train_rows": rows,
        "epochs": epochs,
        "fit_seconds": timer.seconds,
        "epoch_seconds": timer.epochs,
        "samples_per_second": rows * epochs / timer.seconds,
        "steady_samples_per_second": rows / statistics.median(steady),
    }


def child_reference(csv: str, epochs: int, batch_size: int) -> dict:
    import reference_mlp

    timer = _common.epoch_timer()
    rows = reference_mlp.run(csv, epochs, batch_size, [timer])
    return _result(rows, epochs, timer)


def child_builder(
    csv: str, epochs: int, batch_size: int, assignments: list[str], jit_compile: bool = False
) -> dict:
    import yaml

    import builder.training
    from builder.config import validate_config

    if jit_compile:  # not a config key: measured here to choose the default (bench/README.md)
        compile_model = builder.training.compile_model

        def compile_with_xla(model, config, train_rows):
            compile_model(model, config, train_rows)
            model.jit_compile = True

        builder.training.compile_model = compile_with_xla

    raw = yaml.safe_load(CONFIG.read_text())
    raw["data"]["path"] = csv
    raw["data"]["streaming"] = False
    raw["training"].update(epochs=epochs, batch_size=batch_size, early_stopping=None)
    raw["training"].pop("steps", None)  # a fixed epoch count, the same as the reference's
    config = validate_config(_common.set_values(raw, assignments), source=CONFIG)
    splits = builder.training.load_data(config, config.data_path())
    timer = _common.epoch_timer()
    builder.training.fit(config, splits, extra_callbacks=[timer])
    return _result(len(splits.train), epochs, timer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="0: data/salaries.csv")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], help="builder config override")
    parser.add_argument("--jit-compile", action="store_true", help="builder with XLA")
    parser.add_argument("--builder-only", action="store_true", help="skip the reference")
    parser.add_argument("--child", choices=["builder", "reference"])
    parser.add_argument("--csv")
    args = parser.parse_args()
    if args.child == "reference":
        _common.emit(child_reference(args.csv, args.epochs, args.batch_size))
        return
    if args.child == "builder":
        _common.emit(
            child_builder(args.csv, args.epochs, args.batch_size, args.set, args.jit_compile)
        )
        return

    csv = (
        _common.ROOT / "data" / "salaries.csv" if args.rows == 0 else _common.salary_csv(args.rows)
    )
    me = str(Path(__file__).relative_to(_common.ROOT))
    common = [f"--csv={csv}", f"--epochs={args.epochs}", f"--batch-size={args.batch_size}"]
    who_runs = ("builder",) if args.builder_only else ("builder", "reference")
    runs: dict[str, list[dict]] = {who: [] for who in who_runs}
    for i in range(args.runs):
        for who in who_runs:
            extra = [f"--set={s}" for s in args.set] if who == "builder" else []
            extra += ["--jit-compile"] if who == "builder" and args.jit_compile else []
            result = _common.run_child([me, "--child", who, *common, *extra])
            runs[who].append(result)
            print(
                f"run {i + 1} {who}: {result['samples_per_second']:,.0f} samples/s "
                f"(steady {result['steady_samples_per_second']:,.0f}), "
                f"fit {result['fit_seconds']:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    summary = {
        who: {
            "median_samples_per_second": _common.median([r["samples_per_second"] for r in results]),
            "median_steady_samples_per_second": _common.median(
                [r["steady_samples_per_second"] for r in results]
            ),
            "median_fit_seconds": _common.median([r["fit_seconds"] for r in results]),
        }
        for who, results in runs.items()
    }
    if args.builder_only:
        s = summary["builder"]
        label = " ".join([*args.set, "jit_compile" if args.jit_compile else ""]).strip()
        print(
            f"builder ({label or 'shipped'}): {s['median_samples_per_second']:,.0f} samples/s, "
            f"steady {s['median_steady_samples_per_second']:,.0f}, "
            f"fit {s['median_fit_seconds']:.1f} s"
        )
        return
    ratio = (
        summary["builder"]["median_samples_per_second"]
        / summary["reference"]["median_samples_per_second"]
    )
    steady_ratio = (
        summary["builder"]["median_steady_samples_per_second"]
        / summary["reference"]["median_steady_samples_per_second"]
    )
    path = _common.write_results(
        f"throughput_{args.rows}" if args.rows else "throughput_shipped",
        {
            "goal": "builder at least 3x the hand-written default's samples per second",
            "csv": str(csv.relative_to(_common.ROOT)),
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "overrides": args.set,
            "summary": summary,
            "ratio": ratio,
            "steady_ratio": steady_ratio,
            "runs": runs,
        },
    )
    rows = [
        [
            who,
            f"{s['median_samples_per_second']:,.0f}",
            f"{s['median_steady_samples_per_second']:,.0f}",
            f"{s['median_fit_seconds']:.1f} s",
        ]
        for who, s in summary.items()
    ]
    print(_common.table(["", "samples/s (fit)", "samples/s (epochs 2+)", "fit time"], rows))
    print(
        f"ratio builder / reference: {ratio:.1f}x (steady {steady_ratio:.1f}x)   "
        f"-> {path.relative_to(_common.ROOT)}"
    )


if __name__ == "__main__":
    main()
