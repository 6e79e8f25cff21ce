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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from builder import distribute, locks, runs
from builder.backend import current as current_backend
from builder.backend import use as use_backend
from builder.backend import versions as backend_versions
from builder.config import Config, load_config, validate_config
from builder.config.names import DEFAULT_STEPS, MAX_EPOCHS, MIN_EPOCH_STEPS
from builder.data import Table, use_streaming
from builder.data import scoring as scoring_mod
from builder.errors import BuilderError, ConfigError, DataError, Interrupted, RunError
from builder.search import require_values

ProgressFn = Callable[[int, int, dict[str, float]], None]


class Diverged(RunError):
    """Training produced a loss or metric that is not finite (NaN or infinite)."""


@dataclass
class Fitted:
    """What ``fit`` returns: the trained model and how its training went."""

    model: Any
    history: Any  # pandas.DataFrame, one row per epoch run
    epochs: int  # the epochs the training was set to (``epochs: auto`` resolved)
    early_stopping: dict[str, Any] | None  # ``stopping_outcome``


def with_overrides(
    config: Config,
    *,
    data: str | Path | None = None,
    epochs: int | None = None,
    seed: int | None = None,
) -> Config:
    """A copy of ``config`` with command-line overrides applied and validated again.

    Raises:
        DataError: ``data`` is missing, not a regular file (a directory, device, FIFO or
            socket) or holds a NUL byte: ``data.path``'s rules, named ``--data``.
        ConfigError: an override breaks the schema.
    """
    from builder.rules import path_rule

    if data is not None:
        # Checked before resolve(), which raises on a NUL byte; a FIFO or device would be read
        # without end.
        rule = path_rule(data)
        if rule is not None:
            raise DataError(f"--data {rule}. Received: {str(data)!r}")
    raw = config.model_dump(mode="python")
    if data is not None:
        raw["data"]["path"] = str(Path(data).resolve())
    if epochs is not None:
        raw["training"]["epochs"] = epochs
        raw["training"]["steps"] = None  # a fixed epoch count sets the length itself
    if seed is not None:
        raw["training"]["seed"] = seed
    updated = validate_config(raw, source=config.source)
    return updated.locate(config.source, None if data is not None else config.yaml_node)


def with_backend(config: Config, flag: str | None = None, *, recorded: bool = False) -> Config:
    """The config with ``backend`` set to the one this process runs on (``builder.backend.use``:
    ``flag``, then the config's key, then ``KERAS_BACKEND``, then the default), so that the
    run's ``config.yaml`` records it. With ``recorded`` (a run's own config), the config's key
    is what the run trained on, a record rather than a request: it gives way to ``flag``, to
    ``KERAS_BACKEND`` and to the backend of a process that has imported Keras.

    On torch, ``training.steps_per_execution`` becomes 1: Keras's PyTorch trainer runs one step
    per call.

    Raises:
        ConfigError: an unknown or uninstalled backend, one Keras was not imported with, or a
            ``training.distribution`` the backend cannot run.
    """
    if recorded:
        name = use_backend(flag, recorded=config.backend)
    else:
        name = use_backend(flag, config.backend)
    distribute.check_backend(config.training.distribution, name)
    training = config.training
    if name == "torch" and training.steps_per_execution != 1:
        # Keras's PyTorch trainer refuses several steps per call; the run's config.yaml says 1.
        training = training.model_copy(update={"steps_per_execution": 1})
    if config.backend == name and training is config.training:
        return config
    # Known values of known fields: nothing to validate again.
    return config.model_copy(update={"backend": name, "training": training})


def pass_steps(config: Config, train_rows: int, batch_size: int | None = None) -> int:
    """Optimizer steps in one pass over ``train_rows`` rows at the configured (global) batch."""
    return max(1, math.ceil(train_rows / (batch_size or config.training.batch_size)))


def epoch_steps(config: Config, train_rows: int, batch_size: int | None = None) -> int:
    """Optimizer steps in one epoch: a pass, or ``MIN_EPOCH_STEPS`` with ``epochs: auto``."""
    steps = pass_steps(config, train_rows, batch_size)
    return max(steps, MIN_EPOCH_STEPS) if config.training.epochs == "auto" else steps


def resolve_epochs(config: Config, train_rows: int, batch_size: int | None = None) -> int:
    """The epochs a config trains for on ``train_rows`` training rows.

    ``epochs: auto`` counts the training in optimizer steps rather than passes over the data:
    enough epochs for ``training.steps`` steps, at least one. A fixed epoch count is tuned to
    one row count: the same 20 epochs are hundreds of steps on 10,000 rows and 20 steps on 300,
    where the network stops far from its answer (bench/README.md, bench 1 by row count).
    ``batch_size`` stands in for the configured one (a search space's smallest, in tuning).
    """
    epochs = config.training.epochs
    if epochs != "auto":
        return int(epochs)
    per_epoch = epoch_steps(config, train_rows, batch_size)
    steps = config.training.steps or DEFAULT_STEPS
    return max(1, min(MAX_EPOCHS, math.ceil(steps / per_epoch)))


def compile_model(model: Any, config: Config, train_rows: int) -> None:
    """Compile with the configured optimizer, schedule, loss and metrics."""
    import keras

    opt = config.training.optimizer
    learning_rate: Any = opt.learning_rate
    per_epoch = epoch_steps(config, train_rows)
    if opt.schedule == "cosine":
        # Decays to 0 over the whole training: the linear model then settles on the
        # least-squares answer instead of bouncing around it at the final learning rate.
        total = resolve_epochs(config, train_rows) * per_epoch
        learning_rate = keras.optimizers.schedules.CosineDecay(
            opt.learning_rate, decay_steps=max(1, total)
        )
    optimizer = type(keras.optimizers.get(opt.name))(learning_rate=learning_rate)
    model.compile(
        optimizer=optimizer,
        loss=config.training.loss,
        metrics=[_metric(name) for name in config.training.metrics],
        # Capped at one epoch: then an execution is exactly an epoch, which `fit` relies on when
        # it repeats a small dataset (Keras would otherwise run whole executions past its end).
        steps_per_execution=max(1, min(config.training.steps_per_execution, per_epoch)),
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


def _early_stopping(config: Config, has_validation: bool) -> Any:
    """Keras's EarlyStopping, able to pick up where a checkpoint left it."""
    import keras

    stop = config.training.early_stopping
    if stop is None:
        return None

    class _ResumableEarlyStopping(keras.callbacks.EarlyStopping):
        resume_from: dict[str, Any] | None = None

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            if self.resume_from is not None:
                for key, value in self.resume_from.items():
                    setattr(self, key, value)

    return _ResumableEarlyStopping(
        monitor="val_loss" if has_validation else "loss",
        patience=stop.patience,
        min_delta=stop.min_delta,
        restore_best_weights=stop.restore_best_weights,
    )


# A checkpoint is written after an epoch only when this long has passed since the last one:
# on a small CSV an epoch takes milliseconds, and writing every epoch then costs more than the
# training (the state's history grows with every epoch). A kill loses at most this much work.
CHECKPOINT_SECONDS = 1.0


def _recorder(
    rows: list[dict[str, float]],
    epochs: int,
    progress: ProgressFn | None,
    run_dir: Path | None,
    stopper: Any,
) -> Any:
    """Collects each epoch's logs, checkpoints the run, and reports progress."""
    import keras

    from builder import checkpoints

    class _Record(keras.callbacks.Callback):
        saved = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
            bad = [k for k, v in row.items() if not math.isfinite(v)]
            if bad:
                # Nothing after a NaN can recover: stop now, not after the remaining epochs.
                raise Diverged(
                    f"training diverged at epoch {epoch + 1}: {', '.join(bad)} must be finite. "
                    f"Received: {', '.join(f'{k}={row[k]}' for k in bad)}. Try a lower "
                    "training.optimizer.learning_rate, data.normalize: zscore, or (regression) "
                    "training.target_scaling: zscore"
                )
            rows.append(row)
            now = time.monotonic()
            if run_dir is not None and now - self.saved >= CHECKPOINT_SECONDS:
                checkpoints.save(run_dir, self.model, epoch + 1, rows, stopper)
                self.saved = now
            if progress is not None:
                progress(epoch + 1, epochs, {k: v for k, v in row.items() if k != "epoch"})

    return _Record()


def stopping_outcome(stopper: Any, epochs: int, epochs_run: int) -> dict[str, Any] | None:
    """What early stopping did: the epoch it stopped at and the epoch whose weights are kept.

    Returns:
        None without early stopping; otherwise ``monitor``, ``patience``, ``stopped_epoch``
        (1-based; None when every epoch ran) and ``restored_epoch`` (1-based; None when the
        last epoch's weights are kept). Keras restores the best weights at the end of
        training whenever ``restore_best_weights`` is on, stopped early or not.
    """
    if stopper is None:
        return None
    restored = None
    if stopper.restore_best_weights and stopper.best_weights is not None:
        restored = int(stopper.best_epoch) + 1
    return {
        "monitor": stopper.monitor,
        "patience": int(stopper.patience),
        "stopped_epoch": epochs_run if epochs_run < epochs else None,
        "restored_epoch": restored,
    }


def set_normalization(layer: Any, mean: np.ndarray, variance: np.ndarray) -> None:
    """Give a ``keras.layers.Normalization`` layer statistics computed elsewhere.

    The same state as ``layer.adapt`` on data with that mean and (population) variance: the
    layer's ``mean`` and ``variance`` weights are what ``adapt`` and ``.keras`` loading assign,
    and ``finalize_state`` makes them the constants the layer applies (and saves).
    """
    values = {"mean": mean, "variance": variance}
    assigned = set()
    for weight in layer.weights:
        name = weight.name.split("/")[-1]
        if name in values:
            weight.assign(np.asarray(values[name], np.float32).reshape(weight.shape))
            assigned.add(name)
    if assigned != set(values):  # a Keras change: fail loudly rather than train unnormalized
        raise RuntimeError(f"Normalization layer has no mean/variance weights: {layer.weights}")
    layer.finalize_state()


def prepare_model(config: Config, splits: Table) -> Any:
    """Seed, then build, adapt and compile a model, inside the distribution strategy's scope.

    Target scaling and input normalization come from the table's statistics pass (float64,
    training split only), so a streamed file is not read again to adapt the layer.

    Returns:
        The compiled, untrained model; its normalization holds the training split's statistics.
    """
    import keras

    from builder.model import NORMALIZATION, build_model

    # Made first: MultiWorkerMirroredStrategy must exist before TensorFlow runs anything.
    strategy = distribute.strategy_for(config)
    keras.utils.set_random_seed(config.training.seed)
    with distribute.scope(strategy):  # variables made here are mirrored on every replica
        stats = splits.stats
        model = build_model(
            config,
            target_mean=stats.target_mean,
            target_std=stats.target_std or 1.0,
            encoding=encoding_columns(config, splits),
        )
        if config.data.normalize == "zscore":
            set_normalization(
                model.get_layer(NORMALIZATION), stats.feature_mean, stats.feature_variance
            )
        compile_model(model, config, len(splits.train))
    # Under a strategy Keras builds them eagerly itself; JAX and PyTorch build them symbolically
    # when fit starts, and an eager call there would compile each op for nothing.
    if strategy is None and keras.backend.backend() == "tensorflow":
        _create_variables(model, len(config.data.feature_names))
    return model


def _create_variables(model: Any, width: int) -> None:
    """Make the optimizer's and the metrics' variables now, before ``fit`` traces its step.

    Left to ``fit``, they are made while the step is traced, inside ``tf.cond`` branches that
    TensorFlow never frees: each model trained in a process then keeps about 3 MB of graphs,
    which a tuning run's trials add up (bench/README.md). The values are the same either way.
    """
    x = np.zeros((1, width), np.float32)
    y = np.zeros((1, 1), np.float32)
    model.optimizer.build(model.trainable_variables)
    model.compute_metrics(x, y, model(x, training=False))
    model.reset_metrics()


def fit(
    config: Config,
    splits: Table,
    *,
    progress: ProgressFn | None = None,
    extra_callbacks: list | None = None,
    run_dir: Path | None = None,
    resume_state: dict[str, Any] | None = None,
) -> Fitted:
    """Build, adapt, compile and fit a model on prepared splits.

    Args:
        config: the validated config.
        splits: train, validation and test data.
        progress: called after each epoch with ``(epoch, epochs, logs)``.
        extra_callbacks: more Keras callbacks (e.g. TensorBoard).
        run_dir: when given, checkpoints are written there (``CHECKPOINT_SECONDS`` apart).
        resume_state: a checkpoint's state (``builder.checkpoints.load_state``) to continue from.

    Returns:
        The model, its history (one row per epoch run) and what early stopping did.
    """
    import pandas as pd

    from builder import checkpoints

    seed = config.training.seed
    model = prepare_model(config, splits)
    strategy = distribute.strategy_for(config)

    batch = config.training.batch_size
    has_val = len(splits.validation) > 0
    stopper = _early_stopping(config, has_val)
    rows: list[dict[str, float]] = []
    initial_epoch = 0
    if resume_state is not None:
        checkpoints.restore(run_dir, model, resume_state, stopper)
        rows = list(resume_state["history"])
        initial_epoch = int(resume_state["epoch"])
    # A resumed run reshuffles from a seed of its own; its batch order differs from an
    # uninterrupted run's after the resume point (results agree within noise, not bitwise).
    shuffle_seed = seed + initial_epoch
    steps = epoch_steps(config, len(splits.train))
    repeat: dict[str, Any] = {}
    if current_backend() != "tensorflow":
        # JAX and PyTorch take numpy batches; an epoch of several passes is the dataset's
        # length, so Keras needs no steps_per_epoch (builder.data.batches). Validation goes in
        # blocks of up to BLOCK_ROWS rows: its loss and metrics are means over rows, so the block
        # only changes float rounding, and JAX compiles one program per batch shape (a
        # 300-row or 10k-row file then has one instead of two, and fewer steps per epoch).
        from builder.data.batches import batches

        train_data = batches(splits, "train", batch, shuffle_seed=shuffle_seed, steps=steps)
        val_batch = max(batch, min(len(splits.validation), BLOCK_ROWS))
        val_data = batches(splits, "validation", val_batch) if has_val else None
    else:
        from builder.data.tfdata import dataset

        train_data = dataset(splits, "train", batch, shuffle_seed=shuffle_seed)
        val_data = dataset(splits, "validation", batch) if has_val else None
    if current_backend() == "tensorflow" and (
        steps > pass_steps(config, len(splits.train))
        or steps <= config.training.steps_per_execution
    ):
        # An epoch of several passes (MIN_EPOCH_STEPS) needs the data repeated. An epoch of one
        # execution is repeated too, keeping one iterator, rather than have Keras build the
        # input pipeline anew each epoch (bench/README.md, bench 2's pipeline notes).
        train_data = train_data.repeat()
        repeat["steps_per_epoch"] = steps
    train_data = distribute.shard(train_data, strategy)
    val_data = distribute.shard(val_data, strategy)
    epochs = resolve_epochs(config, len(splits.train))
    callbacks = [c for c in (stopper,) if c is not None]
    callbacks += [_recorder(rows, epochs, progress, run_dir, stopper), *(extra_callbacks or [])]
    weights = class_weight_of(config, splits)
    if weights is not None:
        repeat["class_weight"] = weights
    if initial_epoch < epochs:
        model.fit(
            train_data,
            validation_data=val_data,
            epochs=epochs,
            initial_epoch=initial_epoch,
            shuffle=False,  # the dataset shuffles, reseeded each epoch
            callbacks=callbacks,
            verbose=0,
            **repeat,
        )
    history = pd.DataFrame(rows)
    return Fitted(model, history, epochs, stopping_outcome(stopper, epochs, len(rows)))


def class_weight_of(config: Config, splits: Table) -> dict[int, float] | None:
    """``training.class_weight`` as Keras's ``fit`` takes it: ``{class code: weight}``.

    Raises:
        DataError: it names a class the target does not hold, or a weight is not positive.
    """
    setting = config.training.class_weight
    if setting is None or splits.labels is None:
        return None
    from builder.data.classes import class_weights

    return class_weights(setting, splits.stats.class_counts, splits.labels.classes)


BLOCK_ROWS = 65_536
"""Rows per model call when computing outputs (``model_outputs``, the server's requests)."""


def model_outputs(model: Any, x: np.ndarray, batch_size: int = BLOCK_ROWS) -> np.ndarray:
    """The model's outputs for ``x`` as float64 ``(n, units)``, block by block.

    On TensorFlow and PyTorch the model is called eagerly (see ``predict_array``). On JAX an eager
    call compiles each op for each new input shape, so there the outputs come from the compiled
    predict function (``compiled_outputs``): one program instead of one per op.
    """
    import keras

    if keras.backend.backend() == "jax":
        return compiled_outputs(model, batch_size)(x)
    x = np.asarray(x, np.float32)
    blocks = [
        keras.ops.convert_to_numpy(model(x[start : start + batch_size], training=False))
        for start in range(0, len(x), batch_size)
    ]
    units = int(model.outputs[0].shape[-1]) if getattr(model, "outputs", None) else 1
    out = np.concatenate(blocks) if blocks else np.zeros((0, units))
    return np.asarray(out, np.float64).reshape(len(x), -1)


def compiled_outputs(
    model: Any, batch_size: int = BLOCK_ROWS
) -> Callable[[np.ndarray], np.ndarray]:
    """The model's outputs for float32 rows ``(n, k)`` as float64 ``(n, units)``, through its
    compiled predict function (``predict_on_batch``).

    ``model.predict`` builds an iterator and callbacks on every call, and an eager call
    dispatches each op from Python; the compiled function does neither. On TensorFlow it gives
    the eager call's values bit for bit on the same rows, and takes any row count without
    retracing (``reduce_retracing``). JAX compiles one program per input shape, so there the
    rows are padded to a power of two (a bounded number of programs; rows do not interact).
    """
    import keras

    pad = keras.backend.backend() == "jax"
    width = int(model.inputs[0].shape[-1])
    units = int(model.outputs[0].shape[-1])

    def outputs(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        blocks = [np.zeros((0, units), np.float32)]
        for start in range(0, len(x), batch_size):
            block = x[start : start + batch_size]
            n = len(block)
            if pad:
                filler = np.zeros(((1 << (n - 1).bit_length()) - n, width), np.float32)
                block = np.concatenate([block, filler])
            blocks.append(np.asarray(model.predict_on_batch(block)).reshape(len(block), -1)[:n])
        return np.concatenate(blocks).astype(np.float64).reshape(len(x), -1)

    return outputs


def class_probabilities(outputs: np.ndarray) -> np.ndarray:
    """Class probabilities ``(n, k)`` from a classifier's outputs: one sigmoid unit's ``p`` is
    ``[1 - p, p]``; softmax units are the probabilities."""
    if outputs.shape[1] == 1:
        p = outputs[:, 0]
        return np.stack([1.0 - p, p], axis=1)
    return outputs


def predict_probabilities(model: Any, x: np.ndarray) -> np.ndarray:
    """A classifier's class probabilities for ``x`` (``class_probabilities``)."""
    return class_probabilities(model_outputs(model, x))


def predict_array(model: Any, x: np.ndarray, batch_size: int = 65_536) -> np.ndarray:
    """Model outputs for ``x`` as a flat float64 array (one output unit).

    Calls the model eagerly, a block of rows at a time: ``model.predict`` measured 0.15-0.25 s
    per call here (it builds a predict function and an iterator each time), more than scoring
    a 1,500-row test split takes, and once per chunk on the streaming path.
    """
    return model_outputs(model, x, batch_size)[:, 0]


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
    backend: str | None = None,
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
        backend: the Keras backend, over the config's ``backend`` and ``KERAS_BACKEND``
            (``builder.backend``); it must be the one Keras runs on if already imported.

    Returns:
        The finished run: path, config, model, history and metrics.

    Raises:
        ConfigError: the config is invalid or names no data.
        DataError: the CSV is missing, malformed or does not fit the config.
        RunError: the runs directory cannot be written.
    """
    if not isinstance(config, Config):
        config = load_config(config)
    config = with_overrides(config, data=data, epochs=epochs, seed=seed)
    require_values(config, "builder train")
    config = with_backend(config, backend)
    data_path = config.check_data_path()
    started = time.time()
    splits = load_data(config, data_path)
    config = resolve_config(config, splits)
    # Fail on an unwritable runs directory before spending time on training.
    scratch = distribute.worker_scratch(config)  # None on the chief, which keeps the run
    try:
        run_dir = runs.create_run_dir(scratch or runs_dir, config.name)
        # Locked before the manifest exists, so no resume can take the run while it trains.
        with locks.run_lock(run_dir, command):
            manifest = run_manifest(config, data_path, splits, started, command)
            manifest["distribution"] = distribute.describe(config)
            runs.write_json(run_dir / "manifest.json", manifest)
            runs.write_config(run_dir / "config.yaml", config)

            extra = []
            if tensorboard:
                import keras

                extra.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
            run = _fit_and_finish(config, splits, run_dir, manifest, started, progress, extra, None)
    finally:
        distribute.discard(scratch)
    if scratch is not None:
        run.path = None  # another worker than the chief keeps nothing
    return run


def resume(
    run_dir: str | Path,
    *,
    progress: ProgressFn | None = None,
    command: list[str] | None = None,
    backend: str | None = None,
) -> runs.Run:
    """Continue an interrupted run from its last checkpoint to the configured epoch count.

    Args:
        run_dir: the run directory of a training that was stopped (killed or interrupted).
        progress: called after each epoch with ``(epoch, epochs, logs)``.
        command: the command line recorded in the manifest.
        backend: the Keras backend to continue on; without it, the one the run started on
            (``load_run``'s rule).

    Raises:
        RunError: the run is complete, has no checkpoint, its directory is incomplete, or
            another process is training it (``builder.locks``).
        DataError: the data file is gone or changed since the run started.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "manifest.json").exists():
        raise RunError(f"run {run_dir} must be a run directory with a manifest.json.")
    # Held from before the manifest is read until the run's files are written: a second resume
    # (or a resume of a run that is still training) is refused instead of racing this one.
    with locks.run_lock(run_dir, command):
        return _resume_locked(run_dir, progress, command, backend)


def _resume_locked(
    run_dir: Path, progress: ProgressFn | None, command: list[str] | None, backend: str | None
) -> runs.Run:
    from builder import checkpoints

    manifest = runs.read_json(run_dir / "manifest.json")
    if manifest.get("status") == "complete":
        raise RunError(f"run {run_dir} is already complete; there is nothing to resume.")
    config = with_backend(runs.load_run_config(run_dir), backend, recorded=True)
    state = checkpoints.load_state(run_dir)
    data_path = config.check_data_path()
    splits = load_data(config, data_path)
    config = resolve_config(config, splits)
    recorded = (manifest.get("data") or {}).get("sha256")
    if not isinstance(recorded, str):
        raise RunError(
            f"{run_dir / 'manifest.json'} must record data.sha256 to resume (the data must be "
            f"checked unchanged). Received: {recorded!r}"
        )
    if splits.sha256 != recorded:
        raise DataError(
            f"{data_path} has changed since the run started (SHA-256 {splits.sha256[:12]}, "
            f"recorded {recorded[:12]}); resuming would mix two datasets."
        )
    manifest.update(status="running", resumed_from_epoch=state["epoch"], backend=config.backend)
    if command is not None:
        manifest["resume_command"] = command
    runs.write_json(run_dir / "manifest.json", manifest)
    started = time.time()
    return _fit_and_finish(config, splits, run_dir, manifest, started, progress, [], state)


def load_data(config: Config, data_path: Path) -> Table:
    """Read and split the config's CSV, in memory or streamed (``data.streaming``; README)."""
    table = open_data(config, data_path, streamed=use_streaming(config.data.streaming, data_path))
    table.scan()  # counts, statistics and least squares, in one pass over the file
    return table


def open_data(config: Config, data_path: Path, *, streamed: bool) -> Table:
    """The config's CSV as a table, not read yet: in memory, or streamed."""
    split = config.data.split
    return Table(
        data_path,
        config.data.features,
        config.data.target,
        validation=split.validation,
        test=split.test,
        seed=split.seed,
        missing=config.data.missing,
        classification=config.task == "classification",
        unknown=config.data.unknown,
        streamed=streamed,
    )


def resolve_config(config: Config, table: Table) -> Config:
    """The config as the run records it: every feature's type from the table, and for
    classification the output layer and loss chosen for (or checked against) its classes.

    Raises:
        ConfigError: a given output, loss or metric does not fit the classes.
    """
    from builder.config.names import MAX_PARAMETERS
    from builder.config.schema import parameter_count

    labels = table.labels
    resolved = config.with_data(table.kinds, labels.classes if labels is not None else None)
    columns = encoding_columns(resolved, table) or [{"name": n} for n in table.features]
    # A one-hot column is one input per category, an embedding its width, a number one input.
    width = sum(c.get("embedding_dim") or len(c.get("vocabulary", [0])) for c in columns)
    params = parameter_count(resolved, width)
    if params > MAX_PARAMETERS:
        raise ConfigError(
            f"model must have at most {MAX_PARAMETERS:,} trainable parameters. Received: "
            f"{params:,} with the categorical columns' {width:,} inputs{config.where('model')}"
        )
    return resolved


def build_for_data(config: Config) -> Any:
    """The model ``builder build`` shows: with categorical features or classes to choose the
    output from, built for what the config's data holds (read for its vocabularies and labels,
    not for statistics: the normalization is not adapted).

    Raises:
        ConfigError: the model depends on data that the config does not name.
        DataError: the data breaks a rule.
    """
    from builder.model import build_model

    path = config.data_path()
    needs_data = bool(config.data.categorical) or config.model.output is None
    if path is None or not path.exists():
        if needs_data:
            what = "categorical columns" if config.data.categorical else "classes"
            raise ConfigError(
                f"model depends on its data's {what}, so builder build needs data.path to name "
                f"an existing CSV{config.where('data')}"
            )
        return build_model(config)
    data_path = config.check_data_path()
    table = open_data(config, data_path, streamed=use_streaming(config.data.streaming, data_path))
    resolved = resolve_config(config, table)
    return build_model(resolved, encoding=encoding_columns(resolved, table))


def encoding_columns(config: Config, table: Table) -> list[dict[str, Any]] | None:
    """``builder.layers.CategoryColumns``'s ``columns`` for a table with categorical features
    (``None`` without any): the vocabularies, training counts and encodings."""
    from builder.data.columns import embedding_width

    vocabularies = table.vocabularies
    if not vocabularies:
        return None
    columns: list[dict[str, Any]] = []
    for feature in config.data.features:
        vocabulary = vocabularies.get(feature.name)
        if vocabulary is None:
            columns.append({"name": feature.name})
            continue
        column: dict[str, Any] = {
            "name": feature.name,
            "vocabulary": list(vocabulary.values),
            "counts": list(vocabulary.counts),
            "encoding": feature.encoding,
        }
        if feature.encoding == "embedding":
            column["embedding_dim"] = feature.embedding_dim or embedding_width(len(vocabulary))
        columns.append(column)
    return columns


def run_manifest(
    config: Config,
    data_path: Path,
    splits: Table,
    started: float,
    command: list[str] | None,
) -> dict[str, Any]:
    """The ``manifest.json`` of a run that is starting (status ``running``).

    Args:
        config: the config it trains.
        data_path: the CSV it reads.
        splits: the data's splits (their row counts are recorded).
        started: the start time, as ``time.time()``.
        command: the command line to record; ``None`` records ``sys.argv``.

    Returns:
        The manifest as plain data (JSON-ready).
    """
    return {
        "name": config.name,
        "status": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "command": command if command is not None else sys.argv,
        "seed": config.training.seed,
        "split_seed": config.data.split.seed,
        "data": {
            "path": str(data_path.resolve()),
            "sha256": splits.sha256,
            "rows": splits.counts(),
            "dropped_rows": splits.dropped_rows,
            "filled_cells": splits.filled_cells,
            "missing": config.data.missing,
            "streaming": splits.streamed,
        },
        "features": list(splits.features),
        "columns": column_summary(splits),
        "target": splits.target,
        "task": config.task,
        **({"classes": list(splits.labels.classes)} if splits.labels is not None else {}),
        "versions": {
            "builder": _version(),
            "python": platform.python_version(),
            **backend_versions(config.backend),
            "numpy": np.__version__,
        },
        "backend": config.backend,
        "platform": platform.platform(),
    }


def collinear_warning(table: Table) -> str | None:
    """A warning naming the features that are exact linear combinations of others, if any."""
    found = table.stats.collinear
    if not found:
        return None
    return (
        f"{', '.join(found)}: an exact linear combination of the other features (and the "
        "intercept) in the training rows, so their separate coefficients are not identifiable; "
        "predictions are unaffected, but inspect's weights for them mean nothing on their own."
    )


def column_summary(table: Table) -> dict[str, dict[str, Any]]:
    """Each feature's type, and for a categorical one its vocabulary's size, the distinct
    training values seen, and (when inferred) the cell that made it categorical."""
    found: dict[str, dict[str, Any]] = {}
    for name in table.features:
        kind = table.kinds[name]
        entry: dict[str, Any] = {"type": kind}
        if name in table.vocabularies:
            vocabulary = table.vocabularies[name]
            entry.update(categories=len(vocabulary), seen=vocabulary.seen)
        if name in table.inferred:
            row, value = table.inferred[name]
            entry["inferred_from"] = {"line": row + 2, "value": value}
        found[name] = entry
    return found


def _fit_and_finish(
    config: Config,
    splits: Table,
    run_dir: Path,
    manifest: dict[str, Any],
    started: float,
    progress: ProgressFn | None,
    extra: list,
    state: dict[str, Any] | None,
) -> runs.Run:
    """Fit (with checkpoints), then write the run's files and mark it complete.

    Until the manifest says ``complete``, a KeyboardInterrupt (Ctrl-C, or SIGTERM and SIGHUP
    under ``builder``) marks the run ``interrupted`` and becomes ``Interrupted`` with the resume
    command; a BuilderError (divergence, a disk that filled up) marks it ``failed``. Either way
    the last checkpoint stays, and ``resume`` continues from it.
    """
    import shutil

    from builder import checkpoints

    try:
        run = _fit_and_write(config, splits, run_dir, manifest, started, progress, extra, state)
    except BuilderError:
        _mark(run_dir, manifest, "failed")
        raise
    except KeyboardInterrupt:
        _mark(run_dir, manifest, "interrupted")
        try:
            done = checkpoints.load_state(run_dir)["epoch"]
        except RunError:
            done = 0
        raise Interrupted(
            f"training interrupted; the last checkpoint is after epoch {done}; resume with: "
            f"builder train --resume {run_dir}"
        ) from None
    # The finished model replaces the checkpoints: the run directory keeps its documented files.
    shutil.rmtree(run_dir / checkpoints.FOLDER, ignore_errors=True)
    return run


def _mark(run_dir: Path, manifest: dict[str, Any], status: str) -> None:
    """Record a stopped run's status, if the disk lets us: the error that stopped it is the one
    to report (the manifest cannot be written on a full disk either)."""
    import contextlib

    manifest.update(status=status)
    with contextlib.suppress(RunError):
        runs.write_json(run_dir / "manifest.json", manifest)


def _fit_and_write(
    config: Config,
    splits: Table,
    run_dir: Path,
    manifest: dict[str, Any],
    started: float,
    progress: ProgressFn | None,
    extra: list,
    state: dict[str, Any] | None,
) -> runs.Run:
    fit_started = time.time()
    fitted = fit(
        config,
        splits,
        progress=progress,
        extra_callbacks=extra,
        run_dir=run_dir,
        resume_state=state,
    )
    fit_seconds = time.time() - fit_started
    model, history = fitted.model, fitted.history

    if config.task == "classification":
        test, baselines, details = splits.evaluate(
            lambda x: predict_probabilities(model, x), config.task
        )
    else:
        test, baselines, details = splits.evaluate(lambda x: predict_array(model, x), config.task)
    metrics = {
        "task": config.task,
        "test": test,
        "baselines": baselines,
        **({"classes": details} if details is not None else {}),
        "timings": {"fit_seconds": fit_seconds, "total_seconds": time.time() - started},
        "epochs": fitted.epochs,
        "epochs_run": len(history),
        "early_stopping": fitted.early_stopping,
        "warnings": [
            w
            for w in (
                scoring_mod.learned_nothing(config.task, test, baselines),
                collinear_warning(splits),
            )
            if w
        ],
    }

    from builder.model import summary_text

    runs.save_model(run_dir / "model.keras", model)
    runs.write_text(run_dir / "history.csv", history.to_csv(index=False))
    runs.write_text(run_dir / "summary.txt", summary_text(model) + "\n")
    runs.write_json(run_dir / "metrics.json", metrics)
    done = dict(
        manifest,
        status="complete",
        finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        epochs_run=len(history),
    )
    runs.write_json(run_dir / "manifest.json", done)
    manifest.update(done)
    return runs.Run(run_dir, config, model, history, metrics, manifest)


def _version() -> str:
    from builder import __version__

    return __version__
