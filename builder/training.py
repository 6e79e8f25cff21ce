"""Model + data -> compiled, fitted model -> run directory.

``train`` is the one call behind ``builder train``: read and split the CSV, adapt the input
normalization on the training split only, fit with a seeded ``tf.data`` pipeline, score the test
split next to the two baselines, and write the run directory.
"""

from __future__ import annotations

import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from builder import data as data_mod
from builder import metrics as metrics_mod
from builder import runs
from builder.config import Config, load_config, validate_config

ProgressFn = Callable[[int, int, dict[str, float]], None]


def with_overrides(
    config: Config,
    *,
    data: str | Path | None = None,
    epochs: int | None = None,
    seed: int | None = None,
) -> Config:
    """A copy of ``config`` with command-line overrides applied and validated again."""
    raw = config.model_dump(mode="python")
    if data is not None:
        raw["data"]["path"] = str(Path(data).resolve())
    if epochs is not None:
        raw["training"]["epochs"] = epochs
    if seed is not None:
        raw["training"]["seed"] = seed
    if data is not None:
        path = Path(data)
        if not path.exists() or path.is_dir():
            from builder.errors import DataError

            rule = "must name an existing file" if not path.exists() else "must name a file"
            raise DataError(f"--data {rule}. Received: {data}")
    updated = validate_config(raw, source=config.source)
    updated._node = None if data is not None else config._node
    return updated


def compile_model(model: Any, config: Config, steps_per_epoch: int) -> None:
    """Compile with the configured optimizer, schedule, loss and metrics."""
    import keras

    opt = config.training.optimizer
    learning_rate: Any = opt.learning_rate
    if opt.schedule == "cosine":
        # Decays to 0 over the configured epochs: the linear model then settles on the
        # least-squares answer instead of bouncing around it (KERAS-NOTES).
        learning_rate = keras.optimizers.schedules.CosineDecay(
            opt.learning_rate, decay_steps=max(1, config.training.epochs * steps_per_epoch)
        )
    optimizer = type(keras.optimizers.get(opt.name))(learning_rate=learning_rate)
    model.compile(
        optimizer=optimizer,
        loss=config.training.loss,
        metrics=[_metric(name) for name in config.training.metrics],
        steps_per_execution=config.training.steps_per_execution,
    )


def _metric(name: str) -> Any:
    import keras

    named = {
        "auc": lambda: keras.metrics.AUC(name="auc"),
        "precision": lambda: keras.metrics.Precision(name="precision"),
        "recall": lambda: keras.metrics.Recall(name="recall"),
        "root_mean_squared_error": lambda: keras.metrics.RootMeanSquaredError(name="rmse"),
    }
    return named[name]() if name in named else name


def _callbacks(config: Config, has_validation: bool, progress: ProgressFn | None) -> list:
    import keras

    callbacks: list = []
    stop = config.training.early_stopping
    if stop is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss" if has_validation else "loss",
                patience=stop.patience,
                min_delta=stop.min_delta,
                restore_best_weights=stop.restore_best_weights,
            )
        )
    if progress is not None:
        epochs = config.training.epochs

        class _Progress(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                progress(epoch + 1, epochs, {k: float(v) for k, v in (logs or {}).items()})

        callbacks.append(_Progress())
    return callbacks


def fit(
    config: Config,
    splits: data_mod.Splits,
    *,
    progress: ProgressFn | None = None,
    extra_callbacks: list | None = None,
) -> tuple[Any, Any]:
    """Build, adapt, compile and fit a model on prepared splits.

    Returns:
        ``(model, history_frame)``; the history has one row per epoch run.
    """
    import keras
    import pandas as pd

    from builder.model import NORMALIZATION, build_model

    seed = config.training.seed
    keras.utils.set_random_seed(seed)
    y = splits.train.y
    std = float(np.std(y)) or 1.0
    model = build_model(config, target_mean=float(np.mean(y)), target_std=std)
    if config.data.normalize == "zscore":
        model.get_layer(NORMALIZATION).adapt(splits.train.x)
    batch = config.training.batch_size
    steps = math.ceil(len(splits.train) / batch)
    compile_model(model, config, steps)
    train_data = data_mod.dataset(splits.train, batch, shuffle_seed=seed)
    has_val = len(splits.validation) > 0
    val_data = data_mod.dataset(splits.validation, batch) if has_val else None
    callbacks = _callbacks(config, has_val, progress) + list(extra_callbacks or [])
    result = model.fit(
        train_data,
        validation_data=val_data,
        epochs=config.training.epochs,
        shuffle=False,  # the dataset shuffles, reseeded each epoch
        callbacks=callbacks,
        verbose=0,
    )
    history = pd.DataFrame(result.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    return model, history


def predict_array(model: Any, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Model outputs for ``x`` as a flat float64 array (one output unit)."""
    out = model.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0)
    return np.asarray(out, np.float64).reshape(len(x), -1)[:, 0]


def train(
    config: Config | str | Path,
    *,
    data: str | Path | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    runs_dir: str | Path = "runs",
    tensorboard: bool = False,
    progress: ProgressFn | None = None,
    command: list[str] | None = None,
) -> runs.Run:
    """Train the model a config describes and write a run directory.

    Args:
        config: a config or the path of a config file.
        data: a CSV to use instead of the config's ``data.path``.
        epochs: overrides ``training.epochs``.
        seed: overrides ``training.seed`` (initial weights and batch order).
        runs_dir: where run directories go (``<runs_dir>/<name>/<timestamp>``).
        tensorboard: also write TensorBoard logs into the run directory.
        progress: called after each epoch with ``(epoch, epochs, logs)``.
        command: the command line recorded in the manifest.

    Returns:
        The finished run: path, config, model, history and metrics.

    Raises:
        ConfigError: the config is invalid or names no data.
        DataError: the CSV is missing, malformed or does not fit the config.
        RunError: the runs directory cannot be written.
    """
    import keras
    import tensorflow as tf

    if not isinstance(config, Config):
        config = load_config(config)
    config = with_overrides(config, data=data, epochs=epochs, seed=seed)
    data_path = config.check_data_path()
    started = time.time()
    split = config.data.split
    splits = data_mod.load_splits(
        data_path,
        config.data.features,
        config.data.target,
        validation=split.validation,
        test=split.test,
        seed=split.seed,
        missing=config.data.missing,
        classification=config.task == "classification",
    )
    # Fail on an unwritable runs directory before spending time on training.
    run_dir = runs.create_run_dir(runs_dir, config.name)
    manifest: dict[str, Any] = {
        "name": config.name,
        "status": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "command": command if command is not None else sys.argv,
        "seed": config.training.seed,
        "split_seed": split.seed,
        "data": {
            "path": str(data_path.resolve()),
            "sha256": splits.sha256,
            "rows": splits.counts(),
            "dropped_rows": splits.dropped_rows,
            "filled_cells": splits.filled_cells,
            "missing": config.data.missing,
        },
        "features": list(splits.features),
        "target": splits.target,
        "task": config.task,
        "versions": {
            "builder": _version(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
        "platform": platform.platform(),
    }
    runs.write_json(run_dir / "manifest.json", manifest)
    runs.write_config(run_dir / "config.yaml", config)

    extra = []
    if tensorboard:
        extra.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
    fit_started = time.time()
    model, history = fit(config, splits, progress=progress, extra_callbacks=extra)
    fit_seconds = time.time() - fit_started

    test_pred = predict_array(model, splits.test.x)
    metrics = {
        "task": config.task,
        "test": metrics_mod.score(config.task, splits.test.y, test_pred),
        "baselines": metrics_mod.baselines(
            config.task,
            splits.train.x,
            splits.train.y,
            splits.test.x,
            splits.test.y,
            splits.features,
        ),
        "timings": {"fit_seconds": fit_seconds, "total_seconds": time.time() - started},
        "epochs_run": len(history),
    }

    from builder.model import summary_text

    runs.save_model(run_dir / "model.keras", model)
    runs.write_text(run_dir / "history.csv", history.to_csv(index=False))
    runs.write_text(run_dir / "summary.txt", summary_text(model) + "\n")
    runs.write_json(run_dir / "metrics.json", metrics)
    manifest.update(
        status="complete",
        finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        epochs_run=len(history),
    )
    runs.write_json(run_dir / "manifest.json", manifest)
    return runs.Run(run_dir, config, model, history, metrics, manifest)


def _version() -> str:
    from builder import __version__

    return __version__
