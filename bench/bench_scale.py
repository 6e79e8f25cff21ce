"""Bench 4: CSVs larger than memory. Peak memory and rows per second, streaming against in memory.

Generated salary CSVs (``builder.salary_data.write_salaries``, into bench/_data, never committed)
of 1 and 10 million rows. Each case is one ``builder.training.train`` call of
``configs/salary_linear.yaml`` for one epoch, in a fresh process: ``data.streaming: true`` on both
files, and the in-memory path (``streaming: false``) on the 1M file. Peak memory is the process's
peak resident set (``ru_maxrss``: TensorFlow itself, the data, everything), read at the end.
Rows per second: training rows / ``fit`` seconds (the epoch, including its validation pass), and
all rows / the whole call (statistics pass, fit, test scoring, run directory).

    python bench/bench_scale.py [--runs 1] [--sizes 1000000,10000000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

CONFIG = _common.ROOT / "configs" / "salary_linear.yaml"
GOALS = {
    "memory_growth": 1.2,  # peak at 10M within 1.2x of the peak at 1M
    "peak_mb": 1536,  # and under 1.5 GB
    "throughput": 0.5,  # streaming rows/s at least half the in-memory path's on the 1M file
}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def child(csv: str, streaming: bool) -> dict:
    import keras  # noqa: F401
    import yaml

    import builder.model  # noqa: F401
    import builder.training
    from builder.config import validate_config

    after_imports = _peak_mb()
    raw = yaml.safe_load(CONFIG.read_text())
    raw["data"]["path"] = csv
    raw["data"]["streaming"] = streaming
    raw["training"]["epochs"] = 1
    raw["training"].pop("steps", None)
    config = validate_config(raw, source=CONFIG)
    with tempfile.TemporaryDirectory() as runs_dir:
        started = time.perf_counter()
        run = builder.training.train(config, runs_dir=runs_dir)
        seconds = time.perf_counter() - started
    rows = run.manifest["data"]["rows"]
    fit_seconds = run.metrics["timings"]["fit_seconds"]
    lsq = run.metrics["baselines"]["least_squares"]
    return {
        "streaming": streaming,
        "rows": rows,
        "seconds": seconds,
        "fit_seconds": fit_seconds,
        "train_rows_per_second": rows["train"] / fit_seconds,
        "rows_per_second": sum(rows.values()) / seconds,
        "peak_rss_mb": _peak_mb(),
        "rss_after_imports_mb": after_imports,
        "test_mse_over_least_squares": run.metrics["test"]["mse"] / lsq["mse"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--csv")
    parser.add_argument("--streaming", type=int)
    args = parser.parse_args()
    if args.child:
        _common.emit(child(args.csv, bool(args.streaming)))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    small = min(sizes)
    cases = [(size, True) for size in sizes] + [(small, False)]
    me = str(Path(__file__).relative_to(_common.ROOT))
    results: dict[str, list[dict]] = {}
    for i in range(args.runs):
        for size, streaming in cases:
            csv = _common.salary_csv(size)
            name = f"{size}/{'streaming' if streaming else 'in memory'}"
            result = _common.run_child(
                [me, "--child", f"--csv={csv}", f"--streaming={int(streaming)}"], timeout=3600
            )
            result["file_mb"] = csv.stat().st_size / 2**20
            results.setdefault(name, []).append(result)
            print(
                f"run {i + 1} {name}: peak {result['peak_rss_mb']:.0f} MB, "
                f"{result['train_rows_per_second']:,.0f} train rows/s, {result['seconds']:.1f} s",
                file=sys.stderr,
                flush=True,
            )

    def med(name: str, key: str) -> float:
        return _common.median([r[key] for r in results[name]])

    big = max(sizes)
    stream_small, stream_big = f"{small}/streaming", f"{big}/streaming"
    memory_small = f"{small}/in memory"
    growth = med(stream_big, "peak_rss_mb") / med(stream_small, "peak_rss_mb")
    # Paired run by run (the two cases ran back to back), so a burst of load elsewhere on the
    # machine does not land on one side only; the median of the pairs is the figure.
    pairs = [
        s["train_rows_per_second"] / m["train_rows_per_second"]
        for s, m in zip(results[stream_small], results[memory_small], strict=True)
    ]
    throughput = _common.median(pairs)
    checks = {
        "memory_growth_10M_over_1M": growth,
        "memory_growth_ok": growth <= GOALS["memory_growth"],
        "peak_ok": max(med(n, "peak_rss_mb") for n in (stream_small, stream_big))
        < GOALS["peak_mb"],
        "streaming_over_in_memory_throughput": throughput,
        "streaming_over_in_memory_throughput_per_run": pairs,
        "throughput_ok": throughput >= GOALS["throughput"],
    }
    path = _common.write_results(
        "scale",
        {
            "goals": GOALS,
            "model": "configs/salary_linear.yaml, 1 epoch",
            "runs_per_case": args.runs,
            "checks": checks,
            "summary": {
                name: {
                    key: med(name, key)
                    for key in (
                        "peak_rss_mb",
                        "rss_after_imports_mb",
                        "train_rows_per_second",
                        "rows_per_second",
                        "seconds",
                        "fit_seconds",
                        "file_mb",
                        "test_mse_over_least_squares",
                    )
                }
                for name in results
            },
            "runs": results,
        },
    )
    rows = [
        [
            name,
            f"{med(name, 'file_mb'):.0f} MB",
            f"{med(name, 'peak_rss_mb'):.0f} MB",
            f"{med(name, 'peak_rss_mb') - med(name, 'rss_after_imports_mb'):.0f} MB",
            f"{med(name, 'train_rows_per_second'):,.0f}",
            f"{med(name, 'rows_per_second'):,.0f}",
            f"{med(name, 'seconds'):.1f} s",
        ]
        for name in results
    ]
    headers = ["rows/path", "file", "peak RSS", "over imports", "train rows/s (fit)"]
    print(_common.table([*headers, "rows/s (whole call)", "whole call"], rows))
    print(
        f"peak 10M / 1M: {growth:.2f}x; streaming / in-memory rows/s at 1M: {throughput:.2f}x   "
        f"-> {path.relative_to(_common.ROOT)}"
    )


if __name__ == "__main__":
    main()
