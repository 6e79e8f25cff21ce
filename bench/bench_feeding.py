"""How numpy batches reach ``fit`` off TensorFlow: PyDataset, a generator, grain, or arrays.

On JAX and PyTorch builder feeds ``fit`` from ``builder.data.batches`` (a
``keras.utils.PyDataset``). Keras takes three other numpy-side inputs, and this bench measures
them on the same compiled model (``configs/salary_mlp.yaml``, in memory, no validation), so that
only the input adapter differs:

- ``pydataset``: builder's own ``Batches`` (what ``builder train`` runs).
- ``generator``: the same ``Batches`` handed to ``fit`` as a Python generator (``steps_per_epoch``).
- ``grain``: a ``grain.MapDataset`` over the batch indices, each batch sliced from one shuffled
  permutation (grain's random-access way; batch order reshuffled each epoch).
- ``arrays``: the float32 arrays themselves, ``fit(x, y, batch_size, shuffle=True)``: Keras's
  array adapter, the floor, which a streamed table cannot use.

Each sample is a fresh child process; the feeders alternate in an order rotated every repeat;
the key is training samples per second after the first (compiling) epoch, median over repeats.
JAX's compilation cache is off in the children, so each first epoch includes its compilations.
grain is not one of builder's dependencies: install it beside the benchmarks, so that no other
process sees it (``pip install --target bench/_data/grain grain``, then remove the copies of
numpy, absl, protobuf (``google``), typing_extensions, fsspec and cloudpickle it brings).

    python bench/bench_feeding.py [--runs 5] [--backend jax]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

MLP = _common.ROOT / "configs" / "salary_mlp.yaml"
GRAIN = _common.DATA / "grain"
FEEDERS = ["pydataset", "generator", "grain", "arrays"]
# (train rows of the generated CSV, epochs): a small file and a large one, as bench_backends.
SIZES = {"10k": (10_000, 20), "1M": (1_000_000, 3)}


def _feed(feeder: str, splits: Any, batch: int, seed: int) -> tuple[Any, dict[str, Any]]:
    """The training input for ``fit`` and the keyword arguments it needs."""
    from builder.data.batches import batches

    if feeder == "pydataset":
        return batches(splits, "train", batch, shuffle_seed=seed), {}
    if feeder == "generator":
        data = batches(splits, "train", batch, shuffle_seed=seed)

        def endless():
            while True:
                for index in range(len(data)):
                    yield data[index]
                data.on_epoch_end()

        return endless(), {"steps_per_epoch": len(data)}
    x, y = splits.float32("train")
    if feeder == "arrays":
        return (x, y), {"batch_size": batch, "shuffle": True}
    import grain
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(y))
    steps = -(-len(y) // batch)

    def cut(index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = order[index * batch : (index + 1) * batch]
        return x[rows], y[rows]

    return grain.MapDataset.range(steps).shuffle(seed=seed).map(cut), {}


def child(backend: str, feeder: str, csv: str, epochs: int) -> dict[str, Any]:
    """One fit of the MLP on ``backend`` from ``feeder``, timed per epoch."""
    import yaml

    import builder.training
    from builder.config import validate_config

    raw = yaml.safe_load(MLP.read_text())
    raw["data"].update(path=csv, streaming=False)
    raw["training"].update(epochs=epochs, early_stopping=None)
    raw["training"].pop("steps", None)
    config = validate_config(raw, source=MLP)
    config = builder.training.with_backend(config, backend)  # before anything imports Keras
    import keras

    splits = builder.training.load_data(config, config.data_path())
    model = builder.training.prepare_model(config, splits)
    batch, seed = config.training.batch_size, config.training.seed
    data, extra = _feed(feeder, splits, batch, seed)
    timer = _common.epoch_timer()
    if isinstance(data, tuple):
        model.fit(*data, epochs=epochs, callbacks=[timer], verbose=0, **extra)
    else:
        model.fit(data, epochs=epochs, callbacks=[timer], verbose=0, shuffle=False, **extra)
    rows = len(splits.train)
    return {
        "backend": keras.backend.backend(),
        "feeder": feeder,
        "train_rows": rows,
        "epochs": epochs,
        "epoch_seconds": timer.epochs,
        "first_epoch_seconds": timer.epochs[0],
        "steady_samples_per_second": rows / statistics.median(timer.epochs[1:]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "sys_modules_tensorflow": "tensorflow" in sys.modules,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backend", default="jax", choices=["jax", "torch"])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--child", nargs=4, metavar=("BACKEND", "FEEDER", "CSV", "EPOCHS"))
    args = parser.parse_args()
    if args.child:
        backend, feeder, csv, epochs = args.child
        _common.emit(child(backend, feeder, csv, int(epochs)))
        return
    # Every child compiles its programs anew, so that the first epoch compares like with like.
    os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    if not (GRAIN / "grain").is_dir():
        sys.exit(f"grain is not installed beside the benchmarks: see {Path(__file__).name}")

    samples: dict[str, dict[str, list[dict]]] = {
        size: {f: [] for f in FEEDERS} for size in args.sizes
    }
    for repeat in range(args.runs):
        for size in args.sizes:
            rows, epochs = SIZES[size]
            csv = _common.salary_csv(rows)
            order = FEEDERS[repeat % len(FEEDERS) :] + FEEDERS[: repeat % len(FEEDERS)]
            for feeder in order:
                found = _common.run_child(
                    [str(Path(__file__)), "--child", args.backend, feeder, str(csv), str(epochs)],
                    extra_path=GRAIN if feeder == "grain" else None,
                )
                samples[size][feeder].append(found)
                print(
                    f"{size} {feeder}: {found['steady_samples_per_second']:,.0f} samples/s, "
                    f"first epoch {found['first_epoch_seconds']:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )

    summary: dict[str, dict[str, Any]] = {}
    for size, by_feeder in samples.items():
        summary[size] = {}
        base = [s["steady_samples_per_second"] for s in by_feeder["pydataset"]]
        for feeder, found in by_feeder.items():
            rates = [s["steady_samples_per_second"] for s in found]
            summary[size][feeder] = {
                "steady_samples_per_second": _common.median(rates),
                "ratio_to_pydataset": _common.median(
                    [r / b for r, b in zip(rates, base, strict=True)]
                ),
                "first_epoch_seconds": _common.median([s["first_epoch_seconds"] for s in found]),
                "peak_rss_mb": _common.median([s["peak_rss_mb"] for s in found]),
                "tensorflow_imported": any(s["sys_modules_tensorflow"] for s in found),
            }
    sys.path.append(str(GRAIN))  # grain's version, from the bench's own folder
    versions = _common.versions("jax", "jaxlib", "torch", "grain")
    rows = [
        [
            f"{size}, {feeder}",
            f"{v['steady_samples_per_second'] / 1e3:,.0f}k",
            f"{v['ratio_to_pydataset']:.2f}x",
            f"{v['first_epoch_seconds']:.2f} s",
            f"{v['peak_rss_mb']:.0f} MB",
        ]
        for size, by_feeder in summary.items()
        for feeder, v in by_feeder.items()
    ]
    print(
        _common.table(
            ["case", "samples/s after epoch 1", "/ pydataset", "first epoch", "peak RSS"], rows
        )
    )
    path = _common.write_results(
        f"feeding_{args.backend}",
        {
            "backend": args.backend,
            "runs": args.runs,
            "sizes": {s: {"rows": SIZES[s][0], "epochs": SIZES[s][1]} for s in args.sizes},
            "versions": versions,
            "summary": summary,
            "samples": samples,
        },
    )
    print(f"-> {path.relative_to(_common.ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
