"""How closely each export format reproduces the .keras model: README's export tolerances.

Trains every shipped config that has no search space (in one process, with the shipped settings),
exports it as ONNX, SavedModel and LiteRT with ``builder.export`` and records what the export's
check measured on the run's test rows (plus the rows with every categorical value unseen): the
largest absolute and relative difference (``builder.export``'s rule), the time the export and its
check took, and the file's size. The tolerances are lifted for the measurement, so that a format
over its tolerance is measured rather than refused.

    python bench/bench_export.py
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

OUTPUTS = {"onnx": "model.onnx", "saved_model": "saved_model", "litert": "model.tflite"}


def size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(config: Path, folder: Path) -> list[dict]:
    import builder
    from builder import export

    run = builder.train(config, runs_dir=folder / "runs")
    found = []
    for fmt, name in OUTPUTS.items():
        output = folder / f"{run.config.name}-{name}"
        start = time.perf_counter()
        result = export.export(run, fmt, output)
        seconds = time.perf_counter() - start
        check = result["check"]
        found.append(
            {
                "config": config.name,
                "format": fmt,
                "rows": check["rows"],
                "unseen_rows": check["unseen_rows"],
                "max_abs_diff": check["max_abs_diff"],
                "max_rel_diff": check["max_rel_diff"],
                "scale": check["scale"],
                "seconds": seconds,
                "bytes": size(output),
            }
        )
        print(found[-1], file=sys.stderr, flush=True)
    return found


def main() -> None:
    from builder import export

    tolerances = dict(export.RTOL)
    for fmt in export.RTOL:  # measure, never refuse
        export.RTOL[fmt] = math.inf
    configs = [
        p
        for p in sorted((_common.ROOT / "configs").glob("*.yaml"))
        if "search:" not in p.read_text(encoding="utf-8")
    ]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in configs:
            results.extend(measure(path, Path(tmp)))
    rows = [
        [
            r["config"],
            r["format"],
            f"{r['rows'] + r['unseen_rows']:,}",
            f"{r['max_abs_diff']:.3g}",
            f"{r['max_rel_diff']:.3g}",
            f"{r['seconds']:.2f} s",
            f"{r['bytes']:,}",
        ]
        for r in results
    ]
    print(
        _common.table(
            ["config", "format", "rows", "max |diff|", "max rel diff", "export+check", "bytes"],
            rows,
        )
    )
    worst = {fmt: max(r["max_rel_diff"] for r in results if r["format"] == fmt) for fmt in OUTPUTS}
    print(f"largest relative difference by format: {worst}; tolerances: {tolerances}")
    path = _common.write_results(
        "export", {"results": results, "worst": worst, "tolerances": tolerances}
    )
    print(f"-> {path.relative_to(_common.ROOT)}")


if __name__ == "__main__":
    main()
