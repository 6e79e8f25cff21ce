"""The run directory: create it, write its files whole, read it back.

```
runs/<name>/<timestamp>/
  config.yaml     the resolved config (defaults filled in, data path absolute)
  model.keras     the trained model (raw features in, target in its own units out)
  history.csv     loss and metrics per epoch
  metrics.json    test metrics, baselines (mean predictor, least squares), timings
  summary.txt     the Keras summary
  manifest.json   versions, seed, command, data SHA-256, row counts, status
```
A run directory is never overwritten, and every file appears whole: written to a temporary name
in the same folder, then renamed. ``manifest.json`` says ``"status": "running"`` until the run
has finished.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from builder.config import Config, load_config, validate_config
from builder.errors import ConfigError, RunError

FILES = (
    "config.yaml",
    "model.keras",
    "history.csv",
    "metrics.json",
    "summary.txt",
    "manifest.json",
)


@dataclass
class Run:
    """A finished (or loaded) training run."""

    path: Path | None
    config: Config
    model: Any
    history: Any = None  # pandas.DataFrame
    metrics: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


def create_run_dir(runs_dir: str | Path, name: str) -> Path:
    """Make a new, empty run directory ``runs_dir/name/<UTC timestamp>[-N]``.

    ``mkdir`` without ``exist_ok`` is atomic, so two trainings started at the same moment get
    distinct directories and nothing is ever overwritten.
    """
    parent = Path(runs_dir) / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(
            f"runs directory {parent} must be writable. Received: {err.strerror}"
        ) from None
    if not os.access(parent, os.W_OK):
        raise RunError(f"runs directory {parent} must be writable. Received: permission denied")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for attempt in range(1000):
        path = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunError(f"could not create a new run directory under {parent}")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write a text file whole."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_csv_frames(path: Path, frames: Iterable[Any]) -> int:
    """Write pandas frames as one CSV (the first one's header), whole or not at all.

    Returns:
        The number of data rows written.
    """
    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            for i, frame in enumerate(frames):
                frame.to_csv(handle, index=False, header=i == 0)
                rows += len(frame)

    atomic_write(path, write)
    return rows


def write_json(path: Path, data: Any) -> None:
    """Write a JSON file whole (sorted keys, indented, strict: see ``json_text``)."""
    write_text(path, json_text(data, sort_keys=True) + "\n")


def json_text(data: Any, *, sort_keys: bool = False) -> str:
    """Indented JSON that strict parsers accept: NaN and infinities become ``null``.

    Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which are not JSON (RFC 8259);
    a metric can be NaN (an AUC on one class, R² on a constant target).
    """
    return json.dumps(_strict(data), indent=2, sort_keys=sort_keys, allow_nan=False)


def _strict(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _strict(value.tolist())
    return str(value)


def resolved_config(config: Config) -> dict[str, Any]:
    """The config with defaults filled in and the data path made absolute."""
    data = config.model_dump(mode="json")
    path = config.data_path()
    if path is not None:
        data["data"]["path"] = str(path.resolve())
    return data


def write_config(path: Path, config: Config) -> None:
    """Write ``config.yaml`` (the resolved config)."""
    write_text(path, yaml.safe_dump(resolved_config(config), sort_keys=False))


def save_model(path: Path, model: Any) -> None:
    """Save ``model.keras`` whole (Keras insists on the ``.keras`` suffix, which the temp keeps)."""
    atomic_write(path, lambda tmp: model.save(tmp))


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON file of a run, as a RunError when it is missing or broken."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"run directory {path.parent} must contain {path.name}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"{path} must be valid JSON. Received: {err}") from None


def load_model_file(path: str | Path) -> Any:
    """Load a ``.keras`` file safely: builder's layers registered, ``safe_mode=True``.

    ``safe_mode`` refuses Lambda layers and other serialized code instead of running it.
    """
    import keras

    import builder.layers  # noqa: F401  registers Threshold before Keras looks it up

    path = Path(path)
    if not path.exists():
        raise RunError(f"model file {path} does not exist.")
    if path.is_dir() or path.suffix != ".keras":
        raise RunError(f"model file {path} must be a .keras file.")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # Keras raises many kinds for a bad file; all mean the same here
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError(f"{path} could not be loaded as a Keras model: {first[:300]}") from None


def load_run_config(run_dir: Path) -> Config:
    """The resolved config a run recorded, as a RunError when missing or broken."""
    config_path = Path(run_dir) / "config.yaml"
    if not config_path.exists():
        raise RunError(
            f"run directory {run_dir} must contain config.yaml (a run written by builder train)."
        )
    try:  # the guarded reader of every config: regular file, size, depth and node limits
        return load_config(config_path)
    except ConfigError as err:
        raise RunError(f"{config_path} is not a valid builder config: {err}") from None


def load_run(path: str | Path) -> Run:
    """Load a run directory (or a bare ``model.keras`` file) for inspect, evaluate and predict.

    Args:
        path: a run directory written by ``builder train``, or a ``.keras`` file inside one.

    Returns:
        The run, with its config, model, metrics and manifest.

    Raises:
        RunError: the path is missing, incomplete or not a builder run.
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise RunError(f"run {path} does not exist.")
    if path.is_file():
        # A bare model file: check the file first; its run's config is optional.
        run_dir = path.parent
        model = load_model_file(path)
        if (run_dir / "config.yaml").exists():
            config = load_run_config(run_dir)
        else:
            return Run(None, _standalone_config(model, path), model)
    else:
        run_dir = path
        config = load_run_config(run_dir)
        if not (run_dir / "model.keras").exists():
            raise RunError(f"run directory {run_dir} must contain model.keras.")
        model = load_model_file(run_dir / "model.keras")
    history_path = run_dir / "history.csv"
    history = pd.read_csv(history_path) if history_path.exists() else None
    metrics_path = run_dir / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.exists() else {}
    manifest_path = run_dir / "manifest.json"
    manifest = read_json(manifest_path) if manifest_path.exists() else {}
    return Run(run_dir, config, model, history, metrics, manifest)


def _standalone_config(model: Any, path: Path) -> Config:
    """A config describing a model file found outside a run: inputs named x1..xn, target y."""
    import re

    width = int(model.inputs[0].shape[-1])
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem) or "model"
    return validate_config(
        {
            "name": name,
            "data": {"features": [f"x{i + 1}" for i in range(width)], "target": "y"},
            "model": {"layers": [], "output": {"units": 1}},
        }
    )


def early_stopping(run: Run) -> dict[str, Any] | None:
    """What early stopping did in a run: the epoch it stopped at and the epoch whose weights
    the model holds.

    Training records it in ``metrics.json``; for a run written before it did, it is worked out
    from ``history.csv`` and the config as Keras's ``EarlyStopping`` picks it: the best epoch is
    the first lowest value of the monitored metric (``val_loss`` when the history has it, else
    ``loss``; exact with ``min_delta: 0``).

    Returns:
        None when the run trained without early stopping (or has no history); otherwise
        ``monitor``, ``patience``, ``epochs_run``, ``stopped_epoch`` (1-based; None when every
        epoch ran) and ``restored_epoch`` (1-based; None when the last epoch's weights are kept).
    """
    stop = run.config.training.early_stopping
    history = run.history
    recorded = run.metrics.get("early_stopping")
    epochs_run = run.metrics.get("epochs_run", None if history is None else len(history))
    if recorded is not None:
        return {**recorded, "epochs_run": epochs_run}
    if stop is None or history is None or len(history) == 0:
        return None
    monitor = "val_loss" if "val_loss" in history.columns else "loss"
    if monitor not in history.columns:
        return None
    epochs = run.metrics.get("epochs", run.config.training.epochs)
    stopped = epochs_run if isinstance(epochs, int) and epochs_run < epochs else None
    restored = None
    values = history[monitor].to_numpy(dtype=float, na_value=float("nan"))
    if stop.restore_best_weights and (values == values).any():  # some value is not NaN
        import numpy as np

        best = int(np.nanargmin(values))
        restored = int(history["epoch"].iloc[best]) if "epoch" in history.columns else best + 1
    return {
        "monitor": monitor,
        "patience": stop.patience,
        "epochs_run": epochs_run,
        "stopped_epoch": stopped,
        "restored_epoch": restored,
    }


def list_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    """Past runs under ``runs_dir``, newest first, from their manifests and metrics.

    Each row has ``kind``: ``"train"`` (with the test metrics and baselines) or ``"tune"``
    (with ``tune``: objective, direction, trials run, and the best trial and its score, from
    the manifest or, for a search that did not finish, from its ``results.csv``).
    """
    rows = []
    for manifest_path in Path(runs_dir).glob("*/*/manifest.json"):
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        metrics_path = manifest_path.parent / "metrics.json"
        try:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            metrics = {}
        kind = manifest.get("kind", "train")
        row = {
            "path": str(manifest_path.parent),
            "name": manifest.get("name", manifest_path.parent.parent.name),
            "kind": kind,
            "started": manifest.get("started", ""),
            "status": manifest.get("status", "unknown"),
            "epochs": manifest.get("epochs_run"),
            "test": metrics.get("test", {}),
            "baselines": metrics.get("baselines", {}),
        }
        if kind == "tune":
            row["tune"] = _tune_summary(manifest_path.parent, manifest)
        rows.append(row)
    rows.sort(key=lambda row: (row["started"], row["path"]), reverse=True)
    return rows


def _tune_summary(run_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """A tune run's objective and best trial (builder.tuning writes the manifest and results)."""
    objective = manifest.get("objective")
    direction = manifest.get("direction", "min")
    summary = {
        "objective": objective,
        "direction": direction,
        "trials": manifest.get("trials_run"),
        "max_trials": manifest.get("max_trials"),
        "best_trial": None,
        "best_score": None,
    }
    best = manifest.get("best")
    if isinstance(best, dict) and best.get("score") is not None:
        summary.update(best_trial=best.get("trial"), best_score=best["score"])
        return summary
    # Interrupted or failed: the trials that did finish are in results.csv.
    import csv

    try:
        with open(run_dir / "results.csv", encoding="utf-8", newline="") as handle:
            results = list(csv.DictReader(handle))
    except OSError:
        return summary
    summary["trials"] = len(results)
    scored = []
    for result in results:
        try:
            score = float(result.get(objective) or "nan")
        except ValueError:
            continue
        if score == score:  # not NaN
            scored.append((score, result.get("trial")))
    if scored:
        score, trial = (max if direction == "max" else min)(scored, key=lambda s: s[0])
        summary.update(best_trial=trial, best_score=score)
    return summary
