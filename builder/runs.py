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
While a training or a resume runs, the directory also holds ``.lock`` (``builder.locks``: the
process that holds the run, as ``pid command``); it is removed when that process ends, and one left
by a killed process locks nothing. An interrupted run also keeps ``checkpoint/``
(``builder.checkpoints``) until it is resumed to the end.

A run directory is never overwritten, and every file appears whole: written to a temporary name
in the same folder, then renamed. ``manifest.json`` says ``"status": "running"`` until the run
has finished. Files and directories are created with the permissions the umask allows (0644 and
0755 under the usual 022), as any other program's, so others can read a run when the umask lets
them.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from builder import files
from builder.backend import use as use_backend
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


#: What a writer may do with a file already at its path: ``"any"`` replaces whatever is there
#: (a run's own files), ``"never"`` replaces nothing, not even a file that appears while the
#: write runs (an output the user named), ``"file"`` replaces a regular file only (``--force``).
OVERWRITE = ("any", "never", "file")

# Hard links are the atomic "create, never replace" step; where a file system has none, the
# fallback reserves the name with O_EXCL first and renames over the (empty) reservation.
_NO_HARD_LINKS = {errno.EPERM, errno.EMLINK, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}


def check_not_an_input(path: str | Path, run: str | Path, data: str | Path, what: str) -> None:
    """Refuse an output that is one of the command's inputs: the CSV it reads, or a file of the
    run it loads (``--force`` would otherwise write predictions over ``model.keras``).

    Raises:
        RunError: ``path`` is the same file as ``data`` or as one of the run's files.
    """
    run = Path(run)
    folder = run if run.is_dir() else run.parent
    inputs = [Path(data), run, *(folder / name for name in FILES)]
    for source in inputs:
        try:
            same = os.path.samefile(path, source)
        except (OSError, ValueError):  # either is missing (or unnamable): not the same file
            same = False
        if same:
            raise RunError(
                f"{what} {path} must not be a file the command reads. Received: the same file "
                f"as {source}"
            )


def check_output(path: str | Path, *, overwrite: str = "never", what: str = "file") -> None:
    """Refuse, before any work, an output path that a writer with ``overwrite`` would refuse.

    Writers check again at their last step; this is the early, fail-fast check.

    Args:
        path: the file to be written.
        overwrite: ``"never"`` or ``"file"`` (see ``OVERWRITE``); ``"any"`` checks only the
            directory.
        what: how messages name the file, e.g. ``"--output"``.

    Raises:
        RunError: the path is a directory, already exists (``"never"``), is something other
            than a regular file (``"file"``), or its directory is missing or unwritable.
    """
    path = Path(path)
    if overwrite not in OVERWRITE:
        raise ValueError(f"overwrite must be one of {OVERWRITE}. Received: {overwrite!r}")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:
        raise RunError(f"{what} {path} could not be checked. Received: {_reason(err)}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise RunError(f"{what} {path} must name a file. Received: a directory")
    if mode is not None and overwrite == "never":
        raise RunError(f"{what} {path} already exists; pass --force to overwrite it.")
    if mode is not None and overwrite == "file" and not stat.S_ISREG(mode):
        raise RunError(
            f"{what} {path} must be a regular file for --force to replace it. "
            f"Received: {files.file_kind(mode)}"
        )
    parent = path.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise RunError(
            f"{what} {path} must be in an existing, writable directory. Received: "
            f"{parent.resolve()}"
        )


def _reason(err: OSError) -> str:
    """``No space left on device (ENOSPC)``: an OSError as its message and errno name."""
    text = err.strerror or str(err) or type(err).__name__
    name = errno.errorcode.get(err.errno) if err.errno is not None else None
    return f"{text} ({name})" if name else text


def _new_temp(path: Path) -> Path:
    """Create an empty, hidden file beside ``path`` and return its name.

    Created with mode 0666, so the kernel applies the umask (and a directory's default ACL)
    exactly as for any other program's file; ``tempfile.mkstemp`` would make it 0600 whatever the
    umask, unreadable to anyone else. The suffix is kept: Keras and numpy insist on theirs.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.stem}-{os.getpid()}-{os.urandom(4).hex()}{path.suffix}"
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        except BaseException:
            # A signal's exception can land after open returned: the file is ours, remove it.
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path.parent))


def _link_new(tmp: Path, path: Path, what: str) -> None:
    """Give ``tmp`` the name ``path`` unless ``path`` exists, in one atomic step."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise RunError(
            f"{what} {path} already exists (it appeared while it was being written) and was "
            "left as it is; pass --force to overwrite it."
        ) from None
    except OSError as err:
        if err.errno not in _NO_HARD_LINKS:
            raise
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:
        raise RunError(
            f"{what} {path} already exists (it appeared while it was being written) and was "
            "left as it is; pass --force to overwrite it."
        ) from None
    try:
        os.replace(tmp, path)
    except BaseException:
        path.unlink(missing_ok=True)  # the empty reservation is ours
        raise


def atomic_write(
    path: Path,
    write: Callable[[Path], None],
    *,
    overwrite: str = "any",
    what: str = "file",
) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then give it the name ``path``.

    The file appears whole or not at all, and the temporary file never outlives the call: not on
    an error, nor on an exception that a signal raises (Ctrl-C, or SIGTERM under ``builder``).
    Permissions follow the umask.

    Args:
        path: the file to write.
        write: writes the content to the path it is given (a file that exists and is empty).
        overwrite: ``"any"`` (a run's own files: replace whatever is there), ``"never"`` (the
            last step fails, atomically, if ``path`` exists by then, even if it appeared
            during the write) or ``"file"`` (replace a regular file only, never a symbolic
            link, device, FIFO or directory).
        what: how messages name the file, e.g. ``"--output"``.

    Raises:
        RunError: the path is refused by ``overwrite``, or the file could not be written (disk
            full, read-only file system, permission denied...), named with the reason.
    """
    path = Path(path)
    if overwrite != "any":
        check_output(path, overwrite=overwrite, what=what)
    tmp: Path | None = None
    try:
        tmp = _new_temp(path)
        write(tmp)
        if overwrite == "never":
            _link_new(tmp, path, what)
        else:
            if overwrite == "file":
                check_output(path, overwrite="file", what=what)  # again: it may have changed
            os.replace(tmp, path)
            tmp = None
    except OSError as err:
        raise RunError(f"{what} {path} could not be written. Received: {_reason(err)}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str, *, overwrite: str = "any", what: str = "file") -> None:
    """Write a text file whole (``overwrite`` and ``what`` as in ``atomic_write``)."""
    atomic_write(
        path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=overwrite, what=what
    )


def write_csv_frames(
    path: Path, frames: Iterable[Any], *, overwrite: str = "any", what: str = "file"
) -> int:
    """Write pandas frames as one CSV (the first one's header), whole or not at all.

    Args:
        path: the CSV to write.
        frames: the frames, in order; read one at a time, so they can come from a generator.
        overwrite: what may be replaced at ``path`` (``atomic_write``); ``predict --output``
            passes ``"never"``, or ``"file"`` under ``--force``.
        what: how messages name the file.

    Returns:
        The number of data rows written.

    Raises:
        RunError: as ``atomic_write``; whatever ``frames`` raises passes through, and nothing
            is left at ``path`` nor beside it.
    """
    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            for i, frame in enumerate(frames):
                frame.to_csv(handle, index=False, header=i == 0)
                rows += len(frame)

    atomic_write(path, write, overwrite=overwrite, what=what)
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
    data["data"]["features"] = [feature.shown() for feature in config.data.features]
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


def read_json(path: Path, *, limit: int | None = None) -> dict[str, Any]:
    """Read a JSON file of a run: bounded, strict, an object, and checked where builder knows it.

    The file must be a regular file of at most ``limit`` bytes (``MAX_RUN_JSON_BYTES``), strict
    JSON (no ``NaN`` or ``Infinity``, every number finite) nested at most ``MAX_JSON_DEPTH``
    deep, and an object. ``metrics.json`` and ``manifest.json`` are also checked against what
    builder writes (``RUN_FILE_RULES``): the fields that inspect, plot, resume and runs read.

    Raises:
        RunError: the file is missing, not a regular file, too large, not strict JSON, not an
            object, or a field breaks its rule; the message names the file and the rule.
    """
    path = Path(path)
    if not os.path.lexists(path):
        raise RunError(f"run directory {path.parent} must contain {path.name}.")
    text = files.read_text(path, limit=limit or MAX_RUN_JSON_BYTES, what="run file", error=RunError)
    data = parse_json_object(text, path)
    rules = RUN_FILE_RULES.get(path.name)
    if rules is not None:
        check_fields(data, rules, path)
    return data


def load_model_file(path: str | Path, *, width: int | None = None, units: int | None = None) -> Any:
    """Load a ``.keras`` file safely, and only one that builder can use.

    Before Keras opens it: a regular file, a zip archive whose members declare at most
    ``MAX_MODEL_JSON_BYTES`` (the JSON ones) and ``MAX_MODEL_UNZIPPED_BYTES`` (all together),
    none compressed more than ``MAX_ZIP_RATIO`` times. Then Keras loads it with builder's
    layers registered and ``safe_mode=True``, which refuses Lambda layers and other serialized
    code instead of running it; the model must be one inspect, predict and plot can read
    (``check_builder_model``).

    Args:
        path: the ``.keras`` file.
        width: the number of features the model must take (a run's config), if known.
        units: the number of outputs it must give (a run's config), if known.

    Raises:
        RunError: the file is missing, not a regular ``.keras`` file, a zip over a limit, not
            loadable, or not a builder model.
    """
    path = Path(path)
    files.check_regular(path, what="model file", error=RunError)
    if path.suffix != ".keras":
        raise RunError(f"model file {path} must be a .keras file.")
    check_keras_zip(path)  # before TensorFlow loads: a bad file is refused at once

    import keras

    import builder.layers  # noqa: F401  registers Threshold before Keras looks it up

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # Keras raises many kinds for a bad file; all mean the same here
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError(f"{path} could not be loaded as a Keras model: {first[:300]}") from None
    check_builder_model(model, path, width=width, units=units)
    return model


def load_run_config(run_dir: Path) -> Config:
    """The resolved config a run recorded, as a RunError when missing or broken."""
    config_path = Path(run_dir) / "config.yaml"
    if not os.path.lexists(config_path):
        raise RunError(
            f"run directory {run_dir} must contain config.yaml (a run written by builder train)."
        )
    try:  # the guarded reader of every config: regular file, size, depth and node limits
        return load_config(config_path)
    except ConfigError as err:
        raise RunError(f"{config_path} is not a valid builder config: {err}") from None


def load_run(path: str | Path, *, backend: str | None = None) -> Run:
    """Load a run directory (or a bare ``model.keras`` file) for inspect, evaluate and predict.

    A run's ``history.csv``, ``metrics.json`` and ``manifest.json`` may be absent (an older or
    a bare model's run); one that is there is read and checked, and a damaged one is an error.

    Args:
        path: a run directory written by ``builder train``, or a ``.keras`` file inside one.
        backend: the Keras backend to load it on (``builder.backend``). Without it, a process
            that has imported Keras keeps its backend; one that has not takes
            ``KERAS_BACKEND``, then the backend the run trained on, then the default. A model
            trained on one backend loads and predicts on each of the others.

    Returns:
        The run, with its config, model, history, metrics and manifest.

    Raises:
        RunError: the path is missing, incomplete or not a builder run, or one of its files is
            damaged (the message names the file and the rule).
    """
    path = Path(path)
    try:
        kind = files.file_kind(os.stat(path).st_mode)
    except FileNotFoundError:
        raise RunError(f"run {path} does not exist.") from None
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) else "a NUL byte in the path"
        raise RunError(f"run {files.short(str(path))} cannot be read: {reason}") from None
    if kind is None:
        # A bare model file; the config of a run directory around it is optional.
        run_dir, model_path = path.parent, path
        if not os.path.lexists(run_dir / "config.yaml"):
            use_backend(backend)
            model = load_model_file(path)
            return Run(None, _standalone_config(model, path), model)
    elif kind == "a directory":
        run_dir, model_path = path, path / "model.keras"
    else:
        raise RunError(f"run {path} must be a run directory or a .keras file. Received: {kind}")
    config = load_run_config(run_dir)
    use_backend(backend, recorded=config.backend)
    if not os.path.lexists(model_path):
        raise RunError(f"run directory {run_dir} must contain model.keras.")
    # The small files first: a damaged one is reported without waiting for Keras.
    history_path = run_dir / "history.csv"
    history = read_history(history_path) if os.path.lexists(history_path) else None
    metrics_path = run_dir / "metrics.json"
    metrics = read_json(metrics_path) if os.path.lexists(metrics_path) else {}
    manifest_path = run_dir / "manifest.json"
    manifest = read_json(manifest_path) if os.path.lexists(manifest_path) else {}
    output = config.model.output
    model = load_model_file(
        model_path,
        width=len(config.data.feature_names),
        units=output.units if output is not None else None,
    )
    return Run(run_dir, config, model, history, metrics, manifest)


def _standalone_config(model: Any, path: Path) -> Config:
    """A config describing a model file found outside a run: inputs named x1..xn, target y."""
    import re

    from builder.layers import CategoryColumns

    width = int(model.inputs[0].shape[-1])  # check_builder_model: one input (None, width)
    units = int(model.outputs[0].shape[-1])
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem) or "model"
    features: list[Any] = [f"x{i + 1}" for i in range(width)]
    for layer in model.layers:
        if isinstance(layer, CategoryColumns):  # it names its columns and knows their types
            features = [
                {"name": c["name"], "type": "categorical" if "vocabulary" in c else "numeric"}
                for c in layer.columns
            ]
    raw: dict[str, Any] = {
        "name": name,
        "data": {"features": features, "target": "y"},
        "model": {"layers": [], "output": {"units": units}},
    }
    if units > 1:  # one softmax unit per class
        raw["task"] = "classification"
        raw["model"]["output"]["activation"] = "softmax"
    return validate_config(raw)


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
    if epochs_run is None:
        epochs_run = len(history)
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


#: The status of a ``builder runs`` row whose manifest, metrics or results cannot be read.
DAMAGED = "damaged"


def list_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    """Past runs under ``runs_dir``, newest first, from their manifests and metrics.

    Each row has ``kind``: ``"train"`` (with the test metrics and baselines) or ``"tune"``
    (with ``tune``: objective, direction, trials run, and the best trial and its score, from
    the manifest or, for a search that did not finish, from its ``results.csv``). A run whose
    ``manifest.json``, ``metrics.json`` or ``results.csv`` is damaged is listed too, with
    status ``"damaged"`` and ``damaged``: the reason; it never hides the other runs.

    Raises:
        RunError: ``runs_dir`` exists but is not a directory.
    """
    runs_dir = Path(runs_dir)
    try:
        kind = files.file_kind(os.stat(runs_dir).st_mode)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) else "a NUL byte in the path"
        raise RunError(
            f"runs directory {files.short(str(runs_dir))} cannot be read: {reason}"
        ) from None
    if kind != "a directory":
        raise RunError(
            f"runs directory {runs_dir} must be a directory. Received: {kind or 'a file'}"
        )
    rows = [_run_row(path) for path in runs_dir.glob("*/*/manifest.json")]
    rows.sort(key=lambda row: (row["started"], row["path"]), reverse=True)
    return rows


def _tune_summary(
    run_dir: Path, manifest: dict[str, Any], *, read_results: bool = True
) -> dict[str, Any]:
    """A tune run's objective and best trial (builder.tuning writes the manifest and results).

    Raises:
        RunError: ``results.csv`` is there but cannot be read (``read_results`` only).
    """
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
    results_path = run_dir / "results.csv"
    if not read_results or not os.path.lexists(results_path):
        return summary
    import csv
    import io

    text = files.read_text(results_path, limit=MAX_RUN_TABLE_BYTES, what="run file", error=RunError)
    try:
        results = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as err:
        raise RunError(f"{results_path} must be a CSV file. Received: {err}") from None
    summary["trials"] = len(results)
    scored = []
    for result in results:
        try:
            score = float(result.get(objective) or "nan")
        except (TypeError, ValueError):
            continue
        if math.isfinite(score):
            scored.append((score, result.get("trial")))
    if scored:
        score, trial = (max if direction == "max" else min)(scored, key=lambda s: s[0])
        summary.update(best_trial=trial, best_score=score)
    return summary


def _run_row(manifest_path: Path) -> dict[str, Any]:
    """One row of ``list_runs``; a damaged file makes the row ``DAMAGED``, with the reason."""
    run_dir = manifest_path.parent
    row: dict[str, Any] = {
        "path": str(run_dir),
        "name": run_dir.parent.name,
        "kind": "train",
        "started": "",
        "status": "unknown",
        "epochs": None,
        "test": {},
        "baselines": {},
    }
    try:
        manifest = read_json(manifest_path)
    except RunError as err:
        return {**row, "status": DAMAGED, "damaged": str(err)}
    kind = manifest.get("kind", "train")
    row.update(
        name=manifest.get("name", row["name"]),
        kind=kind,
        started=manifest.get("started", ""),
        status=manifest.get("status", "unknown"),
        epochs=manifest.get("epochs_run"),
    )
    try:
        if kind == "tune":
            row["tune"] = _tune_summary(run_dir, manifest, read_results=False)
            row["tune"] = _tune_summary(run_dir, manifest)
        metrics_path = run_dir / "metrics.json"
        if os.path.lexists(metrics_path):
            metrics = read_json(metrics_path)
            row.update(test=metrics.get("test", {}), baselines=metrics.get("baselines", {}))
    except RunError as err:
        row.update(status=DAMAGED, damaged=str(err))
    return row


# --------------------------------------------------------------------------------------------
# Reading a run's files: limits, strict JSON, and the rules of what builder writes
# --------------------------------------------------------------------------------------------

#: ``metrics.json`` and ``manifest.json``: a page of numbers and names (the least-squares
#: coefficients and feature names grow with the features, 16 bytes or so each).
MAX_RUN_JSON_BYTES = 16 << 20
#: ``history.csv``, a tune's ``results.csv`` and a checkpoint's ``state.json``: a row per epoch
#: (or trial), up to ``MAX_EPOCHS`` rows of every metric, train and validation.
MAX_RUN_TABLE_BYTES = 256 << 20
#: Nesting of objects and lists in a run's JSON; builder writes at most 4 levels.
MAX_JSON_DEPTH = 32
#: A ``.keras`` file's JSON members (``config.json``, ``metadata.json``): a builder model's
#: config is a few KiB per layer, and a config holds at most ``MAX_HIDDEN_LAYERS`` layers.
MAX_MODEL_JSON_BYTES = 16 << 20
#: All members of a ``.keras`` file, unzipped: ``MAX_PARAMETERS`` float32 weights with two
#: optimizer slots each (Adam's) are 600 MB.
MAX_MODEL_UNZIPPED_BYTES = 1 << 30
#: Keras stores members uncompressed; a member larger than ``ZIP_RATIO_FLOOR`` that unzips to
#: more than this many times its stored size is a zip bomb, not a model.
MAX_ZIP_RATIO = 100
ZIP_RATIO_FLOOR = 1 << 20
#: Members of a ``.keras`` file: Keras writes three (and assets, which builder models lack).
MAX_ZIP_MEMBERS = 1000


class _NotStrict(ValueError):
    """A JSON token strict JSON does not have: NaN, Infinity, a number beyond float range."""


def _no_constant(token: str) -> Any:
    raise _NotStrict(token)


def _finite(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise _NotStrict(token)
    return value


def parse_json_object(text: str, path: Path) -> dict[str, Any]:
    """A run file's JSON text as an object: strict JSON, at most ``MAX_JSON_DEPTH`` deep.

    Raises:
        RunError: the text is not JSON, has ``NaN``, ``Infinity`` or a number beyond float
            range, nests too deep, or is not an object; the message names ``path``.
    """
    deep = f"{path} must nest at most {MAX_JSON_DEPTH} objects and lists deep. Received: deeper"
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except _NotStrict as err:
        raise RunError(
            f"{path} must be strict JSON: finite numbers, no NaN or Infinity. Received: {err}"
        ) from None
    except RecursionError:
        raise RunError(deep) from None
    except ValueError as err:  # JSONDecodeError, or an integer of more than 4300 digits
        raise RunError(f"{path} must be valid JSON. Received: {err}") from None
    if not isinstance(data, dict):
        raise RunError(f"{path} must hold a JSON object. Received: {_shown(data)}")
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise RunError(deep)
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return data


def _shown(value: Any) -> str:
    """A JSON value as messages show it: short, and its kind when it is a container."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, str):
        return files.short(value, 60)
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


#: The kinds a field of a run file can be checked as: ``kind -> (check, rule text)``. A
#: trailing ``?`` in a rule's kind also allows null (what NaN is written as).
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "string": (lambda v: isinstance(v, str), "a string"),
    "number": (_number, "a number"),
    "count": (_count, "a non-negative integer"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "object": (lambda v: isinstance(v, dict), "an object"),
    "numbers": (
        lambda v: isinstance(v, dict) and all(_number(x) for x in v.values()),
        "an object of numbers",
    ),
    "metrics": (
        lambda v: isinstance(v, dict) and all(x is None or _number(x) for x in v.values()),
        "an object of numbers (or null)",
    ),
    "counts": (
        lambda v: isinstance(v, dict) and all(_count(x) for x in v.values()),
        "an object of non-negative integers",
    ),
    "strings": (
        lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "a list of strings",
    ),
    "rows": (
        lambda v: (
            isinstance(v, list)
            and all(isinstance(r, dict) and all(_number(x) for x in r.values()) for r in v)
        ),
        "a list of objects of numbers",
    ),
}

#: A rule: ``(dotted key, kind or tuple of allowed values, required)``; a field whose parent
#: object is absent is not checked.
Rule = tuple[str, str | tuple[Any, ...], bool]

_LEAST_SQUARES_METRICS = ("mse", "rmse", "mae", "r2", "accuracy", "auc")
_CLASS_METRICS = ("accuracy", "macro_f1", "auc", "log_loss", "mse")

#: What ``builder train`` writes to ``metrics.json``, as far as inspect, plot and runs read it.
METRICS_RULES: tuple[Rule, ...] = (
    ("task", ("regression", "classification"), False),
    ("test", "metrics", False),
    ("baselines", "object", False),
    ("baselines.mean_predictor", "metrics", False),
    ("baselines.least_squares", "object", False),
    ("baselines.least_squares.coefficients", "numbers", False),
    ("baselines.least_squares.intercept", "number", False),
    *((f"baselines.least_squares.{m}", "number?", False) for m in _LEAST_SQUARES_METRICS),
    ("baselines.majority_class", "object", False),
    ("baselines.majority_class.class", "string", False),
    *((f"baselines.majority_class.{m}", "number?", False) for m in _CLASS_METRICS),
    ("baselines.logistic", "metrics", False),
    ("classes", "object", False),
    ("classes.classes", "strings", False),
    ("classes.per_class", "object", False),
    ("epochs", "count", False),
    ("epochs_run", "count", False),
    ("early_stopping", "object?", False),
    ("early_stopping.monitor", "string", False),
    ("early_stopping.patience", "count", False),
    ("early_stopping.stopped_epoch", "count?", False),
    ("early_stopping.restored_epoch", "count?", False),
    ("timings", "numbers", False),
    ("warnings", "strings", False),
)

#: What ``builder train`` and ``builder tune`` write to ``manifest.json``, as far as runs,
#: plot (the data file's hash) and resume read it.
MANIFEST_RULES: tuple[Rule, ...] = (
    ("name", "string", False),
    ("classes", "strings", False),
    ("kind", ("train", "tune"), False),
    ("status", "string", False),
    ("started", "string", False),
    ("finished", "string", False),
    ("epochs_run", "count?", False),
    ("resumed_from_epoch", "count", False),
    ("features", "strings", False),
    ("target", "string", False),
    ("data", "object", False),
    ("data.path", "string", False),
    ("data.sha256", "string", False),
    ("data.rows", "counts", False),
    ("data.streaming", "bool", False),
    ("objective", "string?", False),
    ("direction", ("min", "max"), False),
    ("trials_run", "count?", False),
    ("max_trials", "count?", False),
    ("best", "object?", False),
    ("best.score", "number?", False),
)

#: The rules ``read_json`` checks a run file against, by file name.
RUN_FILE_RULES: dict[str, tuple[Rule, ...]] = {
    "metrics.json": METRICS_RULES,
    "manifest.json": MANIFEST_RULES,
}


def check_fields(data: dict[str, Any], rules: Iterable[Rule], path: Path) -> None:
    """Check the fields of a run file's JSON object against ``rules``.

    Raises:
        RunError: a required field is missing or a field is not of its kind, as one line:
            ``RUN/metrics.json is damaged: 'test.mse' must be a number. Received: "abc"``.
    """
    for key, kind, required in rules:
        *parents, name = key.split(".")
        parent: Any = data
        for part in parents:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if name not in parent:
            if required:
                raise RunError(f"{path} is damaged: it must have the field '{key}'.")
            continue
        value = parent[name]
        if isinstance(kind, tuple):
            ok, text = value in kind, " or ".join(json.dumps(v) for v in kind)
        else:
            check, text = KINDS[kind.rstrip("?")]
            ok = check(value) or (kind.endswith("?") and value is None)
            text += " or null" if kind.endswith("?") else ""
        if not ok:
            raise RunError(f"{path} is damaged: '{key}' must be {text}. Received: {_shown(value)}")


def read_history(path: Path) -> Any:
    """``history.csv`` as a pandas frame, checked against what ``builder train`` writes.

    A row per epoch: an ``epoch`` column of increasing positive integers, a ``loss`` column,
    and every cell a finite number.

    Raises:
        RunError: the file is not a regular file, over ``MAX_RUN_TABLE_BYTES``, not CSV, or
            breaks a rule; the message names the file and the rule.
    """
    import csv
    import io

    import numpy as np
    import pandas as pd
    from pandas.api.types import is_bool_dtype

    text = files.read_text(path, limit=MAX_RUN_TABLE_BYTES, what="run file", error=RunError)
    try:
        header = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error as err:
        raise RunError(f"{path} must be a CSV file. Received: {err}") from None
    duplicate = next((name for i, name in enumerate(header) if name in header[:i]), None)
    if duplicate is not None:
        raise RunError(f"{path} is damaged: column names must be unique. Received: "
                       f"'{duplicate}' twice")  # fmt: skip
    if "epoch" not in header or "loss" not in header:
        raise RunError(
            f"{path} is damaged: it must have an 'epoch' and a 'loss' column, as builder train "
            f"writes. Received: columns {', '.join(files.short(n, 30) for n in header[:10])}"
        )
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError(f"{path} must be a CSV file. Received: {first[:200]}") from None
    if len(frame) == 0:
        raise RunError(f"{path} is damaged: it must have a row per epoch. Received: no rows")
    for column in frame.columns:
        series = frame[column]
        if is_bool_dtype(series):
            values = np.full(len(series), np.nan)
        else:  # a column with a cell that is not a number is read as text: find that cell
            values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            cell = series.iloc[int(bad[0])]
            shown = "an empty cell" if pd.isna(cell) else files.short(str(cell), 40)
            raise RunError(
                f"{path} is damaged: column '{files.short(str(column), 40)[1:-1]}' must hold "
                f"finite numbers. Received: {shown} in row {int(bad[0]) + 1}"
            )
    epochs = frame["epoch"].to_numpy(dtype=float)
    if (epochs < 1).any() or (epochs != np.round(epochs)).any() or (np.diff(epochs) <= 0).any():
        raise RunError(
            f"{path} is damaged: column 'epoch' must count up from 1 in whole numbers. "
            f"Received: {frame['epoch'].head(5).tolist()}"
        )
    return frame


def _zip_declared_members(path: Path) -> int | None:
    """The member count a zip's end-of-central-directory record declares (65,535 stands for
    a ZIP64 archive, which a .keras file never needs), or None when there is no such record
    (``zipfile`` then says what is wrong)."""
    import struct

    tail_bytes = 22 + 65_535  # the record, and the longest comment it may carry
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - tail_bytes))
            tail = handle.read(tail_bytes)
    except OSError:
        return None
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        return None
    return struct.unpack_from("<H", tail, at + 10)[0]


def check_keras_zip(path: Path) -> None:
    """Refuse a ``.keras`` file that is no zip archive, or whose members would unzip too large.

    Keras reads each member whole into memory; the declared sizes are what it would allocate,
    and ``zipfile`` never reads past them.

    Raises:
        RunError: the file is not a zip archive, has more than ``MAX_ZIP_MEMBERS`` members, or
            a member (or all of them) declares more than its limit, or a ratio beyond
            ``MAX_ZIP_RATIO``.
    """
    import zipfile

    declared = _zip_declared_members(path)
    if declared is not None and declared > MAX_ZIP_MEMBERS:  # before zipfile parses them all
        raise RunError(
            f"model file {path} must have at most {MAX_ZIP_MEMBERS} zip members. "
            f"Received: {declared:,} declared"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile as err:
        raise RunError(
            f"model file {path} could not be loaded as a Keras model: a .keras file must be a "
            f"zip archive. Received: {err}"
        ) from None
    except OSError as err:
        raise RunError(f"model file {path} cannot be read: {err.strerror or err}") from None
    if len(members) > MAX_ZIP_MEMBERS:
        raise RunError(
            f"model file {path} must have at most {MAX_ZIP_MEMBERS} zip members. "
            f"Received: {len(members):,}"
        )
    total = 0
    for info in members:
        name = files.short(info.filename, 60)
        limit = MAX_MODEL_JSON_BYTES if info.filename.endswith(".json") else None
        if limit is not None and info.file_size > limit:
            raise RunError(
                f"model file {path}: zip member {name} must unzip to at most "
                f"{files.size_text(limit)}. Received: {info.file_size:,} bytes declared"
            )
        if info.file_size > ZIP_RATIO_FLOOR and info.file_size > MAX_ZIP_RATIO * max(
            info.compress_size, 1
        ):
            raise RunError(
                f"model file {path}: zip member {name} must unzip to at most {MAX_ZIP_RATIO} "
                f"times its stored size. Received: {info.file_size:,} bytes declared, "
                f"{info.compress_size:,} stored"
            )
        total += info.file_size
    if total > MAX_MODEL_UNZIPPED_BYTES:
        raise RunError(
            f"model file {path} must unzip to at most {files.size_text(MAX_MODEL_UNZIPPED_BYTES)}"
            f". Received: {total:,} bytes declared"
        )


#: The layers a builder model is made of (``builder.model``), besides Keras's InputLayer.
BUILDER_LAYERS = (
    "Normalization",
    "Dense",
    "Dropout",
    "BatchNormalization",
    "Activation",
    "Threshold",
    "Rescaling",
    "CategoryColumns",
)


def check_builder_model(
    model: Any, path: Path, *, width: int | None = None, units: int | None = None
) -> None:
    """Refuse a Keras model that inspect, predict, evaluate and plot cannot read.

    A builder model is built, takes one float input of shape ``(None, features)`` and gives one
    output of shape ``(None, units)`` (one unit, or a classifier's one per class); its layers
    are of ``BUILDER_LAYERS``, with at least one
    Dense layer, a Normalization layer (if any) first and a Rescaling layer (if any) last, as
    ``builder.model`` builds them.

    Args:
        model: the loaded model.
        path: its file, for messages.
        width: the number of features it must take (the run's config), if known.
        units: the number of outputs it must give (the run's config), if known.

    Raises:
        RunError: ``model file X must be a builder model: <rule>. Received: <what it is>``.
    """
    import keras
    import numpy as np

    from builder.layers import CategoryColumns, Threshold

    def refuse(rule: str, received: str) -> RunError:
        return RunError(f"model file {path} must be a builder model: {rule}. Received: {received}")

    if not getattr(model, "built", False):
        raise refuse("built, with its input shape", "an unbuilt model")
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError, TypeError):
        raise refuse("one input of shape (None, features)", "a model with no inputs") from None
    if len(inputs) != 1:
        raise refuse("one input of shape (None, features)", f"{len(inputs)} inputs")
    shape = tuple(inputs[0].shape)
    if len(shape) != 2 or not isinstance(shape[1], int) or shape[1] < 1:
        raise refuse("one input of shape (None, features)", f"input shape {shape}")
    if not str(inputs[0].dtype).startswith(("float", "bfloat")):
        raise refuse("a float input", f"input dtype {inputs[0].dtype}")
    out_shapes = [tuple(t.shape) for t in outputs]
    if len(out_shapes) != 1 or len(out_shapes[0]) != 2 or out_shapes[0][0] is not None:
        shown = out_shapes[0] if len(out_shapes) == 1 else f"{len(out_shapes)} outputs"
        raise refuse("one output of shape (None, units)", f"output shape {shown}")
    kinds = {
        "Normalization": keras.layers.Normalization,
        "Dense": keras.layers.Dense,
        "Dropout": keras.layers.Dropout,
        "BatchNormalization": keras.layers.BatchNormalization,
        "Activation": keras.layers.Activation,
        "Threshold": Threshold,
        "Rescaling": keras.layers.Rescaling,
        "CategoryColumns": CategoryColumns,
    }
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    for i, layer in enumerate(layers):
        named = f"layer '{files.short(layer.name, 40)[1:-1]}'"
        if not isinstance(layer, tuple(kinds.values())):
            raise refuse(
                f"layers of the types builder builds ({', '.join(BUILDER_LAYERS)})",
                f"{named} of type {type(layer).__name__}",
            )
        if isinstance(layer, keras.layers.Normalization):
            mean = np.asarray(keras.ops.convert_to_numpy(layer.mean))
            if i != 0 or getattr(layer, "invert", False) or mean.size != shape[1]:
                raise refuse(
                    f"a Normalization layer only first, of the {shape[1]} inputs",
                    f"{named} at position {i + 1} with {mean.size} means"
                    + (", inverted" if getattr(layer, "invert", False) else ""),
                )
        if isinstance(layer, CategoryColumns) and (i > 1 or len(layer.columns) != shape[1]):
            raise refuse(
                f"a CategoryColumns layer only at the start, of the {shape[1]} inputs",
                f"{named} at position {i + 1} with {len(layer.columns)} columns",
            )
        if isinstance(layer, keras.layers.Rescaling):
            scalar = all(_number(v) for v in (layer.scale, layer.offset))
            if i != len(layers) - 1 or not scalar:
                raise refuse(
                    "a Rescaling layer only last, with a number as scale and offset",
                    f"{named} at position {i + 1} of {len(layers)}",
                )
        if isinstance(layer, keras.layers.Dense) and (
            getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False)
        ):
            raise refuse("plain Dense layers", f"{named}, quantized or with LoRA")
    if not any(isinstance(layer, keras.layers.Dense) for layer in layers):
        raise refuse("at least one Dense layer", "none")
    if width is not None and shape[1] != width:
        raise RunError(
            f"model file {path} must take the {width} features config.yaml lists. "
            f"Received: input shape {shape}"
        )
    if units is not None and out_shapes[0][1] != units:
        raise RunError(
            f"model file {path} must give the {units} outputs config.yaml's model.output "
            f"lists. Received: output shape {out_shapes[0]}"
        )
