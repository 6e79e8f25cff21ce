"""Keras backends: TensorFlow, JAX and PyTorch on builder's jobs, each case a whole process.

Per backend, every case in a fresh process: the main job (``builder train
configs/salary_linear.yaml --backend B``, wall time and peak RSS from outside); the salary MLP's
throughput (``configs/salary_mlp.yaml`` in memory, early stopping off, a fixed epoch count:
training rows x epochs / ``fit`` time, and rows / the median epoch after the first, where JAX and
PyTorch have compiled); one streamed epoch of the linear model over 10M rows (``builder train``
with ``data.streaming: true``, peak RSS); ``builder predict`` on 1M rows with the backend's own
run of the main job. Within every repeat the backends alternate, in an order rotated from repeat
to repeat; the tables show medians and, against TensorFlow, the median of the per-repeat ratios.
Generated CSVs (``builder.salary_data``) and bytecode (``PYTHONPYCACHEPREFIX``, as an install
caches it; one warm-up main job per backend fills it) go to bench/_data.

    python bench/bench_backends.py [--runs 5] [--runs-10m 5] [--backends tensorflow,jax,torch]
                                   [--skip-10m] [--mlp-sizes 0:20,1000000:3]
                                   [--variant torch_1thread=torch:OMP_NUM_THREADS=1 ...]
                                   [--cap torch:stream=1 ...]
                                   [--set-for torch:training.steps_per_execution=1 ...]

JAX keeps its compilations on disk (``builder.backend.jax_cache_settings``); here in a cache of
the bench's own, which the warm-up fills, so the ``jax`` label measures a repeated job. A label
with ``JAX_ENABLE_COMPILATION_CACHE=false`` (``--variant jax_cold=jax:...``) measures a first
one, every compilation made anew.

A variant is one more label in the rotation: a backend run with extra environment variables. A
cap bounds the repeats of one label in the cases whose name starts with a prefix (``mlp 1000000``,
``stream``...), for a combination too slow to repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
BUILDER = str(Path(sys.executable).parent / "builder")
LINEAR = _common.ROOT / "configs" / "salary_linear.yaml"
MLP = _common.ROOT / "configs" / "salary_mlp.yaml"
SHIPPED = _common.ROOT / "data" / "salaries.csv"
GOAL = "whole-process wall time JAX / TensorFlow on the main job at most 0.7"


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = _common.child_env()
    env.pop("KERAS_BACKEND", None)  # --backend is the only choice made
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(_common.DATA / "pycache")
    env.update(extra)
    return env


def _measure(command: list[str], env: dict[str, str], timeout: int = 1800) -> dict[str, Any]:
    """Wall seconds and peak RSS (MB, from ``wait4``: the largest of the process and the
    ``timeout`` wrapping it) of one command in a fresh process."""
    load = os.getloadavg()[0]
    command = ["timeout", str(timeout), *command]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=_env(env), cwd=_common.ROOT, stdout=out, stderr=err)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            raise
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        tail = "\n".join((stderr or stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"{' '.join(command)} failed:\n{tail}")
    return {
        "seconds": seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux: kB
        "load_average_before": load,
        "stdout": stdout,
    }


def _run_metrics(runs_dir: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The one run under ``runs_dir``: its path, metrics and manifest."""
    (run,) = (p for p in runs_dir.glob("*/*") if p.is_dir())
    metrics = json.loads((run / "metrics.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    return run, metrics, manifest


def child_mlp(backend: str, csv: str, epochs: int, assignments: list[str]) -> dict:
    """The MLP's fit on ``backend``, timed per epoch (run in a fresh process)."""
    import yaml

    import builder.training
    from builder.config import validate_config

    raw = yaml.safe_load(MLP.read_text())
    raw["data"]["path"] = csv
    raw["data"]["streaming"] = False
    raw["training"].update(epochs=epochs, early_stopping=None)
    raw["training"].pop("steps", None)
    config = validate_config(_common.set_values(raw, assignments), source=MLP)
    config = builder.training.with_backend(config, backend)  # before anything imports Keras
    import keras

    splits = builder.training.load_data(config, config.data_path())
    timer = _common.epoch_timer()
    builder.training.fit(config, splits, extra_callbacks=[timer])
    rows = len(splits.train)
    threads = None
    if keras.backend.backend() == "torch":
        import torch

        threads = torch.get_num_threads()
    return {
        "backend": keras.backend.backend(),
        "torch_threads": threads,
        "steps_per_execution": config.training.steps_per_execution,
        "train_rows": rows,
        "epochs": epochs,
        "fit_seconds": timer.seconds,
        "epoch_seconds": timer.epochs,
        "samples_per_second": rows * epochs / timer.seconds,
        "steady_samples_per_second": rows / statistics.median(timer.epochs[1:] or timer.epochs),
    }


class Bench:
    """The cases, their configs and the samples gathered so far, by label (a backend, or a
    variant of one)."""

    def __init__(self, args: argparse.Namespace, labels: dict[str, tuple[str, dict]], work: Path):
        self.args = args
        self.labels = labels
        self.work = work
        self.me = str(Path(__file__).relative_to(_common.ROOT))
        self.overrides: dict[str, list[str]] = {b: [] for b in BACKENDS}
        for item in args.set_for:
            backend, _, assignment = item.partition(":")
            self.overrides[backend].append(assignment)
        self.samples: dict[str, dict[str, list[dict]]] = {}
        self.runs: dict[str, Path] = {}

    def config(self, label: str, source: Path, name: str, extra: list[str]) -> Path:
        """``source`` with data.path made absolute and the overrides applied, unless none are."""
        import yaml

        assignments = [*self.overrides[self.labels[label][0]], *extra]
        if not assignments:
            return source
        raw = yaml.safe_load(source.read_text())
        raw["data"]["path"] = str((source.parent / raw["data"]["path"]).resolve())
        raw = _common.set_values(raw, assignments)
        target = self.work / f"{name}_{label}.yaml"
        target.write_text(yaml.safe_dump(raw, sort_keys=False))
        return target

    def measure(self, label: str, command: list[str]) -> dict[str, Any]:
        backend, env = self.labels[label]
        return _measure([*command, "--backend", backend], env)

    def record(self, case: str, label: str, sample: dict) -> None:
        sample.pop("stdout", None)
        self.samples.setdefault(case, {}).setdefault(label, []).append(sample)
        # The samples so far, in case a long bench is cut short.
        partial = _common.DATA / "backends_partial.json"
        partial.write_text(json.dumps({"argv": sys.argv, "samples": self.samples}, indent=1))
        shown = ", ".join(
            f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in sample.items()
            if k in ("seconds", "peak_rss_mb", "fit_seconds", "steady_samples_per_second")
        )
        print(f"  {case} {label}: {shown}", file=sys.stderr, flush=True)

    def main_job(self, label: str, keep: bool = False) -> dict:
        runs_dir = Path(tempfile.mkdtemp(prefix=f"main_{label}_", dir=self.work))
        config = self.config(label, LINEAR, "salary_linear", [])
        sample = self.measure(label, [BUILDER, "train", str(config), "--runs-dir", str(runs_dir)])
        run, metrics, manifest = _run_metrics(runs_dir)
        if manifest["backend"] != self.labels[label][0]:
            raise RuntimeError(f"{run} trained on {manifest['backend']}, not {label}")
        sample.update(
            fit_seconds=metrics["timings"]["fit_seconds"],
            epochs=metrics["epochs_run"],
            test_mse_over_least_squares=metrics["test"]["mse"]
            / metrics["baselines"]["least_squares"]["mse"],
        )
        if keep:
            self.runs[label] = run
        else:
            shutil.rmtree(runs_dir)
        return sample

    def mlp(self, label: str, rows: int, epochs: int) -> dict:
        backend, env = self.labels[label]
        csv = SHIPPED if rows == 0 else _common.salary_csv(rows)
        command = [_common.PYTHON, self.me, "--child-mlp", backend, f"--csv={csv}"]
        command += [f"--epochs={epochs}", *[f"--set={s}" for s in self.overrides[backend]]]
        sample = _measure(command, env)
        lines = [line for line in sample["stdout"].splitlines() if line.startswith("{")]
        sample.update(json.loads(lines[-1]))
        return sample

    def stream(self, label: str, rows: int) -> dict:
        csv = _common.salary_csv(rows)
        config = self.config(label, LINEAR, "salary_linear_streamed", ["data.streaming=true"])
        runs_dir = Path(tempfile.mkdtemp(prefix=f"stream_{label}_", dir=self.work))
        command = [BUILDER, "train", str(config), "--data", str(csv), "--epochs", "1"]
        sample = self.measure(label, [*command, "--runs-dir", str(runs_dir)])
        _, metrics, manifest = _run_metrics(runs_dir)
        shutil.rmtree(runs_dir)
        if not manifest["data"]["streaming"]:
            raise RuntimeError(f"the {rows}-row run did not stream")
        fit_seconds = metrics["timings"]["fit_seconds"]
        sample.update(
            fit_seconds=fit_seconds,
            train_rows_per_second=manifest["data"]["rows"]["train"] / fit_seconds,
        )
        return sample

    def predict(self, label: str, rows: int) -> dict:
        csv = _common.salary_csv(rows)
        out = self.work / f"predictions_{label}.csv"
        command = [BUILDER, "predict", str(self.runs[label]), "--data", str(csv), "-o", str(out)]
        sample = self.measure(label, [*command, "--force"])
        out.unlink()
        return sample


def _value(sample: dict, key: str) -> float:
    return sample["epoch_seconds"][0] if key == "first_epoch_seconds" else sample[key]


def _summary(samples: dict[str, dict[str, list[dict]]], keys: dict[str, str]) -> dict:
    """Medians per case and label, and against TensorFlow: the median of the per-repeat ratios
    (the labels of one repeat ran back to back) and the ratio of the medians."""
    out: dict[str, Any] = {}
    for case, by_label in samples.items():
        key = keys[case.split(" ")[0]]
        out[case] = {"key": key}
        reference = by_label.get("tensorflow")
        for label, runs in by_label.items():
            fields = [k for k, v in runs[0].items() if isinstance(v, float)]
            if "epoch_seconds" in runs[0]:
                fields.append("first_epoch_seconds")
            medians = {k: _common.median([_value(r, k) for r in runs]) for k in fields}
            entry: dict[str, Any] = {"runs": len(runs), "median": medians}
            if reference and label != "tensorflow":
                pairs = [r[key] / t[key] for r, t in zip(runs, reference, strict=False)]
                entry["ratio_to_tensorflow"] = _common.median(pairs)
                entry["ratio_to_tensorflow_per_run"] = pairs
                entry["ratios_of_medians"] = {
                    k: medians[k] / _common.median([_value(t, k) for t in reference])
                    for k in fields
                    if k in ("seconds", "peak_rss_mb", "fit_seconds", "first_epoch_seconds", key)
                }
            out[case][label] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--runs-10m", type=int, help="repeats of the streamed epoch (default --runs)"
    )
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--skip-10m", action="store_true", help="no streamed epoch")
    parser.add_argument("--stream-rows", type=int, default=10_000_000)
    parser.add_argument("--predict-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--mlp-sizes", default="0:20,1000000:3", help="ROWS:EPOCHS,...; 0 rows: data/salaries.csv"
    )
    parser.add_argument(
        "--variant", action="append", default=[], help="LABEL=BACKEND[:VAR=VALUE,...]"
    )
    parser.add_argument("--cap", action="append", default=[], help="LABEL:CASE-PREFIX=REPEATS")
    parser.add_argument(
        "--set-for",
        action="append",
        default=[],
        help="BACKEND:key=value, a config override for one backend's cases",
    )
    parser.add_argument("--child-mlp", choices=BACKENDS)
    parser.add_argument("--csv")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    if args.child_mlp:
        _common.emit(child_mlp(args.child_mlp, args.csv, args.epochs, args.set))
        return

    labels: dict[str, tuple[str, dict]] = {}
    for backend in args.backends.split(","):
        if backend not in BACKENDS:
            parser.error(f"--backends: {backend!r} is not one of {', '.join(BACKENDS)}")
        labels[backend] = (backend, {})
    for item in args.variant:
        label, _, spec = item.partition("=")
        backend, _, assignments = spec.partition(":")
        if backend not in BACKENDS:
            parser.error(f"--variant: {backend!r} is not one of {', '.join(BACKENDS)}")
        env = dict(a.split("=", 1) for a in assignments.split(",") if a)
        labels[label] = (backend, env)
    caps: dict[tuple[str, str], int] = {}
    for item in args.cap:
        where, _, count = item.partition("=")
        label, _, prefix = where.partition(":")
        caps[label, prefix] = int(count)
    runs_10m = 0 if args.skip_10m else (args.runs_10m or args.runs)

    def wanted(case: str, label: str, repeat: int) -> bool:
        return all(
            repeat < count
            for (lab, prefix), count in caps.items()
            if lab == label and case.startswith(prefix)
        )

    mlp_sizes = [tuple(int(v) for v in item.split(":")) for item in args.mlp_sizes.split(",")]
    for rows in {args.predict_rows, *(r for r, _ in mlp_sizes if r)}:
        _common.salary_csv(rows)
    if runs_10m:
        _common.salary_csv(args.stream_rows)
    work = Path(tempfile.mkdtemp(prefix="bench_backends_", dir=_common.DATA))
    # Every child inherits it (_common.child_env): not the user's cache, and empty at the start.
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(work / "jax-cache")
    bench = Bench(args, labels, work)
    order = list(labels)
    load_start = os.getloadavg()
    started = time.perf_counter()
    try:
        warmup = {}
        for label in order:  # bytecode cache; the run that predict uses
            warmup[label] = bench.main_job(label, keep=True)
            warmup[label].pop("stdout", None)
            print(f"warm-up {label}: {warmup[label]['seconds']:.1f} s", file=sys.stderr)
        for i in range(args.runs):
            shift = i % len(order)
            rotated = order[shift:] + order[:shift]
            print(f"repeat {i + 1}: {', '.join(rotated)}", file=sys.stderr, flush=True)
            cases = [("main", bench.main_job, ())]
            cases += [(f"mlp {r or 10_000}x{e}", bench.mlp, (r, e)) for r, e in mlp_sizes]
            if i < runs_10m:
                cases.append((f"stream {args.stream_rows}", bench.stream, (args.stream_rows,)))
            cases.append((f"predict {args.predict_rows}", bench.predict, (args.predict_rows,)))
            for case, measure, extra in cases:
                for label in rotated:
                    if wanted(case, label, i):
                        bench.record(case, label, measure(label, *extra))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - started
    keys = {
        "main": "seconds",
        "mlp": "steady_samples_per_second",
        "stream": "seconds",
        "predict": "seconds",
    }
    summary = _summary(bench.samples, keys)
    main_medians = {label: summary["main"][label]["median"]["seconds"] for label in labels}
    # A variant is not a backend builder can ship as the default: it is reported apart.
    backends_only = [label for label in labels if label in BACKENDS]
    fastest = min(backends_only, key=main_medians.get)
    fastest_label = min(main_medians, key=main_medians.get)
    jax_ratio = summary["main"].get("jax", {}).get("ratio_to_tensorflow")
    path = _common.write_results(
        "backends",
        {
            "goal": GOAL,
            "jax_over_tensorflow_main_job": jax_ratio,
            "main_job_ratio_to_tensorflow": {
                label: summary["main"][label].get("ratio_to_tensorflow") for label in labels
            },
            "goal_met": None if jax_ratio is None else jax_ratio <= 0.7,
            "fastest_on_main_job": fastest,
            "fastest_label_on_main_job": fastest_label,
            "runs": args.runs,
            "runs_10m": runs_10m,
            "labels": {label: {"backend": b, "env": env} for label, (b, env) in labels.items()},
            "caps": args.cap,
            "set_for": args.set_for,
            "bench_wall_seconds": wall,
            "load_average_at_start": load_start,
            "load_average_at_end": os.getloadavg(),
            "versions": _common.versions("jax", "jaxlib", "torch", "scikit-learn"),
            "cases": {
                "main": "builder train configs/salary_linear.yaml --backend B (whole process)",
                "mlp ROWSxEPOCHS": "configs/salary_mlp.yaml in memory, early stopping off, fit "
                "timed per epoch in a driver process; key: train rows / median epoch after the "
                "first",
                "stream ROWS": "builder train (salary_linear, data.streaming: true) --data CSV "
                "--epochs 1 --backend B (whole process)",
                "predict ROWS": "builder predict RUN --data CSV -o FILE --force --backend B, RUN "
                "the label's own warm-up run of the main job",
                "peak_rss_mb": "ru_maxrss from wait4 (the largest process of the case)",
            },
            "warmup": warmup,
            "summary": summary,
            "samples": bench.samples,
        },
    )
    print(_table(summary, order))
    print(
        f"fastest on the main job: {fastest} (of all labels: {fastest_label}); "
        f"bench {wall / 60:.1f} min   -> {path}"
    )


def _table(summary: dict, labels: list[str]) -> str:
    rows = []
    for case, entry in summary.items():
        key = entry["key"]
        for label in labels:
            if label not in entry:
                continue
            med = entry[label]["median"]
            ratio = entry[label].get("ratio_to_tensorflow")
            rows.append(
                [
                    case,
                    label,
                    f"{med[key]:,.2f}" if med[key] < 1000 else f"{med[key]:,.0f}",
                    f"{ratio:.2f}x" if ratio is not None else "1.00x",
                    f"{med['seconds']:.1f} s",
                    f"{med['peak_rss_mb']:.0f} MB",
                    entry[label]["runs"],
                ]
            )
    headers = ["case", "label", "key median", "/ TF", "process", "peak RSS", "runs"]
    return _common.table(headers, rows)


if __name__ == "__main__":
    main()
