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

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from builder import files
from builder.errors import RunError
from builder.runs import (
    MAX_RUN_TABLE_BYTES,
    Rule,
    atomic_write,
    check_fields,
    read_json,
    write_json,
)

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
    """Write the checkpoint after ``epoch`` epochs (1-based count of finished epochs).

    Written as the run's other files are (``builder.runs.atomic_write``): whole, with the
    permissions the umask allows, and no temporary file left on an error or a signal.

    Raises:
        RunError: the checkpoint could not be written (disk full, read-only...), named with
            the reason; the previous checkpoint is then still whole.
    """
    folder = _folder(run_dir)
    try:
        folder.mkdir(exist_ok=True)
    except OSError as err:
        raise RunError(
            f"checkpoint directory {folder} could not be created. Received: {err.strerror or err}"
        ) from None
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
        {
            "epoch": epoch,
            "weights": name,
            "history": history,
            "early_stopping": stopping,
            # Optimizers with the same variable shapes (Adam, Adamax, Nadam) would restore into
            # each other silently; the class name tells them apart.
            "optimizer": None if model.optimizer is None else type(model.optimizer).__name__,
        },
    )
    for old in folder.glob("weights-*.npz"):
        if old.name != name:
            # Left for the next checkpoint to remove: state.json no longer names it.
            with contextlib.suppress(OSError):
                old.unlink()


def load_state(run_dir: Path) -> dict[str, Any]:
    """The last checkpoint's state, checked against what ``save`` writes.

    ``state.json`` is read as every run file is (``builder.runs.read_json``: a regular file of
    at most ``MAX_RUN_TABLE_BYTES``, strict JSON) and must hold: ``epoch``, a non-negative
    integer; ``weights``, the name of a ``.npz`` file in the checkpoint folder (no path);
    ``history``, one object of numbers per epoch, numbered from 1; ``early_stopping``, null or
    the stopper's ``wait``, ``best``, ``best_epoch`` and ``has_best_weights``.

    Raises:
        RunError: the run has no checkpoint, or its ``state.json`` is damaged (the message
            names the file and the rule).
    """
    path = _folder(run_dir) / "state.json"
    if not os.path.lexists(path):
        raise RunError(
            f"run {run_dir} has no checkpoint to resume from (it stopped before its first epoch "
            "ended); train it again instead."
        )
    state = read_json(path, limit=MAX_RUN_TABLE_BYTES)
    check_fields(state, STATE_RULES, path)
    name = state["weights"]
    if Path(name).name != name or "\\" in name or not name.endswith(".npz") or name == ".npz":
        raise RunError(
            f"{path} is damaged: 'weights' must name a .npz file in {_folder(run_dir)}, "
            f"without a path. Received: {name!r}"
        )
    history = state["history"]
    if len(history) != state["epoch"]:
        raise RunError(
            f"{path} is damaged: 'history' must have a row per epoch ({state['epoch']}). "
            f"Received: {len(history)} rows"
        )
    for i, row in enumerate(history):
        if row.get("epoch") != i + 1:
            raise RunError(
                f"{path} is damaged: 'history[{i}].epoch' must be {i + 1}. "
                f"Received: {row.get('epoch')}"
            )
    return state


#: What ``save`` writes to ``state.json`` (``builder.runs.check_fields`` rules).
STATE_RULES: tuple[Rule, ...] = (
    ("epoch", "count", True),
    ("weights", "string", True),
    ("history", "rows", True),
    ("early_stopping", "object?", True),
    ("early_stopping.wait", "count", True),
    ("early_stopping.best", "number?", True),
    ("early_stopping.best_epoch", "count", True),
    ("early_stopping.has_best_weights", "bool", True),
    ("optimizer", "string?", False),
)

# An .npy header: magic, version, length and a dict of dtype, order and shape; numpy pads it to
# 64 bytes and allows 10,000 by default (numpy.lib.format).
_NPY_HEADER_BYTES = 1 << 16


def restore(run_dir: Path, model: Any, state: dict[str, Any], stopper: Any | None) -> None:
    """Put the checkpoint's weights, optimizer variables and early-stopping state back.

    The model must be built and compiled as the run's config says. Every array is checked
    against the variable it goes to before anything is assigned: the checkpoint must hold
    exactly the model's weights, its optimizer's variables (and early stopping's best weights
    when the state says so), each with the variable's shape and dtype. A checkpoint written
    before ``config.yaml`` was edited (another optimizer, other layer sizes) is refused.

    Args:
        run_dir: the run directory.
        model: the run's model, built and compiled.
        state: ``load_state(run_dir)``.
        stopper: the run's early-stopping callback, or None.

    Raises:
        RunError: the weights file is missing, not a regular file, not an ``.npz`` archive, or
            does not fit the model (the message names the first array that does not).
    """
    path = _folder(run_dir) / state["weights"]
    optimizer = model.optimizer
    saved = state.get("optimizer")
    if saved is not None and saved != type(optimizer).__name__:
        raise RunError(
            f"checkpoint {path} does not fit the run's model: it was written by the "
            f"{saved} optimizer, the run's config now says {type(optimizer).__name__}; was "
            f"config.yaml edited since the run started?"
        )
    optimizer.build(model.trainable_variables)
    stopping = state.get("early_stopping")
    expected: dict[str, tuple[Any, str]] = {}
    for i, var in enumerate(model.weights):
        expected[f"w{i}"] = (var, f"weight {i} ({var.path})")
    for i, var in enumerate(optimizer.variables):
        expected[f"o{i}"] = (var, f"optimizer variable {i} ({var.path})")
    if stopping is not None and stopping["has_best_weights"]:
        for i, var in enumerate(model.weights):
            expected[f"b{i}"] = (var, f"early stopping's best weight {i} ({var.path})")
    arrays = _read_arrays(path, expected, type(optimizer).__name__)
    model.set_weights([arrays[f"w{i}"] for i in range(len(model.weights))])
    for i, var in enumerate(optimizer.variables):
        var.assign(arrays[f"o{i}"])
    if stopper is not None and stopping is not None:
        best = None
        if stopping["has_best_weights"]:
            best = [arrays[f"b{i}"] for i in range(len(model.weights))]
        stopper.resume_from = {
            "wait": stopping["wait"],
            "best": stopping["best"],
            "best_epoch": stopping["best_epoch"],
            "best_weights": best,
        }


def _read_arrays(
    path: Path, expected: dict[str, tuple[Any, str]], optimizer: str
) -> dict[str, np.ndarray]:
    """The checkpoint's arrays, each checked from its .npy header before its data is read.

    A member's header declares its shape and dtype, and numpy reads no more than those
    declare; so checking them against the model's variables bounds what is read.
    """
    import zipfile

    from numpy.lib import format as npy

    files.check_regular(path, what="checkpoint file", error=RunError)
    edited = "was config.yaml edited since the run started?"

    def unfit(reason: str) -> RunError:
        return RunError(f"checkpoint {path} does not fit the run's model: {reason}; {edited}")

    def unreadable(err: Exception) -> RunError:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return RunError(f"checkpoint {path} could not be read: {reason[:200]}")

    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            for prefix, what in (
                ("w", "weight arrays"),
                ("o", f"optimizer variables (of {optimizer})"),
                ("b", "best weight arrays of early stopping"),
            ):
                want = sum(1 for name in expected if name[0] == prefix)
                have = sum(1 for name in members if name[:1] == prefix)
                if want != have:
                    raise unfit(f"the model has {want} {what}, the checkpoint {have}")
            extra = sorted(set(members) - set(expected))
            if extra:
                raise unfit(f"the checkpoint has an array the model lacks: {extra[0]!r}")
            for name, (var, what) in expected.items():
                with archive.open(members[name]) as member:
                    major, _ = npy.read_magic(member)
                    read_header = (
                        npy.read_array_header_1_0 if major == 1 else npy.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(member, max_header_size=_NPY_HEADER_BYTES)
                if tuple(shape) != tuple(var.shape):
                    raise unfit(
                        f"{what} has shape {tuple(var.shape)}, the checkpoint {tuple(shape)}"
                    )
                if np.dtype(dtype) != np.dtype(var.dtype):
                    raise unfit(f"{what} has dtype {var.dtype}, the checkpoint {dtype}")
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in expected}
    except RunError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise unreadable(err) from None
