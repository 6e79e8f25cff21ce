"""A config with search spaces -> a Keras Tuner search -> a results table and ``best.yaml``.

``tune`` is the one call behind ``builder tune``. It writes a run directory::

    runs/<name>/<timestamp>/
      config.yaml     the search config (resolved: defaults filled in, data path absolute)
      tuner/<hash>/   Keras Tuner's project, named by a hash of the config and the data
      results.csv     one row per trial: status, score, epochs, seconds, and only the
                      hyperparameters that trial used
      best.yaml       the best trial as a plain config, for ``builder train``
      manifest.json   kind "tune", status, config hash, data SHA-256, versions, best trial

Every trial trains through ``builder.training.fit``, exactly as ``builder train`` would train
the config it stands for (same seed, data pipeline, schedule and early stopping), so training
``best.yaml`` reproduces the best trial's score. Hyperband trials therefore train from scratch
for their round's epochs instead of continuing an earlier trial's weights.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras_tuner as kt
import yaml

from builder import distribute, runs
from builder.config import Config, load_config, validate_config
from builder.errors import ConfigError
from builder.search import TuneConfig, is_space

HIDDEN = "model.hidden"


@dataclass
class TuneEvent:
    """What a progress callback hears: a trial starts, an epoch ends, a trial ends."""

    kind: str  # "trial_start", "epoch" or "trial_end"
    trial: str  # Keras Tuner's trial id, as in results.csv and tuner/<hash>/trial_<id>/
    number: int  # 1-based count of trials started in this search
    trials: int  # the most trials the search will run
    values: dict[str, Any] = field(default_factory=dict)  # the trial's active hyperparameters
    epoch: int = 0
    epochs: int = 0
    logs: dict[str, float] = field(default_factory=dict)
    score: float | None = None  # the trial's score (trial_end)
    best: float | None = None  # the best score so far (trial_end)
    status: str = ""  # the trial's status (trial_end): COMPLETED or FAILED


ProgressFn = Callable[[TuneEvent], None]


@dataclass
class TuneResult:
    """A finished search."""

    path: Path  # the run directory
    best_config: Path  # best.yaml
    objective: str
    direction: str
    columns: list[str]  # of the results table
    rows: list[dict[str, Any]]  # one per trial, in the order they ran
    best: dict[str, Any]  # the best row
    project: Path  # Keras Tuner's project directory
    manifest: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Search spaces -> hyperparameters -> a concrete config


def _register(hp: Any, name: str, space: dict[str, Any]) -> Any:
    """Declare one space as a Keras Tuner hyperparameter; its value, or None when inactive."""
    if space["search"] == "choice":
        return hp.Choice(name, space["values"])
    kind = hp.Int if space["search"] == "int" else hp.Float
    return kind(name, space["min"], space["max"], step=space["step"], sampling=space["sampling"])


def _possible(value: Any) -> list[Any]:
    """The values an integer key (a plain value or a space) can take."""
    if not is_space(value):
        return [value]
    if value["search"] == "choice":
        return list(value["values"])
    if value["sampling"] == "log" or value["step"] is None:
        return list(range(value["min"], value["max"] + 1))
    return list(range(value["min"], value["max"] + 1, value["step"]))


def _spaces_in(raw: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """``(name, container, key)`` of every space in raw config data, outside ``model.hidden``."""
    found: list[tuple[str, Any, Any]] = []
    items = raw.items() if isinstance(raw, dict) else enumerate(raw)
    for key, value in items:
        name = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)
        if name == HIDDEN:
            continue
        if is_space(value):
            found.append((name, raw, key))
        elif isinstance(value, dict | list):
            found.extend(_spaces_in(value, name))
    return found


class ConfigHyperModel(kt.HyperModel):
    """A config with search spaces as a Keras Tuner hypermodel.

    Hyperparameters are named by the config key they stand for (``training.batch_size``,
    ``model.layers[0].units``); a tuned ``model.hidden`` block gives ``model.hidden.layers`` and,
    for each layer ``i``, ``model.hidden.layer_<i>.units`` (``.activation``, ``.dropout``), active
    only in trials with at least ``i`` layers (Keras Tuner's ``conditional_scope``).
    """

    def __init__(self, config: Config, splits: Any = None) -> None:
        super().__init__(name=config.name)
        self.config = config
        self.splits = splits
        self.raw = runs.resolved_config(config)
        self.raw["tune"] = None

    def config_for(self, hp: Any) -> Config:
        """Declare every hyperparameter on ``hp`` and return the config its values make."""
        raw = copy.deepcopy(self.raw)
        for name, container, key in _spaces_in(raw):
            container[key] = _register(hp, name, container[key])
        block = raw["model"].get("hidden")
        if block is not None:
            raw["model"]["layers"] = self._hidden_layers(hp, block)
            raw["model"]["hidden"] = None
        return validate_config(raw, source=self.config.source)

    @staticmethod
    def _hidden_layers(hp: Any, block: dict[str, Any]) -> list[dict[str, Any]]:
        count_name = f"{HIDDEN}.layers"
        tuned_count = is_space(block["layers"])
        count = _register(hp, count_name, block["layers"]) if tuned_count else block["layers"]
        possible = _possible(block["layers"])
        layers: list[dict[str, Any]] = []
        for index in range(1, max(possible) + 1):
            # Layer i exists in trials with at least i layers; its hyperparameters are declared
            # under that condition so results never list them for shallower trials.
            when = [n for n in possible if n >= index]
            scope = hp.conditional_scope(count_name, when) if tuned_count else _NoScope()
            with scope:
                values = {
                    key: _register(hp, f"{HIDDEN}.layer_{index}.{key}", block[key])
                    if is_space(block[key])
                    else block[key]
                    for key in ("units", "activation", "dropout")
                }
            if index <= count:
                layers.append(
                    {"type": "dense", "units": values["units"], "activation": values["activation"]}
                )
                if values["dropout"] > 0:  # the same rule as a plain hidden block
                    layers.append({"type": "dropout", "rate": values["dropout"]})
        return layers

    def declare_hyperparameters(self, hp: Any) -> None:
        """Register the whole search space (every conditional layer included) in one pass."""
        self.config_for(hp)

    def build(self, hp: Any) -> Any:
        """The compiled, untrained model for ``hp`` (Keras Tuner's HyperModel contract)."""
        from builder.training import prepare_model

        return prepare_model(self.config_for(hp), self.splits)


class _NoScope:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


# --------------------------------------------------------------------------------------------
# The search


def config_hash(config: Config, data_sha256: str) -> str:
    """16 hex digits naming the tuner project: the config (all but max_trials) and the data.

    A changed search space, training setting or data file gets a new project, so Keras Tuner
    never reloads trials scored under other conditions; more trials keep the same one.
    """
    raw = runs.resolved_config(config)
    raw["data"].pop("path", None)  # the data's content counts, not where it lies
    if raw.get("tune") is not None:
        raw["tune"].pop("max_trials", None)
    payload = json.dumps({"config": raw, "data": data_sha256}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _score(values: Any, direction: str) -> float:
    values = [float(v) for v in values if v == v]  # NaN epochs never count as best
    if not values:
        return math.nan
    return min(values) if direction == "min" else max(values)


def _make_tuner(tune: TuneConfig, seed: int, epochs: int, **kwargs: Any) -> Any:
    from keras_tuner.engine.base_tuner import BaseTuner

    common = {
        "objective": kt.Objective(tune.objective, direction=tune.resolved_direction()),
        "seed": seed,
        # A diverged trial is a result (FAILED in the table), not a reason to stop searching.
        "max_consecutive_failed_trials": tune.max_trials + 1,
    }
    if tune.tuner == "random":
        oracle = kt.oracles.RandomSearchOracle(max_trials=tune.max_trials, **common)
    elif tune.tuner == "bayesian":
        oracle = kt.oracles.BayesianOptimizationOracle(max_trials=tune.max_trials, **common)
    else:
        oracle = kt.oracles.HyperbandOracle(max_epochs=epochs, factor=tune.factor, **common)
        oracle.max_trials = tune.max_trials  # Hyperband has no budget of its own in trials

    class _Fatal(kt.errors.FatalError):
        """Carries a non-trial error out of Keras Tuner, which would log and swallow it."""

    class _Tuner(BaseTuner):
        fatal = _Fatal

        def __init__(self, *, search: _Search, **kw: Any) -> None:
            self.builder_search = search
            super().__init__(oracle=oracle, hypermodel=search.hypermodel, **kw)

        def _populate_initial_space(self) -> None:
            # One pass declares every hyperparameter (conditional ones included); Keras
            # Tuner's default builds a model once per condition to discover them.
            hp = self.oracle.get_space()
            self.hypermodel.declare_hyperparameters(hp)
            self.oracle.update_space(hp)

        def on_trial_begin(self, trial: Any) -> None:
            self.builder_search.trial_begins(trial)

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
            try:
                return self.builder_search.run_trial(trial)
            except kt.errors.FailedTrialError:
                raise
            except Exception as error:
                raise _Fatal(str(error)) from error

        def on_trial_end(self, trial: Any) -> None:
            super().on_trial_end(trial)
            self.builder_search.trial_ends(trial)

    return _Tuner(**kwargs)


def _most_epochs(config: Config, train_rows: int) -> int:
    """The epochs of the longest trial: ``training.epochs``, resolved at the smallest batch."""
    from builder.training import resolve_epochs

    batch = config.training.batch_size
    smallest = None
    if is_space(batch):
        smallest = int(min(batch.values) if batch.search == "choice" else batch.min)
    return resolve_epochs(config, train_rows, smallest)


class _Search:
    """The state of one search: data, progress, and what each trial recorded."""

    def __init__(self, config: Config, splits: Any, progress: ProgressFn | None) -> None:
        self.config = config
        self.tune = config.tune or TuneConfig()
        self.splits = splits
        self.progress = progress
        self.hypermodel = ConfigHyperModel(config, splits)
        self.direction = self.tune.resolved_direction()
        # The most epochs a trial trains (Hyperband's max_epochs); with ``epochs: auto`` each
        # trial resolves its own from its batch size, so this is the smallest batch's count.
        self.epochs = self.tune.epochs or _most_epochs(config, len(splits.train))
        self.info: dict[str, dict[str, Any]] = {}
        self.numbers: dict[str, int] = {}
        self.oracle: Any = None

    def _emit(self, kind: str, trial_id: str, **fields: Any) -> None:
        if self.progress is not None:
            number = self.numbers.get(trial_id, 0)
            self.progress(TuneEvent(kind, trial_id, number, self.tune.max_trials, **fields))

    def trial_config(self, hp: Any) -> Config:
        """The concrete config of a trial, at the epochs it trains."""
        from builder.training import with_overrides

        config = self.hypermodel.config_for(hp)
        epochs = hp.values.get("tuner/epochs", self.tune.epochs)  # Hyperband sets each round's
        return config if epochs is None else with_overrides(config, epochs=int(epochs))

    def trial_begins(self, trial: Any) -> None:
        self.numbers[trial.trial_id] = len(self.numbers) + 1
        self._emit("trial_start", trial.trial_id, values=active_values(trial.hyperparameters))

    def run_trial(self, trial: Any) -> dict[str, float]:
        import keras

        from builder.training import Diverged, fit, with_overrides

        config = self.trial_config(trial.hyperparameters)
        started = time.time()
        scores, epochs_run = [], []
        for execution in range(self.tune.executions_per_trial):
            run_config = config
            if execution:
                run_config = with_overrides(config, seed=config.training.seed + execution)

            def report(epoch: int, total: int, logs: dict[str, float]) -> None:
                self._emit("epoch", trial.trial_id, epoch=epoch, epochs=total, logs=logs)

            # Each trial starts from an empty Keras session, so memory stays flat however many
            # trials run (bench/bench_tune_memory.py measures it).
            keras.backend.clear_session()
            try:
                fitted = fit(run_config, self.splits, progress=report)
            except Diverged as error:
                keras.backend.clear_session()
                raise kt.errors.FailedTrialError(str(error)) from None
            history, trained_epochs = fitted.history, fitted.epochs
            del fitted
            if self.tune.objective not in history:
                raise ConfigError(
                    f"tune.objective {self.tune.objective!r} is not among the logged values "
                    f"({', '.join(c for c in history.columns if c != 'epoch')})"
                )
            scores.append(_score(history[self.tune.objective], self.direction))
            epochs_run.append(len(history))
        keras.backend.clear_session()
        gc.collect()
        self.info[trial.trial_id] = {
            "epochs": trained_epochs,
            "epochs_run": max(epochs_run),
            "seconds": round(time.time() - started, 2),
        }
        score = sum(scores) / len(scores)
        if not math.isfinite(score):
            raise kt.errors.FailedTrialError(
                f"{self.tune.objective} was not finite in every epoch (the training diverged)"
            )
        return {self.tune.objective: score}

    def trial_ends(self, trial: Any) -> None:
        # Keras Tuner can rank a failed trial (no score) first while no trial has succeeded.
        best = [
            t for t in self.oracle.get_best_trials(len(self.oracle.trials)) if t.score is not None
        ]
        self._emit(
            "trial_end",
            trial.trial_id,
            values=active_values(trial.hyperparameters),
            score=None if trial.score is None else float(trial.score),
            best=float(best[0].score) if best else None,
            status=str(trial.status),
        )

    def results(self) -> tuple[list[str], list[dict[str, Any]]]:
        """The results table: fixed columns, then every hyperparameter in declaration order."""
        objective = self.tune.objective
        fixed = ["trial", "status", objective, "epochs", "epochs_run", "seconds"]
        names: list[str] = []
        rows = []
        for trial_id in self.oracle.start_order:
            trial = self.oracle.trials[trial_id]
            info = self.info.get(trial_id, {})
            row: dict[str, Any] = {
                "trial": trial_id,
                "status": str(trial.status),
                objective: None if trial.score is None else float(trial.score),
                "epochs": info.get("epochs"),
                "epochs_run": info.get("epochs_run"),
                "seconds": info.get("seconds"),
            }
            values = active_values(trial.hyperparameters)
            for name in values:
                if name not in names:
                    names.append(name)
            rows.append({**row, **values})
        # Keep declaration order (the space's), not first-seen order.
        order = [hp.name for hp in self.oracle.get_space().space]
        names.sort(key=lambda n: order.index(n) if n in order else len(order))
        return fixed + names, rows


def active_values(hp: Any) -> dict[str, Any]:
    """A trial's hyperparameter values, leaving out inactive ones and Keras Tuner's own.

    Keras Tuner keeps values for every hyperparameter it has seen, so a 1-layer trial still
    carries ``model.hidden.layer_3.units``; ``is_active`` checks the conditions.
    """
    out: dict[str, Any] = {}
    for param in hp.space:
        name = param.name
        if name.startswith("tuner/") or name in out or name not in hp.values:
            continue
        if hp.is_active(param):
            out[name] = hp.values[name]
    return out


def tune(
    config: Config | str | Path,
    *,
    runs_dir: str | Path = "runs",
    max_trials: int | None = None,
    progress: ProgressFn | None = None,
    command: list[str] | None = None,
    backend: str | None = None,
) -> TuneResult:
    """Search a config's search spaces with Keras Tuner and write a tune run directory.

    Keras Tuner imports Keras with this module, so a backend other than ``KERAS_BACKEND``'s
    must be chosen (``builder.backend.use``) before it is imported; the command line does.

    Args:
        config: a config (or its file) with at least one search space.
        runs_dir: where run directories go (``<runs_dir>/<name>/<timestamp>``).
        max_trials: overrides ``tune.max_trials``.
        progress: called with a ``TuneEvent`` when a trial starts, an epoch ends, a trial ends.
        command: the command line recorded in the manifest.
        backend: the Keras backend; it must be the one Keras was imported with.

    Returns:
        The run directory, the results table and the path of ``best.yaml``.

    Raises:
        ConfigError: the config has no search space, breaks a rule, or asks for multi_worker.
        DataError: the CSV is missing, malformed or does not fit the config.
        RunError: the runs directory cannot be written.
    """
    from builder import search, training

    if not isinstance(config, Config):
        config = load_config(config)
    if max_trials is not None:
        raw = config.model_dump(mode="python")
        raw["tune"] = {**(raw.get("tune") or {}), "max_trials": max_trials}
        config = validate_config(raw, source=config.source)
    search.require_tunable(config)
    config = training.with_backend(config, backend)
    data_path = config.check_data_path()
    started = time.time()
    splits = training.load_data(config, data_path)
    config = training.resolve_config(config, splits)
    run_dir = runs.create_run_dir(runs_dir, config.name)
    digest = config_hash(config, splits.sha256)
    state = _Search(config, splits, progress)
    manifest = training.run_manifest(config, data_path, splits, started, command)
    manifest.update(
        kind="tune",
        config_hash=digest,
        project=f"tuner/{digest}",
        tuner=state.tune.tuner,
        objective=state.tune.objective,
        direction=state.direction,
        max_trials=state.tune.max_trials,
        distribution=distribute.describe(config),
    )
    manifest["versions"]["keras_tuner"] = _keras_tuner_version()
    runs.write_json(run_dir / "manifest.json", manifest)
    runs.write_config(run_dir / "config.yaml", config)

    tuner = _make_tuner(
        state.tune,
        state.tune.seed if state.tune.seed is not None else config.training.seed,
        state.epochs,
        search=state,
        directory=str(run_dir / "tuner"),
        project_name=digest,
        overwrite=False,
    )
    state.oracle = tuner.oracle
    try:
        with _quiet_retracing():
            tuner.search(verbose=0)
    except tuner.fatal as fatal:
        manifest.update(status="failed")
        runs.write_json(run_dir / "manifest.json", manifest)
        cause = fatal.__cause__ or fatal
        raise cause.with_traceback(cause.__traceback__) from None
    except BaseException as error:
        interrupted = isinstance(error, KeyboardInterrupt)
        manifest.update(status="interrupted" if interrupted else "failed")
        _write_results(run_dir, state, manifest)
        raise
    return _finish(run_dir, state, manifest, tuner.project_dir)


def _write_results(
    run_dir: Path, state: _Search, manifest: dict[str, Any]
) -> tuple[list[str], list[dict[str, Any]]]:
    import pandas as pd

    columns, rows = state.results()
    runs.write_text(
        run_dir / "results.csv", pd.DataFrame(rows, columns=columns).to_csv(index=False)
    )
    manifest.update(trials_run=len(rows))
    runs.write_json(run_dir / "manifest.json", manifest)
    return columns, rows


def _finish(run_dir: Path, state: _Search, manifest: dict[str, Any], project: str) -> TuneResult:
    columns, rows = _write_results(run_dir, state, manifest)
    best_trials = state.oracle.get_best_trials(1)
    if not best_trials:
        manifest.update(status="failed")
        runs.write_json(run_dir / "manifest.json", manifest)
        raise ConfigError(
            f"no trial of the search finished with a finite {state.tune.objective}; see "
            f"{run_dir / 'results.csv'} (a lower learning rate may help)"
        )
    best = best_trials[0]
    best_config = state.trial_config(best.hyperparameters)
    best_path = run_dir / "best.yaml"
    write_best(best_path, best_config, best, state, run_dir)
    best_row = next(row for row in rows if row["trial"] == best.trial_id)
    manifest.update(
        status="complete",
        finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        best={"trial": best.trial_id, "score": best.score, **active_values(best.hyperparameters)},
    )
    runs.write_json(run_dir / "manifest.json", manifest)
    return TuneResult(
        path=run_dir,
        best_config=best_path,
        objective=state.tune.objective,
        direction=state.direction,
        columns=columns,
        rows=rows,
        best=best_row,
        project=Path(project),
        manifest=manifest,
    )


def write_best(path: Path, config: Config, trial: Any, state: _Search, run_dir: Path) -> None:
    """Write ``best.yaml``: the best trial as a plain config (no spaces, no tune section)."""
    raw = runs.resolved_config(config)
    raw.pop("tune", None)
    if raw["model"].get("hidden") is None:
        raw["model"].pop("hidden", None)
    header = (
        f"# The best of {len(state.oracle.trials)} trials of `builder tune` "
        f"(trial {trial.trial_id}, {state.tune.objective} {trial.score:.6g}),\n"
        f"# from {run_dir}. Train it with: builder train {path}\n"
    )
    runs.write_text(path, header + yaml.safe_dump(raw, sort_keys=False))


@contextlib.contextmanager
def _quiet_retracing():
    """Silence TensorFlow's Python warnings while searching.

    Every trial builds a new model with new ``tf.function``s, and after a few trials
    TensorFlow warns that they "triggered tf.function retracing"; that is expected here.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def _keras_tuner_version() -> str:
    return kt.__version__
