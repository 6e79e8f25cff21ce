"""builder export: ONNX, SavedModel and LiteRT, each checked against the .keras model.

Three tiny runs are trained once for the module (a regression with a threshold layer, a
three-class classifier with a one-hot and an embedded text column, a two-class sigmoid one), and
each format is exported once in a module fixture; the tests then load the written files in their
runtimes themselves, independently of the check inside ``export``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from builder.cli import app
from builder.errors import DataError, ExportError, RunError
from tests.conftest import FEATURES, TARGET, config_dict, make_linear_frame, write_yaml

runner = CliRunner()
OUTPUTS = {"onnx": "model.onnx", "saved_model": "saved_model", "litert": "model.tflite"}


def _train(folder, name, frame, config):
    import builder

    csv = folder / f"{name}.csv"
    frame.to_csv(csv, index=False)
    config["data"]["path"] = str(csv)
    return builder.train(write_yaml(folder / f"{name}.yaml", config), runs_dir=folder / "runs")


def _classes_frame(rows: int, seed: int, classes: int):
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, rows)
    city = rng.choice(["oslo", "lima", "pune", "kiev"], rows)
    kind = rng.choice(["a", "b", "c"], rows)
    score = x + (city == "lima") - (kind == "c")
    bins = np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])
    label = np.array(["low", "mid", "high"][:classes] if classes == 3 else ["no", "yes"])
    return pd.DataFrame(
        {"x": x * 10 + 50, "city": city, "kind": kind, "label": label[np.digitize(score, bins)]}
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"regression", "softmax", "sigmoid"}: one short training each."""
    folder = tmp_path_factory.mktemp("export_runs")
    regression = config_dict(None, epochs=2)
    regression["model"]["layers"] = [{"type": "dense", "units": 8}, {"type": "threshold"}]
    softmax = {
        "name": "softmax",
        "task": "classification",
        "data": {
            "features": [
                "x",
                "city",
                {"name": "kind", "type": "categorical", "encoding": "embedding"},
            ],
            "target": "label",
        },
        "model": {"layers": [{"type": "dense", "units": 4, "activation": "tanh"}]},
        "training": {"epochs": 2, "seed": 3},
    }
    sigmoid = json.loads(json.dumps(softmax))
    sigmoid["name"] = "sigmoid"
    return {
        "regression": _train(folder, "regression", make_linear_frame(rows=300), regression),
        "softmax": _train(folder, "softmax", _classes_frame(300, 1, 3), softmax),
        "sigmoid": _train(folder, "sigmoid", _classes_frame(300, 2, 2), sigmoid),
    }


@pytest.fixture(scope="module")
def exports(runs, tmp_path_factory):
    """Every format of the regression run, the softmax run as ONNX, the sigmoid one as LiteRT:
    ``{(run, format): (result, output)}``."""
    from builder.export import export

    done = {}
    cases = [
        *(("regression", fmt) for fmt in OUTPUTS),
        ("softmax", "onnx"),
        ("sigmoid", "litert"),
    ]
    for name, fmt in cases:
        folder = tmp_path_factory.mktemp(f"{name}_{fmt}")
        output = folder / OUTPUTS[fmt]
        done[name, fmt] = (export(runs[name], fmt, output), output)
    return done


def _test_rows(run):
    from builder.predict import holdout_split

    return holdout_split(run)[0]


def _keras(run, x):
    from builder.training import model_outputs

    return model_outputs(run.model, x)


def _run_export(fmt, output, x):
    """The written export's outputs, run here as a user of each runtime would."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
        return session.run(None, {"features": x})[0]
    if fmt == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(output))
        return loaded.signatures["serving_default"](features=tf.constant(x))["output_0"].numpy()
    from ai_edge_litert.interpreter import Interpreter

    runner_ = Interpreter(model_path=str(output)).get_signature_runner("serving_default")
    return runner_(features=x)["output_0"]


def _metadata(fmt, output):
    from builder.export import metadata_path

    return json.loads(metadata_path(fmt, output).read_text(encoding="utf-8"))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(OUTPUTS))
def test_each_format_matches_the_model_and_says_how_to_use_it(runs, exports, fmt):
    run = runs["regression"]
    result, output = exports["regression", fmt]
    x = _test_rows(run)
    reference = _keras(run, x)
    got = _run_export(fmt, output, x)
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5 * np.abs(reference).mean())

    meta = _metadata(fmt, output)
    assert meta == {k: v for k, v in result.items() if k not in ("path", "metadata")}
    assert meta["format"] == fmt
    assert meta["input"]["name"] == "features"
    assert meta["input"]["shape"] == [None, len(FEATURES)]
    assert [f["name"] for f in meta["features"]] == FEATURES
    assert all(f["type"] == "numeric" for f in meta["features"])
    assert meta["output"]["shape"] == [None, 1]
    assert f"predicted {TARGET}" in meta["output"]["meaning"]
    assert meta["run"] == str(run.path)
    assert meta["check"]["rows"] == len(x) and meta["check"]["unseen_rows"] == 0
    assert 0 <= meta["check"]["max_rel_diff"] <= meta["check"]["rtol"] == 1e-5
    assert meta["versions"]["keras"] and meta["versions"]["builder"]
    # Nothing else beside it: no temporary file or folder outlives the export.
    assert sorted(p.name for p in output.parent.iterdir()) == sorted(
        [output.name] + ([] if fmt == "saved_model" else [output.name + ".json"])
    )


@pytest.mark.slow
def test_export_copy_gives_the_model_outputs_bit_for_bit(runs):
    from builder.export import export_model
    from builder.training import model_outputs

    for run in runs.values():
        x = _test_rows(run)
        np.testing.assert_array_equal(model_outputs(export_model(run.model), x), _keras(run, x))


@pytest.mark.slow
def test_categorical_classifier_exports_to_onnx(runs, exports):
    from builder.predict import class_labels, vocabularies_of

    run = runs["softmax"]
    _, output = exports["softmax", "onnx"]
    meta = _metadata("onnx", output)
    vocabularies = vocabularies_of(run.model)
    by_name = {f["name"]: f for f in meta["features"]}
    assert [f["name"] for f in meta["features"]] == ["x", "city", "kind"]
    for name in ("city", "kind"):
        assert by_name[name]["type"] == "categorical"
        assert by_name[name]["vocabulary"] == list(vocabularies[name].values)
    assert "vocabulary[i-1]" in meta["categorical_codes"]
    assert meta["output"]["classes"] == list(class_labels(run).classes) == ["high", "low", "mid"]
    assert meta["output"]["shape"] == [None, 3]
    assert meta["check"]["unseen_rows"] > 0

    x = _test_rows(run)
    unseen = x.copy()
    unseen[:, 1:] = 0.0  # both text columns: values never seen in training
    for rows in (x, unseen):
        got = _run_export("onnx", output, rows)
        np.testing.assert_allclose(got, _keras(run, rows), rtol=0, atol=1e-5)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_sigmoid_classifier_exports_to_litert(runs, exports):
    run = runs["sigmoid"]
    _, output = exports["sigmoid", "litert"]
    meta = _metadata("litert", output)
    assert meta["output"]["classes"] == ["no", "yes"]
    assert meta["output"]["meaning"].startswith("the probability of class 'yes'")
    x = _test_rows(run)
    np.testing.assert_allclose(_run_export("litert", output, x), _keras(run, x), atol=1e-5)


def _one_line(error):
    text = str(error)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.slow
def test_an_export_that_differs_is_refused_and_leaves_nothing(runs, tmp_path, monkeypatch):
    import onnxruntime

    from builder.export import export

    real = onnxruntime.InferenceSession.run

    def off(self, *args, **kwargs):
        outputs = real(self, *args, **kwargs)
        outputs[0][3] *= 1 + 1e-4  # one row, ten times the tolerance
        return outputs

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", off)
    with pytest.raises(ExportError) as caught:
        export(runs["regression"], "onnx", tmp_path / "model.onnx")
    message = _one_line(caught.value)
    assert "differs from the model on 1 of" in message and "first at row 3" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_format_the_model_cannot_take_is_one_line(runs, tmp_path, monkeypatch):
    import keras

    from builder.export import export

    def refuse(self, filepath, *args, **kwargs):
        open(filepath, "w").close()  # a converter that wrote part of its file, then failed
        raise ValueError("no converter for layer X\nand a long traceback-like tail")

    monkeypatch.setattr(keras.Model, "export", refuse)
    with pytest.raises(ExportError) as caught:
        export(runs["regression"], "litert", tmp_path / "model.tflite")
    assert "the litert converter cannot take this model" in _one_line(caught.value)
    assert "no converter for layer X" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_runtime_names_the_extra_and_writes_nothing(runs, tmp_path, monkeypatch):
    import importlib.util

    from builder.export import export

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name)
    )
    with pytest.raises(ExportError) as caught:
        export(runs["regression"], "onnx", tmp_path / "model.onnx")
    assert _one_line(caught.value) == (
        "--format onnx needs onnxruntime, which builder installs with its export extra: "
        "pip install -e '.[export]'"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_existing_output_needs_force(runs, tmp_path):
    from builder.export import export

    target = tmp_path / "model.onnx"
    target.write_bytes(b"mine")
    with pytest.raises(RunError, match="already exists; pass --force"):
        export(runs["regression"], "onnx", target)
    assert target.read_bytes() == b"mine"
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]

    # The JSON beside it counts as well.
    other = tmp_path / "other.onnx"
    (tmp_path / "other.onnx.json").write_text("{}")
    with pytest.raises(RunError, match="metadata file .*other.onnx.json already exists"):
        export(runs["regression"], "onnx", other)
    assert not other.exists()

    result = export(runs["regression"], "onnx", target, force=True)
    assert target.read_bytes()[:4] != b"mine" and result["check"]["rows"] > 0


def test_saved_model_force_replaces_only_a_saved_model(tmp_path):
    from builder.export import check_outputs

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("keep")
    check_outputs("saved_model", tmp_path / "new")  # absent: fine
    with pytest.raises(RunError, match="already exists; pass --force"):
        check_outputs("saved_model", plain)
    with pytest.raises(RunError, match="must be a SavedModel directory .* Received: a directory"):
        check_outputs("saved_model", plain, force=True)
    (plain / "saved_model.pb").write_bytes(b"")
    check_outputs("saved_model", plain, force=True)
    assert (plain / "notes.txt").read_text() == "keep"


@pytest.mark.slow
def test_saved_model_force_replaces_the_old_one(runs, tmp_path):
    from builder.export import SAVED_MODEL_METADATA, export

    output = tmp_path / "exported"
    export(runs["regression"], "saved_model", output)
    (output / "stale.txt").write_text("from the old export")
    result = export(runs["regression"], "saved_model", output, force=True)
    assert not (output / "stale.txt").exists()
    assert (output / "saved_model.pb").is_file() and (output / SAVED_MODEL_METADATA).is_file()
    assert result["metadata"] == str(output / SAVED_MODEL_METADATA)
    assert os.listdir(tmp_path) == ["exported"]


@pytest.mark.slow
def test_output_must_not_be_a_file_of_the_run(runs):
    from builder.export import export

    run = runs["regression"]
    with pytest.raises(RunError, match="must not be a file the command reads"):
        export(run, "onnx", run.path / "model.keras", force=True)
    assert (run.path / "model.keras").stat().st_size > 0


@pytest.mark.slow
def test_bare_model_file_has_no_test_split(runs, tmp_path):
    from builder.export import export
    from builder.runs import load_run

    bare = tmp_path / "model.keras"
    bare.write_bytes((runs["regression"].path / "model.keras").read_bytes())
    with pytest.raises(DataError, match="no test split to check an export against"):
        export(load_run(bare), "onnx", tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_compare_rule():
    from builder.export import compare

    reference = np.array([[100_000.0], [0.0], [50_000.0]])
    # Regression: a prediction near zero is held to the typical prediction's precision.
    found = compare(reference, reference + [[0.5], [0.4], [0.2]], rtol=1e-5)
    assert found["scale"] == [50_000.0]
    assert found["max_rel_diff"] == pytest.approx(0.4 / 50_000)
    with pytest.raises(ExportError, match="on 1 of 3 checked rows"):
        compare(reference, reference + [[0.0], [0.6], [0.0]], rtol=1e-5)
    with pytest.raises(ExportError, match="on 1 of 3 checked rows"):
        compare(reference, reference + [[np.nan], [0.0], [0.0]], rtol=1e-5)
    with pytest.raises(ExportError, match=r"shape \(3, 2\)"):
        compare(reference, np.zeros((3, 2)), rtol=1e-5)
    # Probabilities: scale 1, so 1e-6 off on p = 1e-4 passes; 1e-4 off does not.
    p = np.array([[1e-4, 1 - 1e-4]])
    assert compare(p, p + [[1e-6, -1e-6]], rtol=1e-5, scale=1.0)["max_abs_diff"] > 0
    with pytest.raises(ExportError):
        compare(p, p + [[1e-4, -1e-4]], rtol=1e-5, scale=1.0)


@pytest.mark.slow
def test_cli_export(runs, tmp_path):
    run = runs["regression"]
    output = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", str(run.path), "--format", "onnx", "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert f"wrote {output} (onnx)" in result.output
    assert "checked in onnxruntime on " in result.output and "(tolerance 1e-05)" in result.output
    assert f"metadata: {output}.json" in result.output

    again = runner.invoke(app, ["export", str(run.path), "--format", "onnx", "-o", str(output)])
    assert again.exit_code == 2
    assert again.output.strip().splitlines()[-1].startswith("error: --output ")


def test_cli_refuses_a_bad_format(tmp_path):
    # Refused before the run is even read.
    args = ["export", str(tmp_path / "no-run"), "-o", str(tmp_path / "m"), "--format", "pt"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    line = "error: --format must be one of onnx, saved_model, litert. Received: --format 'pt'"
    assert result.output.strip().splitlines() == [line]
    assert list(tmp_path.iterdir()) == []
