"""Text (categorical) feature columns: what they cost on the data path and in training.

The jobs table (``builder.salary_data.generate_jobs``, seed 42) twice, into bench/_data: as
generated, with ``job_title``, ``region`` and ``remote`` as text, and with those three columns
already written as their integer codes (the generator's order, which is also the order of the
vocabularies counted on the training split: most frequent first, so both files give the same
float32 features; the bench checks it).

(a) Data path, 1,000,000 rows: ``Table(...).scan()`` and then ``table.train.x`` (the training
    part as float32), in memory and streamed, each in a fresh process, timed after its imports;
    peak RSS (``ru_maxrss``) at the end. Cases: the text file with its columns undeclared (as
    ``configs/jobs_mlp.yaml`` has them: a type-inference pass, then the vocabulary pass), the
    text file with the three declared categorical (no inference pass), the codes file declared
    numeric (the reference: no inference, no vocabulary), and the codes file undeclared (the
    inference pass alone, on a file of numbers).
(b) Training throughput, 100,000 rows: the ``configs/jobs_mlp.yaml`` model through
    ``builder.training.fit`` for a fixed number of epochs (early stopping off), on the text file
    (``CategoryColumns`` one-hot encodes the codes: 17 inputs to the first Dense) against the
    codes file with every column declared numeric (5 inputs, no encoding layer). Samples/s of
    the epochs after the first (training rows / median epoch time, validation included).
(c) ``data/jobs.csv`` trained briefly with ``builder.training.train`` on TensorFlow; the run's
    ``model.keras`` is loaded in a fresh process (``builder.runs.load_model_file``) and its
    predictions compared with the trained model's in the first process (every row of the file
    plus rows with unknown, out-of-range and NaN codes). Twice: with TensorFlow's oneDNN
    kernels off, as builder sets them when it is imported first (and as training ran), and at
    TensorFlow's default (on), as a script gets that imports keras before builder.

Runs alternate case by case; the tables show medians; the ratios are within one run.

    python bench/bench_text_columns.py [--runs 5] [--train-runs 7] [--epochs 16]
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

MLP = _common.ROOT / "configs" / "jobs_mlp.yaml"
JOBS = _common.ROOT / "data" / "jobs.csv"
NAMES = ("age", "years_worked", "job_title", "region", "remote")
TEXT = ("job_title", "region", "remote")
TARGET = "salary"
DATA_ROWS = 1_000_000
TRAIN_ROWS = 100_000
# case -> (file, feature types: None undeclared); the reference comes first in each run.
DATA_CASES = {
    "codes, declared numeric": ("codes", "numeric"),
    "text, undeclared (as shipped)": ("text", None),
    "text, declared categorical": ("text", "categorical"),
    "codes, undeclared": ("codes", None),
}
REFERENCE = "codes, declared numeric"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _rss_mb() -> float:
    # The resident set now (``ru_maxrss`` is the peak): what the table keeps after its passes.
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def jobs_csvs(rows: int) -> dict[str, Path]:
    """``bench/_data/jobs_<rows>.csv`` and ``jobs_codes_<rows>.csv``, generated when missing."""
    paths = {
        "text": _common.DATA / f"jobs_{rows}.csv",
        "codes": _common.DATA / f"jobs_codes_{rows}.csv",
    }
    if all(path.exists() for path in paths.values()):
        return paths
    import pandas as pd

    from builder import salary_data

    print(f"generating {rows:,}-row jobs CSVs ...", file=sys.stderr, flush=True)
    _common.DATA.mkdir(parents=True, exist_ok=True)
    frame = salary_data.generate_jobs(rows, salary_data.DEFAULT_SEED)
    orders = {
        "job_title": salary_data.JOB_TITLES,
        "region": salary_data.REGIONS,
        "remote": ("no", "yes"),
    }
    coded = frame.copy()
    for name, order in orders.items():
        coded[name] = pd.Index(order).get_indexer(frame[name]) + 1
    for kind, table in (("text", frame), ("codes", coded)):
        partial = paths[kind].with_suffix(".partial")
        table.to_csv(partial, index=False, lineterminator="\n")
        partial.replace(paths[kind])
    return paths


def _features(kind: str | None) -> list:
    from builder.data.columns import NUMERIC, Column

    if kind is None:
        return list(NAMES)
    return [Column(n, kind if n in TEXT else NUMERIC) for n in NAMES]


def child_data(csv: str, file: str, kind: str | None, streamed: bool) -> dict:
    import hashlib

    from builder.data import Table

    after_imports = _peak_mb()
    started = time.perf_counter()
    table = Table(
        csv, _features(kind), TARGET, validation=0.15, test=0.15, seed=42, streamed=streamed
    )
    table.scan()
    scanned = time.perf_counter()
    x = table.train.x
    done = time.perf_counter()
    return {
        "seconds": done - started,
        "scan_seconds": scanned - started,
        "train_x_seconds": done - scanned,
        "train_rows": int(x.shape[0]),
        "x_sha256": hashlib.sha256(x.tobytes()).hexdigest()[:16],
        "kinds": table.kinds,
        "peak_rss_mb": _peak_mb(),
        "rss_at_end_mb": _rss_mb(),
        "rss_after_imports_mb": after_imports,
    }


def _timer():
    import keras

    class Timer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.epochs: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(time.perf_counter() - self.epoch_started)

    return Timer()


def _mlp_raw(csv: str, features: list) -> dict:
    import yaml

    raw = yaml.safe_load(MLP.read_text())
    raw["data"]["path"] = csv
    raw["data"]["features"] = features
    raw["data"]["streaming"] = False
    return raw


def child_train(csv: str, file: str, epochs: int) -> dict:
    import statistics

    import builder.training
    from builder.config import validate_config

    features = list(NAMES) if file == "text" else [{"name": n, "type": "numeric"} for n in NAMES]
    raw = _mlp_raw(csv, features)
    raw["training"].update(epochs=epochs, early_stopping=None)
    raw["training"].pop("steps", None)  # a fixed epoch count, the same on both sides
    config = validate_config(raw, source=MLP)
    splits = builder.training.load_data(config, config.data_path())
    config = builder.training.resolve_config(config, splits)
    timer = _timer()
    fitted = builder.training.fit(config, splits, extra_callbacks=[timer])
    rows = len(splits.train)
    return {
        "train_rows": rows,
        "epochs": epochs,
        "epoch_seconds": timer.epochs,
        "first_epoch_seconds": timer.epochs[0],
        "steady_samples_per_second": rows / statistics.median(timer.epochs[1:] or timer.epochs),
        # The fastest later epoch: less exposed to other sessions' load on a shared machine.
        "best_samples_per_second": rows / min(timer.epochs[1:] or timer.epochs),
        "first_dense_inputs": _first_dense_inputs(fitted.model),
        "parameters": int(fitted.model.count_params()),
        "layers": [layer.name for layer in fitted.model.layers],
    }


def _first_dense_inputs(model) -> int:
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            return int(layer.kernel.shape[0])
    raise RuntimeError("no Dense layer")


def _probe_rows(splits):
    import numpy as np

    x = np.concatenate([splits.float32(part)[0] for part in ("train", "validation", "test")])
    odd = np.repeat(x[:4], 4, axis=0)
    columns = [NAMES.index(name) for name in TEXT]
    for i, code in enumerate((0.0, 99.0, np.nan, 2.5)):  # unknown, out of range, NaN, fraction
        odd[4 * i : 4 * i + 4, columns] = code
    return np.concatenate([x, odd]).astype(np.float32)


def child_save(out: str) -> dict:
    import numpy as np

    import builder.training
    from builder.config import validate_config

    raw = _mlp_raw(str(JOBS), list(NAMES))
    raw["training"].update(epochs=3)
    raw["training"].pop("steps", None)
    config = validate_config(raw, source=MLP)
    run = builder.training.train(config, runs_dir=out)
    splits = builder.training.load_data(config, config.data_path())
    x = _probe_rows(splits)
    np.save(Path(out) / "x.npy", x)
    np.save(Path(out) / "before.npy", builder.training.predict_array(run.model, x))
    return {
        "model": str(run.path / "model.keras"),
        "layers": [layer.name for layer in run.model.layers],
        "rows": len(x),
    }


def child_reload(out: str, model_path: str, onednn: str) -> dict:
    import os

    if onednn == "default":
        # TensorFlow's own default (oneDNN kernels on, on x86): what a script gets that imports
        # keras before builder, whose package sets TF_ENABLE_ONEDNN_OPTS=0 when imported first.
        os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)
        import keras
    # As TensorFlow saw it when it loaded (builder's package sets it later only if unset).
    onednn_opts = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    import numpy as np

    import builder.training
    from builder.runs import load_model_file

    model = load_model_file(model_path)
    x = np.load(Path(out) / "x.npy")
    before = np.load(Path(out) / "before.npy")
    after = builder.training.predict_array(model, x)
    diff = np.abs(before - after)
    import keras

    return {
        "onednn": onednn,
        "TF_ENABLE_ONEDNN_OPTS_at_tensorflow_import": onednn_opts,
        "backend": keras.backend.backend(),
        "rows": len(x),
        "bitwise_identical": bool(np.array_equal(before, after, equal_nan=True)),
        "max_abs_diff": float(np.nanmax(diff)),
        "max_rel_diff": float(np.nanmax(diff / np.abs(before))),
        "rows_differing": int((diff > 0).sum()),
        "finite": bool(np.isfinite(after).all()),
        "prediction_range": [float(after.min()), float(after.max())],
    }


def _med(results: list[dict], key: str) -> float:
    return _common.median([r[key] for r in results])


def bench_data(me: str, runs: int) -> dict:
    paths = jobs_csvs(DATA_ROWS)
    results: dict[str, list[dict]] = {}
    for i in range(runs):
        for streamed in (False, True):
            for case, (file, kind) in DATA_CASES.items():
                name = f"{'streamed' if streamed else 'in memory'} / {case}"
                args = [me, "--child", "data", f"--csv={paths[file]}", f"--file={file}"]
                args += [f"--kind={kind or ''}", f"--streamed={int(streamed)}"]
                result = _common.run_child(args, timeout=600)
                results.setdefault(name, []).append(result)
                print(
                    f"run {i + 1} {name}: {result['seconds']:.2f} s "
                    f"(scan {result['scan_seconds']:.2f}), peak {result['peak_rss_mb']:.0f} MB",
                    file=sys.stderr,
                    flush=True,
                )
    # One hash per mode (in memory: the seeded permutation; streamed: the hash split).
    hashes = {
        mode: sorted({r["x_sha256"] for n, rs in results.items() if n.startswith(mode) for r in rs})
        for mode in ("in memory", "streamed")
    }
    summary = {}
    for name, rs in results.items():
        mode = name.split(" / ")[0]
        reference = results[f"{mode} / {REFERENCE}"]
        # Paired run by run (the cases ran back to back), the median of the pairs.
        ratios = [r["seconds"] / ref["seconds"] for r, ref in zip(rs, reference, strict=True)]
        summary[name] = {
            "seconds": _med(rs, "seconds"),
            "scan_seconds": _med(rs, "scan_seconds"),
            "train_x_seconds": _med(rs, "train_x_seconds"),
            "peak_rss_mb": _med(rs, "peak_rss_mb"),
            "rss_at_end_mb": _med(rs, "rss_at_end_mb"),
            "rss_after_imports_mb": _med(rs, "rss_after_imports_mb"),
            "over_reference": _common.median(ratios),
            "over_reference_per_run": ratios,
            "train_rows": rs[0]["train_rows"],
            "kinds": rs[0]["kinds"],
        }
    return {
        "rows": DATA_ROWS,
        "files_mb": {k: p.stat().st_size / 2**20 for k, p in paths.items()},
        "same_train_x_everywhere": all(len(h) == 1 for h in hashes.values()),
        "train_x_sha256": hashes,
        "summary": summary,
        "runs": results,
    }


def bench_train(me: str, runs: int, epochs: int) -> dict:
    paths = jobs_csvs(TRAIN_ROWS)
    results: dict[str, list[dict]] = {"text (one-hot)": [], "codes (numeric)": []}
    for i in range(runs):
        for name, file in (("text (one-hot)", "text"), ("codes (numeric)", "codes")):
            args = [me, "--child", "train", f"--csv={paths[file]}", f"--file={file}"]
            result = _common.run_child([*args, f"--epochs={epochs}"], timeout=600)
            results[name].append(result)
            print(
                f"run {i + 1} {name}: steady {result['steady_samples_per_second']:,.0f} "
                f"samples/s, first epoch {result['first_epoch_seconds']:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    text, codes = results["text (one-hot)"], results["codes (numeric)"]
    ratios = [
        t["steady_samples_per_second"] / c["steady_samples_per_second"]
        for t, c in zip(text, codes, strict=True)
    ]
    best_ratios = [
        t["best_samples_per_second"] / c["best_samples_per_second"]
        for t, c in zip(text, codes, strict=True)
    ]
    return {
        "rows": TRAIN_ROWS,
        "epochs": epochs,
        "summary": {
            name: {
                "steady_samples_per_second": _med(rs, "steady_samples_per_second"),
                "best_samples_per_second": _med(rs, "best_samples_per_second"),
                "first_epoch_seconds": _med(rs, "first_epoch_seconds"),
                "first_dense_inputs": rs[0]["first_dense_inputs"],
                "parameters": rs[0]["parameters"],
                "layers": rs[0]["layers"],
                "train_rows": rs[0]["train_rows"],
            }
            for name, rs in results.items()
        },
        "text_over_codes": _common.median(ratios),
        "text_over_codes_per_run": ratios,
        "best_text_over_codes": _common.median(best_ratios),
        "best_text_over_codes_per_run": best_ratios,
        "runs": results,
    }


def bench_reload(me: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        saved = _common.run_child([me, "--child", "save", f"--out={out}"], timeout=600)
        args = [me, "--child", "reload", f"--out={out}", f"--model={saved['model']}"]
        reloaded = {
            onednn: _common.run_child([*args, f"--onednn={onednn}"], timeout=600)
            for onednn in ("off", "default")
        }
    saved["model"] = "<tmp>/" + Path(saved["model"]).name
    return {"saved": saved, "reloaded": reloaded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="data-path runs per case")
    parser.add_argument("--train-runs", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--child", choices=["data", "train", "save", "reload"])
    parser.add_argument("--csv")
    parser.add_argument("--file")
    parser.add_argument("--kind")
    parser.add_argument("--streamed", type=int)
    parser.add_argument("--out")
    parser.add_argument("--model")
    parser.add_argument("--onednn", choices=["off", "default"], default="off")
    args = parser.parse_args()
    if args.child == "data":
        _common.emit(child_data(args.csv, args.file, args.kind or None, bool(args.streamed)))
        return
    if args.child == "train":
        _common.emit(child_train(args.csv, args.file, args.epochs))
        return
    if args.child == "save":
        _common.emit(child_save(args.out))
        return
    if args.child == "reload":
        _common.emit(child_reload(args.out, args.model, args.onednn))
        return

    me = str(Path(__file__).relative_to(_common.ROOT))
    started = time.perf_counter()
    reload = bench_reload(me)
    data = bench_data(me, args.runs)
    train = bench_train(me, args.train_runs, args.epochs)
    path = _common.write_results(
        "text_columns",
        {
            "data_path": data,
            "training": train,
            "reload": reload,
            "wall_seconds": time.perf_counter() - started,
        },
    )
    rows = [
        [
            name,
            f"{s['seconds']:.2f} s",
            f"{s['scan_seconds']:.2f} s",
            f"{s['train_x_seconds']:.2f} s",
            f"{s['over_reference']:.2f}x",
            f"{s['peak_rss_mb']:.0f} MB",
            f"{s['peak_rss_mb'] - s['rss_after_imports_mb']:.0f} MB",
            f"{s['rss_at_end_mb']:.0f} MB",
        ]
        for name, s in data["summary"].items()
    ]
    print(
        _common.table(
            [
                "case",
                "scan + train.x",
                "scan",
                "train.x",
                "/ codes",
                "peak RSS",
                "over imports",
                "RSS at end",
            ],
            rows,
        )
    )
    print(f"same float32 training features in every case: {data['same_train_x_everywhere']}")
    rows = [
        [
            name,
            f"{s['steady_samples_per_second']:,.0f}",
            f"{s['best_samples_per_second']:,.0f}",
            f"{s['first_epoch_seconds']:.2f} s",
            s["first_dense_inputs"],
            s["parameters"],
        ]
        for name, s in train["summary"].items()
    ]
    print(
        _common.table(
            [
                "jobs MLP",
                "samples/s (epochs 2+)",
                "fastest epoch",
                "epoch 1",
                "first Dense inputs",
                "params",
            ],
            rows,
        )
    )
    print(
        f"text / codes throughput: {train['text_over_codes']:.2f}x "
        f"(fastest epochs: {train['best_text_over_codes']:.2f}x)"
    )
    for onednn, r in reload["reloaded"].items():
        print(
            f"reload ({r['backend']}, oneDNN {onednn}, {r['rows']} rows): bitwise identical "
            f"{r['bitwise_identical']}, max abs diff {r['max_abs_diff']:g} "
            f"(relative {r['max_rel_diff']:.1e}, {r['rows_differing']} rows differ)"
        )
    print(f"-> {path.relative_to(_common.ROOT)} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
