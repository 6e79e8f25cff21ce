"""Per-epoch checkpoints inside a run directory, so an interrupted training can resume.

```
<run>/checkpoint/
  state.json          epoch, history so far, early-stopping state, the weights file's name
  weights-<epoch>.npz model weights, optimizer variables, early stopping's best weights
```
A checkpoint is numpy arrays, not a ``.keras`` file: saving the model every epoch measured
0.1-0.2 s, which would double the shipped linear model's training time; ``np.savez`` of the same
arrays takes milliseconds. ``state.json`` is written last and names its weights file, so a
process killed at any moment leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from builder.errors import RunError
from builder.runs import atomic_write, write_json

FOLDER = "checkpoint"


def _folder(run_dir: Path) -> Path:
    return Path(run_dir) / FOLDER


def save(
    run_dir: Path,
    model: Any,
    epoch: int,
    history: list[dict[str, float]],
    stopper: Any | None,
) -> None:
    """Write the checkpoint after ``epoch`` epochs (1-based count of finished epochs)."""
    folder = _folder(run_dir)
    folder.mkdir(exist_ok=True)
    arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    if model.optimizer is not None:
        for i, var in enumerate(model.optimizer.variables):
            arrays[f"o{i}"] = np.asarray(var.numpy())
    stopping = None
    if stopper is not None:
        stopping = {
            "wait": int(stopper.wait),
            "best": None if stopper.best is None else float(stopper.best),
            "best_epoch": int(stopper.best_epoch),
            "has_best_weights": stopper.best_weights is not None,
        }
        for i, w in enumerate(stopper.best_weights or []):
            arrays[f"b{i}"] = w
    name = f"weights-{epoch:06d}.npz"
    atomic_write(folder / name, lambda tmp: np.savez(tmp, **arrays))
    write_json(
        folder / "state.json",
        {"epoch": epoch, "weights": name, "history": history, "early_stopping": stopping},
    )
    for old in folder.glob("weights-*.npz"):
        if old.name != name:
            old.unlink(missing_ok=True)


def load_state(run_dir: Path) -> dict[str, Any]:
    """The last checkpoint's state; RunError when the run has none."""
    path = _folder(run_dir) / "state.json"
    if not path.exists():
        raise RunError(
            f"run {run_dir} has no checkpoint to resume from (it stopped before its first epoch "
            "ended); train it again instead."
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise RunError(f"{path} must be valid JSON. Received: {err}") from None


def restore(run_dir: Path, model: Any, state: dict[str, Any], stopper: Any | None) -> None:
    """Put the checkpoint's weights, optimizer variables and early-stopping state back.

    The model must be built and compiled as the run's config says.
    """
    path = _folder(run_dir) / state["weights"]
    try:
        with np.load(path) as data:
            arrays = dict(data)
    except (OSError, ValueError) as err:
        raise RunError(f"checkpoint {path} could not be read: {err}") from None
    weights = [arrays[f"w{i}"] for i in range(len(model.get_weights()))]
    model.set_weights(weights)
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    for i, var in enumerate(optimizer.variables):
        var.assign(arrays[f"o{i}"])
    stopping = state.get("early_stopping")
    if stopper is not None and stopping is not None:
        best = None
        if stopping["has_best_weights"]:
            best = [arrays[f"b{i}"] for i in range(len(weights))]
        stopper.resume_from = {
            "wait": stopping["wait"],
            "best": stopping["best"],
            "best_epoch": stopping["best_epoch"],
            "best_weights": best,
        }
