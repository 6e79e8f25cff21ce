"""Export a run's model as ONNX, a TensorFlow SavedModel or LiteRT, checked before it is written.

Every format is made by Keras's own ``model.export``, from an export copy of the model
(``export_model``) in which the ``Normalization`` layer is replaced by the same arithmetic on
constants: Keras's ONNX export turns that layer's mean and variance into extra graph inputs,
which onnxruntime then refuses to run without. The export is written into a hidden folder beside
``--output``, loaded in its own runtime (onnxruntime, ``tf.saved_model.load``, the LiteRT
interpreter from ``ai-edge-litert``) and its outputs compared with the ``.keras`` model's on the
run's test rows, plus rows whose categorical values are all unseen; only an export that agrees is
moved to ``--output``. Anything else is one ``ExportError`` line, and nothing is left behind.

An output agrees when ``|export - keras| <= rtol * max(|keras|, scale)`` for every row and
output unit, where ``scale`` is 1 for a classifier's probabilities and, for a regression, the
mean ``|keras|`` prediction on the rows checked (so a prediction near zero is held to the
precision of the typical prediction, not to an impossible relative one).

Beside the export, a JSON file (``metadata_path``) says how to feed it and read it: the input's
name, the features in order, dtype, each categorical feature's vocabulary, the output's meaning,
and the differences measured here.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import stat
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from builder import files
from builder.errors import DataError, ExportError, RunError
from builder.runs import Run, atomic_write, check_not_an_input, check_output, json_text, write_text

#: The formats ``export`` writes, by builder's names (Keras calls the second "tf_saved_model").
FORMATS = ("onnx", "saved_model", "litert")
_KERAS_FORMATS = {"onnx": "onnx", "saved_model": "tf_saved_model", "litert": "litert"}

#: The relative tolerance of each format's check (see the module docstring for the rule). LiteRT
#: runs its own kernels (XNNPACK), yet meets the same (README, "Exports").
RTOL = {"onnx": 1e-5, "saved_model": 1e-5, "litert": 1e-5}

#: At most this many test rows are checked (the first ones of the test split).
MAX_CHECK_ROWS = 10_000
#: This many test rows are checked again with every categorical column set to code 0 (unseen).
UNSEEN_ROWS = 100

#: The input tensor's name in every format (the name of builder's ``keras.Input``).
INPUT_NAME = "features"

#: Where a SavedModel directory keeps builder's JSON: ``assets.extra`` is SavedModel's folder
#: for files that travel with the model and that loaders ignore.
SAVED_MODEL_METADATA = Path("assets.extra") / "builder_export.json"

CODES = (
    "a categorical feature is fed as a float code: code i (1..V) is vocabulary[i-1]; 0, or any "
    "value that is not a whole number in 1..V, means a value not seen in training, which the "
    "model encodes as the average training value (the column's training frequencies)"
)

# The modules each format needs beyond builder's own dependencies (the `export` extra).
_NEEDS = {
    "onnx": ("tf2onnx", "onnx", "onnxruntime"),
    "saved_model": (),
    "litert": ("ai_edge_litert",),
}
_RUNTIMES = {"onnx": "onnxruntime", "saved_model": "tensorflow", "litert": "ai-edge-litert"}
_ARTIFACTS = {"onnx": "model.onnx", "saved_model": "saved_model", "litert": "model.tflite"}


def metadata_path(fmt: str, output: str | Path) -> Path:
    """Where ``export`` writes its JSON: ``OUTPUT.json`` beside an ONNX or LiteRT file,
    ``OUTPUT/assets.extra/builder_export.json`` inside a SavedModel directory."""
    output = Path(output)
    if fmt == "saved_model":
        return output / SAVED_MODEL_METADATA
    return output.with_name(output.name + ".json")


def check_outputs(fmt: str, output: str | Path, *, force: bool = False) -> None:
    """Refuse, before any work, an ``--output`` that ``export`` would refuse.

    Without ``force`` nothing there is replaced. With it, an ONNX or LiteRT export replaces a
    regular file (and its JSON), a SavedModel export a SavedModel directory only (one holding
    ``saved_model.pb``), never another directory.

    Raises:
        ExportError: ``fmt`` is not one of ``FORMATS``.
        RunError: the path is refused (exists, is the wrong kind, or its directory is missing or
            unwritable).
    """
    if fmt not in FORMATS:
        raise ExportError(
            f"--format must be one of {', '.join(FORMATS)}. Received: --format {fmt!r}"
        )
    text = str(output)
    overwrite = "file" if force else "never"
    if fmt != "saved_model":
        if text.endswith("/"):  # Path() would drop the slash that says a directory was meant
            raise RunError(
                f"--output {text} must name a file for --format {fmt}. Received: a directory "
                "path (it ends in a slash)"
            )
        check_output(output, overwrite=overwrite, what="--output")
        check_output(metadata_path(fmt, output), overwrite=overwrite, what="metadata file")
        return
    path = Path(output)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:
        raise RunError(f"--output {path} could not be checked. Received: {err.strerror}") from None
    if mode is not None and not force:
        raise RunError(f"--output {path} already exists; pass --force to overwrite it.")
    if mode is not None and not (stat.S_ISDIR(mode) and (path / "saved_model.pb").is_file()):
        kind = "a directory without saved_model.pb" if stat.S_ISDIR(mode) else _kind(mode)
        raise RunError(
            f"--output {path} must be a SavedModel directory (one holding saved_model.pb) for "
            f"--force to replace it. Received: {kind}"
        )
    parent = path.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise RunError(
            f"--output {path} must be in an existing, writable directory. Received: "
            f"{parent.resolve()}"
        )


def export(run: Run, fmt: str, output: str | Path, *, force: bool = False) -> dict[str, Any]:
    """Export ``run``'s model in ``fmt``, checked against the model before it is written.

    Args:
        run: a run loaded from its directory (its test split is what the export is checked on).
        fmt: ``"onnx"`` (a file), ``"saved_model"`` (a directory) or ``"litert"`` (a
            ``.tflite`` flatbuffer file).
        output: where the export goes; its JSON goes to ``metadata_path(fmt, output)``.
        force: replace what is at ``output`` (``check_outputs`` says what may be replaced).

    Returns:
        What the JSON file holds, plus ``path`` (the export) and ``metadata`` (the JSON file).

    Raises:
        ExportError: the format's runtime is not installed, the converter refuses the model,
            the runtime cannot run the export, or its outputs differ from the model's.
        DataError: the run has no test split to check on (a bare model file, a data file that
            is gone or changed).
        RunError: ``output`` is refused (``check_outputs``), or is one of the run's files.
    """
    check_outputs(fmt, output, force=force)
    output = Path(output)
    if run.path is None:
        raise DataError(
            "a model file outside a run directory has no test split to check an export "
            "against; export needs the run directory builder train wrote."
        )
    meta = metadata_path(fmt, output)
    data = run.config.data_path() or run.path
    for path in (output, meta):
        check_not_an_input(path, run.path, data, what="--output")
    _require(fmt)
    x, tested, unseen = check_rows(run)

    from builder.training import model_outputs

    reference = model_outputs(run.model, x)
    folder = _temp_dir(output)
    try:
        artifact = folder / _ARTIFACTS[fmt]
        _keras_export(export_model(run.model), fmt, artifact)
        try:
            got, io = _RUN[fmt](artifact, x)
        except ExportError:
            raise
        except Exception as err:  # each runtime raises its own kinds for a file it cannot run
            raise ExportError(
                f"the {fmt} export could not be run in {_RUNTIMES[fmt]}: {_first_line(err)}"
            ) from None
        classification = run.config.task == "classification"
        check = compare(
            reference,
            got,
            rtol=RTOL[fmt],
            scale=1.0 if classification else None,
            where=f"the {fmt} export",
        )
        check.update(rows=tested, unseen_rows=unseen, runtime=_RUNTIMES[fmt])
        info = metadata(run, fmt, output, io, check)
        text = json_text(info) + "\n"
        if fmt == "saved_model":
            (artifact / SAVED_MODEL_METADATA).parent.mkdir(exist_ok=True)
            (artifact / SAVED_MODEL_METADATA).write_text(text, encoding="utf-8")
            _place_directory(artifact, output, folder)
        else:
            overwrite = "file" if force else "never"
            atomic_write(
                output, lambda tmp: os.replace(artifact, tmp), overwrite=overwrite, what="--output"
            )
            try:
                write_text(meta, text, overwrite=overwrite, what="metadata file")
            except BaseException:
                output.unlink(missing_ok=True)  # the export without its JSON is not left alone
                raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {**info, "path": str(output), "metadata": str(meta)}


def export_model(model: Any) -> Any:
    """The model as it is exported: the same layers (shared, not copied), with a
    ``Normalization`` layer replaced by its arithmetic on constants.

    Keras's ``Normalization`` computes ``(x - mean) / max(sqrt(variance), epsilon)``; the copy
    computes exactly that, in float32, with the mean and the denominator as constants, so it
    gives the model's outputs bit for bit, and a converter sees constants rather than the
    layer's state (which Keras's ONNX export turns into graph inputs).
    """
    import keras

    width = int(model.inputs[0].shape[-1])
    inputs = keras.Input(shape=(width,), name=INPUT_NAME, dtype="float32")
    outputs = inputs
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            mean = np.asarray(keras.ops.convert_to_numpy(layer.mean), np.float32)
            variance = np.asarray(keras.ops.convert_to_numpy(layer.variance), np.float32)
            scale = np.maximum(np.sqrt(variance), np.float32(keras.config.epsilon()))
            if layer.invert:
                outputs = keras.ops.add(mean, keras.ops.multiply(outputs, scale))
            else:
                outputs = keras.ops.divide(keras.ops.subtract(outputs, mean), scale)
        else:
            outputs = layer(outputs)
    copy = keras.Model(inputs, outputs, name=model.name)
    copy(np.zeros((1, width), np.float32), training=False)  # Keras's ONNX export wants it called
    return copy


def check_rows(run: Run) -> tuple[np.ndarray, int, int]:
    """The rows an export is checked on: ``(x, test rows, unseen rows)``.

    The first ``MAX_CHECK_ROWS`` rows of the run's test split, then (for a model with
    categorical features) the first ``UNSEEN_ROWS`` of them again with every categorical column
    set to code 0, the path of a value not seen in training.

    Raises:
        DataError: as ``builder.predict.holdout_split``, or the test split is empty.
    """
    from builder.predict import holdout_split, vocabularies_of

    x = holdout_split(run, "export")[0][:MAX_CHECK_ROWS]
    if not len(x):
        raise DataError(f"run {run.path} has no test rows to check an export against.")
    features = list(run.config.data.feature_names)
    categorical = [features.index(name) for name in vocabularies_of(run.model)]
    if not categorical:
        return np.ascontiguousarray(x, np.float32), len(x), 0
    unseen = x[:UNSEEN_ROWS].copy()
    unseen[:, categorical] = 0.0
    return np.ascontiguousarray(np.concatenate([x, unseen]), np.float32), len(x), len(unseen)


def compare(
    reference: np.ndarray,
    got: Any,
    *,
    rtol: float,
    scale: float | None = None,
    where: str = "the export",
) -> dict[str, Any]:
    """Check an export's outputs against the model's (the module docstring's rule).

    Args:
        reference: the ``.keras`` model's outputs, ``(rows, units)``.
        got: the export's outputs for the same rows.
        rtol: the relative tolerance.
        scale: the floor of ``|reference|`` in the rule; ``None``: the mean ``|reference|`` of
            each output unit (a regression's typical prediction).
        where: how the message names the export.

    Returns:
        ``max_abs_diff``, ``max_rel_diff`` (``|export - keras| / max(|keras|, scale)``, the
        quantity held to ``rtol``), ``rtol``, ``scale`` (one per output unit) and ``rule``.

    Raises:
        ExportError: the shapes differ, or some row is outside the tolerance.
    """
    reference = np.asarray(reference, np.float64)
    got = np.asarray(got, np.float64)
    if got.shape != reference.shape:
        raise ExportError(
            f"{where} gives outputs of shape {got.shape} where the model gives "
            f"{reference.shape}; nothing was written."
        )
    finite = np.where(np.isfinite(reference), np.abs(reference), 0.0)
    if scale is None:
        floor = np.maximum(finite.mean(axis=0), np.finfo(np.float32).tiny)
    else:
        floor = np.full(reference.shape[1], float(scale))
    with np.errstate(invalid="ignore"):
        same = (got == reference) | (np.isnan(got) & np.isnan(reference))
        diff = np.where(same, 0.0, np.abs(got - reference))
        diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only: as far as can be
        relative = diff / np.maximum(np.abs(reference), floor)
    relative = np.where(np.isnan(relative), np.inf, relative)
    agree = relative <= rtol
    found = {
        "max_abs_diff": float(diff.max()),
        "max_rel_diff": float(relative.max()),
        "rtol": rtol,
        "scale": [float(value) for value in floor],
        "rule": "|export - keras| <= rtol * max(|keras|, scale), per output unit",
    }
    bad = ~agree.all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ExportError(
            f"{where} differs from the model on {int(bad.sum()):,} of {len(bad):,} checked rows "
            f"(max relative difference {found['max_rel_diff']:.3g}, tolerance {rtol:g}; first at "
            f"row {first}: {got[first].tolist()} vs {reference[first].tolist()}); nothing was "
            "written."
        )
    return found


def metadata(
    run: Run, fmt: str, output: Path, io: dict[str, str], check: dict[str, Any]
) -> dict[str, Any]:
    """The JSON written beside an export: how to feed it, how to read it, what was checked."""
    import keras

    from builder import __version__
    from builder.predict import class_labels, vocabularies_of

    config = run.config
    vocabularies = vocabularies_of(run.model)
    features = []
    for name in config.data.feature_names:
        if name in vocabularies:
            vocabulary = list(vocabularies[name].values)
            features.append({"name": name, "type": "categorical", "vocabulary": vocabulary})
        else:
            features.append({"name": name, "type": "numeric"})
    units = int(run.model.outputs[0].shape[-1])
    task = config.task or "regression"
    out: dict[str, Any] = {
        "name": io["output"],
        "dtype": "float32",
        "shape": [None, units],
    }
    if task == "classification":
        classes = list(class_labels(run).classes)
        out["classes"] = classes
        if units == 1:
            out["meaning"] = (
                f"the probability of class {classes[-1]!r} (a sigmoid unit); "
                f"1 minus it is the probability of class {classes[0]!r}"
            )
        else:
            out["meaning"] = "the probability of each class, in the order of classes (softmax)"
    else:
        out["meaning"] = (
            f"the predicted {config.data.target}, in the target's own units (the model undoes "
            "its target scaling)"
        )
    info: dict[str, Any] = {
        "format": fmt,
        "file": output.name,
        "run": str(run.path),
        "model": config.name,
        "task": task,
        "input": {
            "name": io["input"],
            "dtype": "float32",
            "shape": [None, len(features)],
            "rows": "one row per example, the features in the order of features; numeric "
            "features as raw values (the model normalizes them itself), no NaN",
        },
        "features": features,
        "output": out,
        "check": check,
        "versions": _versions(fmt, keras),
    }
    if "signature" in io:
        info["input"]["signature"] = io["signature"]
    if vocabularies:
        info["categorical_codes"] = CODES
    info["versions"]["builder"] = __version__
    return info


def _require(fmt: str) -> None:
    missing = [name for name in _NEEDS[fmt] if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(
            f"--format {fmt} needs {', '.join(missing)}, which builder installs with its export "
            "extra: pip install -e '.[export]'"
        )


def _keras_export(model: Any, fmt: str, path: Path) -> None:
    import keras

    kwargs: dict[str, Any] = {}
    if fmt == "litert" and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # LiteRT's built-in ops only: Keras also allows TensorFlow ("Flex") ops, which a LiteRT
        # runtime runs only with the Flex delegate linked in (not the ai-edge-litert one).
        kwargs["target_spec"] = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    try:
        with warnings.catch_warnings():
            # keras's tf2onnx shim probes `np.object`, which numpy warns about.
            warnings.simplefilter("ignore", FutureWarning)
            model.export(str(path), format=_KERAS_FORMATS[fmt], verbose=False, **kwargs)
    except Exception as err:  # converters raise many kinds; each means the format cannot take it
        raise ExportError(
            f"the {fmt} converter cannot take this model ({keras.backend.backend()} backend): "
            f"{_first_line(err)}"
        ) from None


def _run_onnx(path: Path, x: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ExportError(
            f"the onnx export takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}), "
            "not one; nothing was written."
        )
    outputs = session.run(None, {inputs[0].name: x})
    return outputs[0], {"input": inputs[0].name, "output": session.get_outputs()[0].name}


def _run_saved_model(path: Path, x: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # kept while used: its variables belong to it
    serve = loaded.signatures["serving_default"]
    (name,) = serve.structured_input_signature[1]
    ((key, value),) = serve(**{name: tf.constant(x)}).items()
    return value.numpy(), {"input": name, "output": key, "signature": "serving_default"}


def _run_litert(path: Path, x: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (signature,) = interpreter.get_signature_list()
    runner = interpreter.get_signature_runner(signature)
    (name,) = runner.get_input_details()
    ((key, value),) = runner(**{name: x}).items()
    return np.array(value), {"input": name, "output": key, "signature": signature}


_RUN = {"onnx": _run_onnx, "saved_model": _run_saved_model, "litert": _run_litert}


def _versions(fmt: str, keras: Any) -> dict[str, str]:
    found = {"keras": keras.__version__, "backend": keras.backend.backend()}
    packages = {
        "onnx": ("tensorflow-cpu", "tf2onnx", "onnx", "onnxruntime"),
        "saved_model": ("tensorflow-cpu",),
        "litert": ("tensorflow-cpu", "ai-edge-litert"),
    }[fmt]
    for package in packages:
        for name in (package, package.removesuffix("-cpu")):
            try:
                found[name.removesuffix("-cpu")] = importlib.metadata.version(name)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return found


def _temp_dir(output: Path) -> Path:
    """A new hidden directory beside ``output`` (same file system, so moves are renames),
    created with the umask's permissions: it becomes a SavedModel export's directory."""
    for _ in range(100):
        folder = output.parent / f".{output.name}-{os.getpid()}-{os.urandom(4).hex()}.export"
        try:
            os.mkdir(folder, 0o777)
        except FileExistsError:
            continue
        except OSError as err:
            raise RunError(
                f"--output {output} could not be written. Received: {err.strerror}"
            ) from None
        return folder
    raise RunError(f"--output {output} could not be written. Received: no free temporary name")


def _place_directory(source: Path, output: Path, folder: Path) -> None:
    """Move the checked SavedModel directory to ``output``, replacing a SavedModel there
    (``check_outputs`` allowed it) by moving it into ``folder`` first, which is then removed."""
    try:
        if os.path.lexists(output):
            check_outputs("saved_model", output, force=True)  # again: it may have changed
            old = folder / "replaced"
            os.rename(output, old)
            try:
                os.rename(source, output)
            except BaseException:
                os.rename(old, output)
                raise
        else:
            # rename fails if a file or a non-empty directory appeared at `output` meanwhile.
            os.rename(source, output)
    except OSError as err:
        raise RunError(
            f"--output {output} could not be written. Received: {err.strerror}"
        ) from None


def _kind(mode: int) -> str:
    return files.file_kind(mode) or "a regular file"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]
