"""Peak memory of ``builder predict`` and ``builder evaluate`` on 1M and 10M-row salary CSVs.

Both read their CSV in chunks, so peak memory should not grow with the file. One trained run of
``configs/salary_linear.yaml`` (10,000 shipped rows, 2 epochs), then each command in a fresh
process per file and run; peak RSS from ``wait4``. The CSVs are the ones ``bench_scale.py``
generates under bench/_data (made here if missing).

    python bench/bench_predict_memory.py [--runs 1]
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

SIZES = (1_000_000, 10_000_000)
BUILDER = str(Path(sys.executable).parent / "builder")


def _measure(command: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one command in a fresh process."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        env=_common.child_env(),
        cwd=_common.ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command} failed:\n{stderr}")
    return seconds, usage.ru_maxrss / 1024  # Linux: kB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    csvs = {rows: _common.salary_csv(rows) for rows in SIZES}
    work = Path(tempfile.mkdtemp(prefix="bench_predict_", dir=_common.DATA))
    try:
        train = [BUILDER, "train", "configs/salary_linear.yaml", "--epochs", "2"]
        subprocess.run(
            [*train, "--runs-dir", str(work / "runs")],
            env=_common.child_env(),
            cwd=_common.ROOT,
            check=True,
            capture_output=True,
        )
        (run,) = (work / "runs" / "salary_linear").iterdir()
        samples: dict[str, list[tuple[float, float]]] = {}
        for _ in range(args.runs):
            for rows, csv in csvs.items():
                out = work / "predictions.csv"
                predict = [BUILDER, "predict", str(run), "--data", str(csv), "-o", str(out)]
                samples.setdefault(f"predict {rows}", []).append(_measure([*predict, "--force"]))
                out.unlink()
                evaluate = [BUILDER, "evaluate", str(run), "--data", str(csv), "--json"]
                samples.setdefault(f"evaluate {rows}", []).append(_measure(evaluate))
                print(
                    f"{rows}: {samples[f'predict {rows}'][-1]}, {samples[f'evaluate {rows}'][-1]}"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        name: {
            "median_seconds": _common.median([s for s, _ in values]),
            "median_peak_rss_mb": _common.median([m for _, m in values]),
        }
        for name, values in samples.items()
    }
    growth = {
        command: summary[f"{command} {SIZES[1]}"]["median_peak_rss_mb"]
        / summary[f"{command} {SIZES[0]}"]["median_peak_rss_mb"]
        for command in ("predict", "evaluate")
    }
    path = _common.write_results(
        "predict_memory",
        {
            "runs": args.runs,
            "summary": summary,
            "peak_10M_over_1M": growth,
            "samples": samples,
            "load_average_at_end": os.getloadavg(),
        },
    )
    rows = []
    for name, s in summary.items():
        command, size = name.split()
        rss, seconds = s["median_peak_rss_mb"], s["median_seconds"]
        rows.append([f"`builder {command}`", f"{int(size):,}", f"{rss:.0f} MB", f"{seconds:.1f} s"])
    print(_common.table(["command", "rows", "peak RSS", "time"], rows))
    print(f"peak 10M / 1M: predict {growth['predict']:.2f}x, evaluate {growth['evaluate']:.2f}x")
    print(f"-> {path.relative_to(_common.ROOT)}")


if __name__ == "__main__":
    main()
