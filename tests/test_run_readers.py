"""The readers of a run directory, its checkpoint and model files, by kind of damage.

Each reader has a table: what a damaged, hostile or foreign file looks like, and the one line it
must be refused with (the file named, and the rule). A few go through the command line too, to
show that the line reaches the user as ``error: ...`` with exit code 2 and no traceback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from builder import checkpoints
from builder.cli import app
from builder.errors import RunError
from builder.files import read_bytes
from builder.runs import (
    MAX_JSON_DEPTH,
    MAX_RUN_JSON_BYTES,
    MAX_RUN_TABLE_BYTES,
    MAX_ZIP_MEMBERS,
    check_keras_zip,
    list_runs,
    load_model_file,
    load_run,
    read_history,
    read_json,
)
from tests.conftest import make_linear_frame

runner = CliRunner()


def invoke(*args) -> str:
    """The CLI's output for a command that must fail with one line and exit code 2."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1, result.output
    assert result.output.startswith("error: ")
    return result.output


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A copy of the session's trained run, to damage."""
    return Path(shutil.copytree(trained_run.path, tmp_path / "run"))


# --------------------------------------------------------------------------------------------
# Hostile files in place of a run file: the same for every reader
# --------------------------------------------------------------------------------------------


def put(path: Path, content) -> None:
    """Put ``content`` at ``path``: bytes or text, or a hostile kind of file by name."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    if content == "<fifo>":
        os.mkfifo(path)
    elif content == "<dev/zero>":
        path.symlink_to("/dev/zero")
    elif content == "<directory>":
        path.mkdir()
    elif isinstance(content, tuple) and content[0] == "<sparse>":
        with open(path, "wb") as handle:  # a sparse file: its size, without the disk it takes
            handle.truncate(content[1])
    else:
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)


HOSTILE = [
    pytest.param("<fifo>", r"must be a file \(regular files only\)\. Received: a FIFO", id="fifo"),
    pytest.param("<dev/zero>", r"Received: a character device", id="dev-zero"),
    pytest.param("<directory>", r"Received: a directory", id="directory"),
    pytest.param(b"\xff\xfe{}", r"must be UTF-8 text\. Received: byte 0xff", id="not-utf8"),
]


def test_read_bytes_never_reads_past_its_limit(tmp_path):
    grows = tmp_path / "f"
    grows.write_bytes(b"x" * 11)
    assert read_bytes(grows, limit=11, what="run file", error=RunError) == b"x" * 11
    with pytest.raises(RunError, match=r"run file .*f must be at most 10 bytes\. Received: 11"):
        read_bytes(grows, limit=10, what="run file", error=RunError)


# --------------------------------------------------------------------------------------------
# metrics.json and manifest.json (read_json)
# --------------------------------------------------------------------------------------------

METRICS = [
    pytest.param('{"test": {"mse": 1', r"must be valid JSON\. Received: Expecting", id="truncated"),
    pytest.param("hello", r"must be valid JSON", id="not-json"),
    pytest.param('{"test": {"mse": NaN}}', r"must be strict JSON.*Received: NaN", id="nan"),
    pytest.param('{"epochs": -Infinity}', r"strict JSON.*Received: -Infinity", id="infinity"),
    pytest.param('{"test": {"mse": 1e400}}', r"strict JSON.*Received: 1e400", id="overflow"),
    pytest.param("[1, 2]", r"must hold a JSON object\. Received: a list of 2", id="list"),
    pytest.param("3", r"must hold a JSON object\. Received: 3", id="number"),
    pytest.param(
        '{"test": {"mse": "low"}}',
        r"metrics\.json is damaged: 'test' must be an object of numbers \(or null\)\. "
        r"Received: an object",
        id="text-metric",
    ),
    pytest.param('{"test": [1]}', r"'test' must be an object of numbers", id="test-a-list"),
    pytest.param(
        '{"baselines": {"least_squares": {"coefficients": {"a": null}}}}',
        r"'baselines\.least_squares\.coefficients' must be an object of numbers",
        id="null-coefficient",
    ),
    pytest.param(
        '{"early_stopping": {"restored_epoch": 2.5}}',
        r"'early_stopping\.restored_epoch' must be a non-negative integer or null\. "
        r"Received: 2\.5",
        id="fractional-epoch",
    ),
    pytest.param('{"epochs_run": true}', r"'epochs_run' must be a non-negative integer", id="bool"),
    pytest.param('{"task": "ranking"}', r"'task' must be \"regression\" or", id="task"),
    pytest.param(
        "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
        r"must hold a JSON object",
        id="deep-list",
    ),
    pytest.param(
        '{"a": ' + "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH + "}",
        rf"must nest at most {MAX_JSON_DEPTH} objects and lists deep",
        id="deep",
    ),
    pytest.param(
        '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}",
        rf"must nest at most {MAX_JSON_DEPTH} objects",
        id="deeper-than-python",
    ),
    pytest.param(
        ("<sparse>", MAX_RUN_JSON_BYTES + 1),
        r"must be at most 16 MiB \(16,777,216 bytes\)\. Received: 16,777,217 bytes",
        id="huge",
    ),
    *HOSTILE,
]


@pytest.mark.parametrize(("content", "message"), METRICS)
def test_damaged_metrics_json(run_copy, content, message):
    path = run_copy / "metrics.json"
    put(path, content)
    with pytest.raises(RunError, match=message) as caught:
        read_json(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


MANIFESTS = [
    pytest.param('{"data": {"sha256": 5}}', r"'data\.sha256' must be a string", id="sha256"),
    pytest.param('{"data": []}', r"'data' must be an object\. Received: a list of 0", id="data"),
    pytest.param('{"kind": "sweep"}', r"'kind' must be \"train\" or \"tune\"", id="kind"),
    pytest.param('{"epochs_run": -1}', r"'epochs_run' must be a non-negative integer", id="neg"),
    pytest.param('{"best": {"score": "1"}}', r"'best\.score' must be a number or null", id="best"),
    pytest.param('{"direction": "up"}', r"'direction' must be \"min\" or \"max\"", id="dir"),
    pytest.param('{"started": 20260101}', r"'started' must be a string", id="started"),
    pytest.param('{"status": "complete", "x": NaN}', r"strict JSON", id="nan"),
    pytest.param('"complete"', r"must hold a JSON object\. Received: 'complete'", id="string"),
    *HOSTILE,
]


@pytest.mark.parametrize(("content", "message"), MANIFESTS)
def test_damaged_manifest_json(run_copy, content, message):
    path = run_copy / "manifest.json"
    put(path, content)
    with pytest.raises(RunError, match=message):
        read_json(path)


def test_what_builder_writes_is_read_back(trained_run):
    for name in ("metrics.json", "manifest.json"):
        assert read_json(trained_run.path / name) == json.loads(
            (trained_run.path / name).read_text()
        )
    assert read_history(trained_run.path / "history.csv").equals(trained_run.history)


@pytest.mark.parametrize("name", ["metrics.json", "manifest.json", "history.csv", "config.yaml"])
def test_load_run_names_the_damaged_file(run_copy, name):
    put(run_copy / name, "<fifo>")
    with pytest.raises(RunError, match=rf"{name} must be a file .* Received: a FIFO"):
        load_run(run_copy)


def test_inspect_refuses_a_damaged_metrics_json(run_copy):
    put(run_copy / "metrics.json", '{"test": {"mse": NaN}}')
    assert "metrics.json must be strict JSON" in invoke("inspect", run_copy)


def test_an_alias_bomb_in_a_runs_config_is_refused(run_copy):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    put(run_copy / "config.yaml", bomb)
    with pytest.raises(RunError, match=r"config\.yaml is not a valid builder config: .*at most"):
        load_run(run_copy)


# --------------------------------------------------------------------------------------------
# history.csv (read_history)
# --------------------------------------------------------------------------------------------

HISTORIES = [
    pytest.param("epoch,loss\n1,2.0\n2,1.", None, id="truncated-at-a-digit-is-whole"),
    pytest.param(
        "epoch,loss,val_loss\n1,2.0,3.0\n2,1.0",
        r"column 'val_loss' must hold finite numbers\. Received: an empty cell in row 2",
        id="truncated",
    ),
    pytest.param("", r"must have an 'epoch' and a 'loss' column", id="empty"),
    pytest.param("loss\n1.0\n", r"must have an 'epoch' and a 'loss' column", id="no-epoch"),
    pytest.param("epoch,loss\n", r"must have a row per epoch\. Received: no rows", id="no-rows"),
    pytest.param(
        "epoch,loss\n1,1.0\n2,low\n",
        r"column 'loss' must hold finite numbers\. Received: 'low' in row 2",
        id="text",
    ),
    pytest.param("epoch,loss\n1,inf\n", r"column 'loss' must hold finite numbers", id="inf"),
    pytest.param("epoch,loss\n1,True\n", r"column 'loss' must hold finite", id="bool"),
    pytest.param("epoch,loss\n2,1.0\n1,1.0\n", r"'epoch' must count up from 1", id="order"),
    pytest.param("epoch,loss\n0.5,1.0\n", r"'epoch' must count up from 1", id="fraction"),
    pytest.param("epoch,loss,loss\n1,1,1\n", r"column names must be unique", id="duplicate"),
    pytest.param(
        "epoch,loss\n1,1.0\n2,1.0,3,4\n",
        r"must be a CSV file\. Received: Error "
        r"tokenizing data",
        id="ragged",
    ),  # fmt: skip
    pytest.param(
        'epoch,"loss\n1,1\n',
        r"must have an 'epoch' and a 'loss' column, as builder train writes\. "
        r"Received: columns 'epoch', 'loss\\n1,1\\n'",
        id="open-quote",
    ),
    pytest.param(
        ("<sparse>", MAX_RUN_TABLE_BYTES + 1),
        r"history\.csv must be at most 256 MiB \(268,435,456 bytes\)",
        id="huge",
    ),
    *HOSTILE,
]


@pytest.mark.parametrize(("content", "message"), HISTORIES)
def test_damaged_history_csv(tmp_path, content, message):
    path = tmp_path / "history.csv"
    put(path, content)
    if message is None:
        assert read_history(path)["loss"].tolist() == [2.0, 1.0]
        return
    with pytest.raises(RunError, match=message) as caught:
        read_history(path)
    assert str(path) in str(caught.value)


def test_plot_refuses_a_damaged_history(run_copy):
    put(run_copy / "history.csv", "epoch,loss\n1,1.0\n2,low\n")
    assert "column 'loss' must hold finite numbers" in invoke("plot", run_copy)
    assert not (run_copy / "history.png").exists()


# --------------------------------------------------------------------------------------------
# Paths of the wrong kind given to load_run and list_runs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("<fifo>", r"must be a run directory or a \.keras file\. Received: a FIFO"),
        pytest.param("<dev/zero>", r"Received: a character device"),
        pytest.param("name: x\n", r"model file .*\.yaml must be a \.keras file"),
    ],
)
def test_run_argument_of_the_wrong_kind(tmp_path, content, message):
    path = tmp_path / "run.yaml"
    put(path, content)
    with pytest.raises(RunError, match=message):
        load_run(path)


def test_runs_directory_that_is_a_file(tmp_path):
    put(tmp_path / "runs", "x")
    message = invoke("runs", tmp_path / "runs")
    assert f"runs directory {tmp_path / 'runs'} must be a directory. Received: a file" in message


# --------------------------------------------------------------------------------------------
# builder runs: one damaged run never hides the others
# --------------------------------------------------------------------------------------------


def _write_run(runs_dir: Path, stamp: str, manifest, metrics=None, results=None) -> Path:
    folder = runs_dir / "salary" / stamp
    folder.mkdir(parents=True)
    for name, content in (("manifest.json", manifest), ("metrics.json", metrics)):
        if content is not None:
            put(folder / name, content if isinstance(content, str) else json.dumps(content))
    if results is not None:
        put(folder / "results.csv", results)
    return folder


def _good(stamp: str) -> dict:
    return {"status": "complete", "started": stamp, "epochs_run": 3}


DAMAGED_RUNS = [
    pytest.param({"manifest": "[]"}, r"manifest\.json must hold a JSON object", id="list"),
    pytest.param({"manifest": "12"}, r"manifest\.json must hold a JSON object", id="number"),
    pytest.param({"manifest": "{"}, r"manifest\.json must be valid JSON", id="truncated"),
    pytest.param({"manifest": "<fifo>"}, r"manifest\.json must be a file", id="fifo"),
    pytest.param({"manifest": "<directory>"}, r"Received: a directory", id="directory"),
    pytest.param(
        {"manifest": {"status": "complete", "best": 3, "kind": "tune"}},
        r"'best' must be an object or null",
        id="best",
    ),
    pytest.param(
        {"manifest": _good("2026-01-01T00:00:09Z"), "metrics": '{"test": {"mse": NaN}}'},
        r"metrics\.json must be strict JSON",
        id="metrics-nan",
    ),
    pytest.param(
        {"manifest": _good("2026-01-01T00:00:09Z"), "metrics": '{"test": 7}'},
        r"'test' must be an object of numbers",
        id="metrics-type",
    ),
    pytest.param(
        {
            "manifest": {"kind": "tune", "status": "interrupted", "objective": "val_loss"},
            "results": b"trial,val_loss\n\xff\n",
        },
        r"results\.csv must be UTF-8 text",
        id="results",
    ),
]


@pytest.mark.parametrize(("damage", "message"), DAMAGED_RUNS)
def test_list_runs_shows_a_damaged_run_among_good_ones(tmp_path, damage, message):
    runs_dir = tmp_path / "runs"
    metrics = {"test": {"mse": 80.0, "r2": 0.9}, "baselines": {"least_squares": {"mse": 75.0}}}
    _write_run(runs_dir, "20260101-000001", _good("2026-01-01T00:00:01Z"), metrics)
    bad = _write_run(runs_dir, "20260101-000005", damage["manifest"], damage.get("metrics"),
                     damage.get("results"))  # fmt: skip
    _write_run(runs_dir, "20260101-000002", _good("2026-01-01T00:00:02Z"))
    rows = {Path(row["path"]).name: row for row in list_runs(runs_dir)}
    assert rows["20260101-000001"]["test"] == {"mse": 80.0, "r2": 0.9}
    assert rows["20260101-000002"]["status"] == "complete"
    damaged = rows[bad.name]
    assert damaged["status"] == "damaged", damaged
    assert str(bad) in damaged["damaged"]
    assert re.search(message, damaged["damaged"])


def test_builder_runs_lists_the_damaged_row_with_its_reason(tmp_path):
    runs_dir = tmp_path / "runs"
    metrics = {"test": {"mse": 80.0, "r2": 0.9}, "baselines": {"least_squares": {"mse": 75.0}}}
    _write_run(runs_dir, "20260101-000001", _good("2026-01-01T00:00:01Z"), metrics)
    _write_run(runs_dir, "20260101-000002", "[1]")
    result = runner.invoke(app, ["runs", str(runs_dir)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "test mse 80" in result.output and "1.067x least squares" in result.output
    assert "damaged" in result.output and "must hold a JSON object" in result.output


# --------------------------------------------------------------------------------------------
# model.keras: bounded zip, and a model builder can use (load_model_file)
# --------------------------------------------------------------------------------------------


def _declare(path: Path, sizes: dict[str, tuple[int, int]]) -> None:
    """Rewrite the central directory's (compressed, uncompressed) sizes of some zip members."""
    data = bytearray(path.read_bytes())
    pos = data.find(b"PK\x01\x02")
    while pos != -1:
        name_length = int.from_bytes(data[pos + 28 : pos + 30], "little")
        name = data[pos + 46 : pos + 46 + name_length].decode()
        if name in sizes:
            stored, size = sizes[name]
            data[pos + 20 : pos + 24] = stored.to_bytes(4, "little")
            data[pos + 24 : pos + 28] = size.to_bytes(4, "little")
        pos = data.find(b"PK\x01\x02", pos + 46)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory, trained_run) -> dict[str, Path]:
    """``.keras`` files that load in Keras but are no builder models, and hostile zips."""
    import keras

    folder = tmp_path_factory.mktemp("foreign")
    models = {
        "conv2d": lambda: keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Conv2D(2, 3),
                keras.layers.Flatten(),
                keras.layers.Dense(1),
            ]
        ),  # fmt: skip
        "two-inputs": lambda: _two_inputs(keras),
        "unbuilt": lambda: keras.Sequential([keras.layers.Dense(1)]),
        "three-outputs": lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)]),
        "int-input": lambda: keras.Sequential(
            [keras.Input((3,), dtype="int32"), keras.layers.Dense(1)]
        ),
        "layer-norm": lambda: keras.Sequential(
            [keras.Input((3,)), keras.layers.LayerNormalization(), keras.layers.Dense(1)]
        ),
        "late-normalization": lambda: keras.Sequential(
            [
                keras.Input((3,)),
                keras.layers.Dense(3),
                keras.layers.Normalization(),
                keras.layers.Dense(1),
            ]
        ),  # fmt: skip
        "early-rescaling": lambda: keras.Sequential(
            [keras.Input((3,)), keras.layers.Rescaling(2.0), keras.layers.Dense(1)]
        ),
        "no-dense": lambda: keras.Sequential([keras.Input((1,)), keras.layers.Activation("tanh")]),
        "two-features": lambda: keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]),
    }
    paths = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns when it saves the unbuilt model
        for name, make in models.items():
            paths[name] = folder / f"{name}.keras"
            make().save(paths[name])
    original = trained_run.path / "model.keras"
    for name, sizes in {
        "config-bomb": {"config.json": (100, 4_000_000_000)},
        "weights-bomb": {"model.weights.h5": (1000, 500 << 20)},
        "too-large": {"model.weights.h5": (1100 << 20, 1100 << 20)},
    }.items():
        paths[name] = folder / f"{name}.keras"
        shutil.copy(original, paths[name])
        _declare(paths[name], sizes)
    paths["not-a-zip"] = folder / "not-a-zip.keras"
    paths["not-a-zip"].write_text("hello")
    return paths


def _two_inputs(keras):
    a, b = keras.Input((2,)), keras.Input((1,))
    return keras.Model([a, b], keras.layers.Dense(1)(keras.layers.Concatenate()([a, b])))


BUILDER_MODEL = r"must be a builder model: "
FOREIGN = [
    ("conv2d", BUILDER_MODEL + r"one input of shape \(None, features\)\. "
     r"Received: input shape \(None, 8, 8, 1\)"),
    ("two-inputs", BUILDER_MODEL + r"one input .* Received: 2 inputs"),
    ("unbuilt", BUILDER_MODEL + r"built, with its input shape\. Received: an unbuilt model"),
    ("int-input", BUILDER_MODEL + r"a float input\. Received: input dtype int32"),
    ("layer-norm", BUILDER_MODEL + r"layers of the types builder builds \(Normalization, Dense, "
     r".*Received: layer 'layer_normalization\w*' of type LayerNormalization"),
    ("late-normalization", BUILDER_MODEL + r"a Normalization layer only first"),
    ("early-rescaling", BUILDER_MODEL + r"a Rescaling layer only last"),
    ("no-dense", BUILDER_MODEL + r"at least one Dense layer\. Received: none"),
    ("config-bomb", r"zip member 'config\.json' must unzip to at most 16 MiB \(16,777,216 "
     r"bytes\)\. Received: 4,000,000,000 bytes declared"),
    ("weights-bomb", r"zip member 'model\.weights\.h5' must unzip to at most 100 times its "
     r"stored size\. Received: 524,288,000 bytes declared, 1,000 stored"),
    ("too-large", r"must unzip to at most 1 GiB \(1,073,741,824 bytes\)\. "
     r"Received: \d[\d,]+ bytes declared"),
    ("not-a-zip", r"could not be loaded as a Keras model: a \.keras file must be a zip archive"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "message"), FOREIGN)
def test_foreign_model_file(foreign, name, message):
    with pytest.raises(RunError, match=message) as caught:
        load_model_file(foreign[name])
    assert str(foreign[name]) in str(caught.value) and "\n" not in str(caught.value)


def test_a_model_with_other_outputs_than_its_config_is_refused(foreign):
    # Three outputs are a three-class classifier's; a run that records one output refuses them.
    model = load_model_file(foreign["three-outputs"])
    assert model.outputs[0].shape[-1] == 3
    with pytest.raises(RunError, match=r"must give the 1 outputs config\.yaml's model\.output "
                       r"lists\. Received: output shape \(None, 3\)"):  # fmt: skip
        load_model_file(foreign["three-outputs"], units=1)


@pytest.mark.parametrize("command", ["inspect", "predict", "evaluate", "plot"])
def test_commands_refuse_a_foreign_model_in_one_line(foreign, tmp_path, command):
    csv = tmp_path / "new.csv"
    make_linear_frame(rows=5).to_csv(csv, index=False)
    data = ["--data", csv] if command in ("predict", "evaluate") else []
    assert "must be a builder model" in invoke(command, foreign["conv2d"], *data)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("<fifo>", r"model file .*model\.keras must be a file .* a FIFO", id="fifo"),
        pytest.param(
            "<dev/zero>", r"model\.keras must be a file .* a character device", id="dev-zero"
        ),  # fmt: skip
        pytest.param("<directory>", r"model\.keras must be a file .* a directory", id="dir"),
        pytest.param(
            "two-features",
            r"must take the 3 features config\.yaml lists\. "
            r"Received: input shape \(None, 2\)",
            id="width",
        ),  # fmt: skip
    ],
)
def test_model_keras_in_a_run_directory(run_copy, foreign, content, message):
    path = run_copy / "model.keras"
    if content in foreign:
        shutil.copy(foreign[content], path)
    else:
        put(path, content)
    with pytest.raises(RunError, match=message):
        load_run(run_copy)
    if content in foreign:  # the file given itself, beside its config
        message = r"must take the 3 features"
    elif content == "<directory>":
        message = r"model\.keras must contain config\.yaml"
    else:
        message = r"model\.keras must be a run directory or a \.keras file\. Received: a"
    with pytest.raises(RunError, match=message):
        load_run(path)


# --------------------------------------------------------------------------------------------
# Checkpoints: state.json (load_state) and the weights file (restore)
# --------------------------------------------------------------------------------------------


def _state(**changes) -> dict:
    state = {
        "epoch": 2,
        "weights": "weights-000002.npz",
        "history": [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0}],
        "early_stopping": {"wait": 0, "best": 1.0, "best_epoch": 1, "has_best_weights": False},
    }
    return {**state, **changes}


STATES = [
    pytest.param(json.dumps(_state()), None, id="valid"),
    pytest.param(json.dumps(_state(early_stopping=None)), None, id="valid-no-stopper"),
    pytest.param(json.dumps(_state(epoch=-1)), r"'epoch' must be a non-negative integer", id="neg"),
    pytest.param(json.dumps(_state(epoch="2")), r"'epoch' must be a non-negative", id="text"),
    pytest.param(json.dumps(_state(epoch=True)), r"'epoch' must be a non-negative", id="bool"),
    pytest.param(
        json.dumps({k: v for k, v in _state().items() if k != "weights"}),
        r"state\.json is damaged: it must have the field 'weights'",
        id="no-weights",
    ),
    *(
        pytest.param(
            json.dumps(_state(weights=name)),
            r"'weights' must name a \.npz file in "
            r".*checkpoint, without a path",
            id=f"weights-{i}",
        )  # fmt: skip
        for i, name in enumerate(
            [
                "../../model.keras",
                "../x.npz",
                "/etc/x.npz",
                "a/b.npz",
                "..",
                "weights.txt",
                "a\\b.npz",
            ]
        )  # fmt: skip
    ),
    pytest.param(json.dumps(_state(weights=3)), r"'weights' must be a string", id="weights-int"),
    pytest.param(json.dumps(_state(history={})), r"'history' must be a list of objects", id="h"),
    pytest.param(
        json.dumps(_state(history=[{"epoch": 1, "loss": "x"}, {"epoch": 2, "loss": 1}])),
        r"'history' must be a list of objects of numbers",
        id="history-text",
    ),
    pytest.param(
        json.dumps(_state(history=[{"epoch": 1, "loss": 1.0}])),
        r"'history' must have a row per epoch \(2\)\. Received: 1 rows",
        id="history-short",
    ),
    pytest.param(
        json.dumps(_state(history=[{"epoch": 1, "loss": 1.0}, {"epoch": 3, "loss": 1.0}])),
        r"'history\[1\]\.epoch' must be 2\. Received: 3",
        id="history-epochs",
    ),
    pytest.param(
        json.dumps(
            _state(
                early_stopping={"wait": "0", "best": 1, "best_epoch": 0, "has_best_weights": False}
            )
        ),  # fmt: skip
        r"'early_stopping\.wait' must be a non-negative integer",
        id="stopper-wait",
    ),
    pytest.param(
        json.dumps(_state(early_stopping={"wait": 0, "best": 1, "best_epoch": 0})),
        r"it must have the field 'early_stopping\.has_best_weights'",
        id="stopper-missing",
    ),
    pytest.param(json.dumps(_state(early_stopping=[])), r"'early_stopping' must be an obj", id="l"),
    pytest.param('{"epoch": 2, "history": [{"epoch": 1, "loss": NaN}]}', r"strict JSON", id="nan"),
    pytest.param("[]", r"state\.json must hold a JSON object", id="list"),
    pytest.param(
        ("<sparse>", MAX_RUN_TABLE_BYTES + 1), r"state\.json must be at most 256 MiB", id="huge"
    ),
    *HOSTILE,
]


@pytest.mark.parametrize(("content", "message"), STATES)
def test_damaged_checkpoint_state(tmp_path, content, message):
    (tmp_path / "checkpoint").mkdir()
    put(tmp_path / "checkpoint" / "state.json", content)
    if message is None:
        assert checkpoints.load_state(tmp_path) == json.loads(content)
        return
    with pytest.raises(RunError, match=message) as caught:
        checkpoints.load_state(tmp_path)
    assert "state.json" in str(caught.value) and "\n" not in str(caught.value)


def _compiled(units: int = 4, optimizer: str = "adam"):
    import keras

    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(units), keras.layers.Dense(1, name="output")]
    )
    model.compile(optimizer=optimizer, loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A run directory with the checkpoint of a small Adam model (see ``_compiled``)."""
    run_dir = tmp_path_factory.mktemp("checkpointed")
    checkpoints.save(run_dir, _compiled(), 1, [{"epoch": 1, "loss": 1.0}], None)
    return run_dir


def _tamper(run_dir: Path, change) -> None:
    state = checkpoints.load_state(run_dir)
    path = run_dir / "checkpoint" / state["weights"]
    with np.load(path) as data:
        arrays = dict(data)
    path.unlink()
    change(arrays)
    np.savez(path, **arrays)


def _drop(name):
    return lambda arrays: arrays.pop(name)


def _set(name, value):
    return lambda arrays: arrays.update({name: value})


MISFITS = [
    pytest.param(
        lambda: _compiled(optimizer="sgd"),
        None,
        r"written by the Adam optimizer, the run's config now says SGD; was config\.yaml "
        r"edited since the run started\?",
        id="optimizer-edited",
    ),
    pytest.param(  # the same variable shapes as Adam's: only the recorded class tells
        lambda: _compiled(optimizer="adamax"),
        None,
        r"written by the Adam optimizer, the run's config now says Adamax",
        id="optimizer-same-shapes",
    ),
    pytest.param(
        lambda: _compiled(units=8),
        None,
        r"weight 0 \(.*kernel\) has shape \(3, 8\), the checkpoint \(3, 4\)",
        id="layer-edited",
    ),
    pytest.param(
        _compiled,
        _drop("o3"),
        r"the model has 10 optimizer variables \(of Adam\), "
        r"the checkpoint 9",
        id="missing-array",
    ),  # fmt: skip
    pytest.param(_compiled, _set("x", np.zeros(1)), r"an array the model lacks: 'x'", id="extra"),
    pytest.param(
        _compiled,
        _set("w0", np.zeros((3, 4))),
        r"weight 0 .* has dtype float32, the "
        r"checkpoint float64",
        id="dtype",
    ),  # fmt: skip
    pytest.param(
        _compiled,
        _set("w1", np.empty(4, dtype=object)),
        r"weight 1 .* has dtype "
        r"float32, the checkpoint object",
        id="pickled",
    ),  # fmt: skip
    pytest.param(
        _compiled,
        _set("o0", np.zeros(3, np.int64)),
        r"optimizer variable 0 "
        r"\(adam\w*/iteration\) has shape \(\), the checkpoint \(3,\)",
        id="o-shape",
    ),  # fmt: skip
]


@pytest.mark.parametrize(("make", "change", "message"), MISFITS)
def test_checkpoint_that_does_not_fit_the_model(checkpoint, tmp_path, make, change, message):
    run_dir = Path(shutil.copytree(checkpoint, tmp_path / "run"))
    if change is not None:
        _tamper(run_dir, change)
    model = make()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(RunError, match=message) as caught:
        checkpoints.restore(run_dir, model, checkpoints.load_state(run_dir), None)
    assert "does not fit the run's model" in str(caught.value)
    # Refused before anything was assigned.
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"garbage", r"could not be read: File is not a zip file", id="not-zip"),
        pytest.param("<truncated>", r"could not be read", id="truncated"),
        pytest.param("<fifo>", r"checkpoint file .* must be a file .* a FIFO", id="fifo"),
        pytest.param("<missing>", r"checkpoint file .*weights-000001\.npz does not exist", id="no"),
    ],
)
def test_unreadable_checkpoint_weights(checkpoint, tmp_path, content, message):
    run_dir = Path(shutil.copytree(checkpoint, tmp_path / "run"))
    path = run_dir / "checkpoint" / "weights-000001.npz"
    if content == "<truncated>":
        content = path.read_bytes()[:200]
    if content == "<missing>":
        path.unlink()
    else:
        put(path, content)
    with pytest.raises(RunError, match=message):
        checkpoints.restore(run_dir, _compiled(), checkpoints.load_state(run_dir), None)


def test_a_fitting_checkpoint_is_restored(checkpoint):
    import keras

    saved = checkpoints.load_state(checkpoint)
    with np.load(checkpoint / "checkpoint" / saved["weights"]) as data:
        kernel = data["w0"]
    model = _compiled()
    stopper = keras.callbacks.EarlyStopping()
    state = {**saved, "early_stopping": {"wait": 1, "best": 0.5, "best_epoch": 0,
                                         "has_best_weights": False}}  # fmt: skip
    checkpoints.restore(checkpoint, model, state, stopper)
    assert np.array_equal(model.get_weights()[0], kernel)
    assert stopper.resume_from == {"wait": 1, "best": 0.5, "best_epoch": 0, "best_weights": None}


def test_resume_after_the_optimizer_was_edited_is_refused(tmp_path, monkeypatch):
    """The issue's case: adam -> sgd in a stopped run's config.yaml, then --resume."""
    import builder
    from builder import training
    from builder.errors import Interrupted
    from tests.conftest import config_dict, write_yaml

    csv = tmp_path / "d.csv"
    make_linear_frame(rows=300, seed=2).to_csv(csv, index=False)
    config = write_yaml(tmp_path / "c.yaml", config_dict(str(csv), epochs=4, early_stopping=None))
    monkeypatch.setattr(training, "CHECKPOINT_SECONDS", 0.0)

    def ctrl_c(epoch, epochs, logs):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        builder.train(config, runs_dir=tmp_path / "runs", progress=ctrl_c)
    (run_dir,) = (tmp_path / "runs" / "linear_test").iterdir()
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["training"]["optimizer"]["name"] == "adam"
    resolved["training"]["optimizer"]["name"] = "sgd"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(resolved))
    message = invoke("train", "--resume", run_dir)
    assert "weights-000002.npz does not fit the run's model" in message
    assert "the run's config now says SGD" in message and "was config.yaml edited" in message
    assert json.loads((run_dir / "manifest.json").read_text())["status"] != "complete"
    assert not (run_dir / "model.keras").exists()


def test_a_zip_with_too_many_members_is_refused_from_its_declared_count(tmp_path, monkeypatch):
    """The member count is read from the end-of-central-directory record, before ``zipfile``
    parses (and holds) an entry per member."""
    import zipfile

    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(MAX_ZIP_MEMBERS + 1):
            archive.writestr(f"m{i}", b"")
    parsed = []
    monkeypatch.setattr(zipfile.ZipFile, "infolist", lambda self: parsed.append(1) or [])
    with pytest.raises(RunError) as info:
        check_keras_zip(path)
    assert str(info.value) == (
        f"model file {path} must have at most {MAX_ZIP_MEMBERS} zip members. "
        f"Received: {MAX_ZIP_MEMBERS + 1:,} declared"
    )
    assert parsed == []
