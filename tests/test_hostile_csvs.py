"""Hostile CSVs that need generating (compressed, large, odd values), and the inputs around them.

Each table is one kind. Every case goes through both readers (``builder.data.load_splits`` and a
streamed ``builder.data.Table``, in chunks of 7 rows unless a case says) and through
``data.problems`` (``builder validate``): one line, the same text from all three, naming the
file, the rule and the value. The rest: split fractions, header names, evaluate applies
training's target rules, ``--data`` and NUL bytes on the command line, least squares never
hangs, and the bound on a target's spread is where training breaks.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import builder
from builder import data as data_mod
from builder.config import load_config
from builder.data import Table
from builder.data.columns import Column
from builder.errors import DataError
from builder.predict import evaluate
from builder.runs import load_run
from builder.training import with_overrides
from tests.conftest import FEATURES as LINEAR_FEATURES
from tests.conftest import TARGET as LINEAR_TARGET
from tests.conftest import make_linear_frame, run_python, write_yaml

HEADER = "age,years_worked,salary\n"


def _rows(n: int = 40, target=lambda i: 40_000 + 1_000 * i + 50 * (i % 3)) -> list[list[str]]:
    return [[str(20 + i % 40), str(i % 7), str(target(i))] for i in range(n)]


def _table(rows: list[list[str]], header: str = HEADER) -> str:
    return header + "".join(",".join(row) + "\n" for row in rows)


def _with(cell: tuple[int, int, str], rows: list[list[str]] | None = None) -> str:
    rows = rows or _rows()
    row, col, value = cell
    rows[row][col] = value
    return _table(rows)


PLAIN = _table(_rows()).encode()


def _zip(text: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.csv", text)
    return buffer.getvalue()


# name -> (file bytes, reader options, fragments of the one-line message)
CASES = {
    # compressed files are refused with the command that unpacks them
    "gzip": (gzip.compress(PLAIN), {}, ["is a gzip-compressed file", "(gunzip "]),
    "bzip2": (bz2.compress(PLAIN), {}, ["is a bzip2-compressed file", "(bunzip2 "]),
    "xz": (lzma.compress(PLAIN), {}, ["is an xz-compressed file", "(unxz "]),
    "zip": (_zip(PLAIN), {}, ["is a zip archive", "(unzip "]),
    "zstd": (b"\x28\xb5\x2f\xfd" + bytes(32), {}, ["is a zstd-compressed file", "(unzstd "]),
    # not UTF-8 text, wherever it starts
    "latin1_past_the_first_block": (
        _table(_rows(8_000)).encode() + "20,1,4\xe9\n".encode("latin-1"), {"chunk_rows": 1000},
        ["must be a UTF-8 CSV file", "Received: byte 0xe9 on line 8002"],
    ),
    "utf16_without_bom": (
        _table(_rows()).encode("utf-16-le"), {}, ["must be a UTF-8 CSV file", "a NUL byte"],
    ),
    # values, as the float32 they become
    "1e300_feature": (
        _with((5, 0, "1e300")).encode(), {},
        ["column 'age' must be finite as a 32-bit float", "Received: 1e+300 on line 7"],
    ),
    "float32_overflow_by_rounding": (
        _with((30, 1, "3.4028236e38")).encode(), {},
        ["column 'years_worked' must be finite as a 32-bit float", "on line 32"],
    ),
    "negative_infinity": (
        _with((3, 0, "-inf")).encode(), {},
        ["column 'age' must be finite. Received: -inf on line 5"],
    ),
    "1e30_target": (
        _table(_rows(target=lambda i: f"{(i + 1) * 1e30:g}")).encode(), {},
        ["column 'salary' must be at most 1e+15 in magnitude", "Received: 1e+30 on line 2"],
    ),
    "1e20_feature_in_a_later_chunk": (
        _with((25, 1, "1e20")).encode(), {},
        ["column 'years_worked' must be at most 1e+15", "Received: 1e+20 on line 27"],
    ),
    "target_too_wide": (
        _table(_rows(target=lambda i: f"{i * 1e9:g}")).encode(), {},
        ["target column 'salary' must have a standard deviation of at most 1e+09",
         "Received: standard deviation 1.15e+10"],
    ),
    # booleans and labels
    "true_false_feature": (  # declared numeric; undeclared, it is a categorical column
        _table([[a, ["false", "true"][i % 2], s] for i, (a, _, s) in enumerate(_rows())]).encode(),
        {"features": [Column("age"), Column("years_worked", "numeric")]},
        ["column 'years_worked' must be numeric (write true/false as 1/0)",
         "Received: 'False' on line 2"],
    ),
    "true_false_feature_inferred": (
        _table([[a, ["false", "true"][i % 2], s] for i, (a, _, s) in enumerate(_rows())]).encode(),
        {}, [],
    ),
    "true_false_label": (  # a classifier's labels may be any text
        _table([[a, b, ["False", "True"][i % 2]] for i, (a, b, _) in enumerate(_rows())]).encode(),
        {"classification": True}, [],
    ),
    "true_false_regression_target": (
        _table([[a, b, ["False", "True"][i % 2]] for i, (a, b, _) in enumerate(_rows())]).encode(),
        {}, ["column 'salary' must be numeric (write true/false as 1/0)",
             "Received: 'False' on line 2"],
    ),
    "three_classes": (_table(_rows(target=lambda i: i % 3)).encode(), {"classification": True}, []),
    "one_class": (
        _table(_rows(target=lambda i: "yes")).encode(), {"classification": True},
        ["target column 'salary' must hold at least two classes for classification",
         "Received: every value 'yes'"],
    ),
    # missing: mean needs a value to fill with
    "mean_of_an_empty_column": (
        _table([[a, "", s] for a, _, s in _rows()]).encode(), {"missing": "mean"},
        ["column 'years_worked' must have a value in the training rows", "every training cell"],
    ),
    # the header
    "pipe_separated": (
        PLAIN.replace(b",", b"|"), {}, ["must have a column 'age'", "looks '|'-separated"],
    ),
    "trailing_comma_on_every_row": (
        PLAIN.replace(b"\n", b",\n").replace(b"salary,\n", b"salary\n"), {},
        ["could not be read as CSV", "Expected 3 fields in line 2, saw 4"],
    ),
    "empty_header_cell_is_a_duplicate_of_nothing": (
        _table([[*r, "x", "y"] for r in _rows()], header="age,years_worked,salary,,\n").encode(),
        {}, [],
    ),
}  # fmt: skip


def _messages(path: Path, options: dict) -> list[str]:
    """The message of each reader (in memory, streamed, validate's first), or "ok"."""
    options = {"validation": 0.15, "test": 0.15, "seed": 1, **options}
    chunk_rows = options.pop("chunk_rows", 7)
    features, target = options.pop("features", ["age", "years_worked"]), "salary"
    found = []
    readers = (
        lambda: data_mod.load_splits(path, features, target, **options),
        lambda: Table(
            path, features, target, streamed=True, chunk_rows=chunk_rows, **options
        ).scan(),
    )
    for read in readers:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a numpy warning is a second line
                read()
        except DataError as error:
            found.append(str(error))
        else:
            found.append("ok")
    found.append((data_mod.problems(path, features, target, **options) or ["ok"])[0])
    return found


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_csv_gets_one_line_from_every_reader(name, tmp_path):
    content, options, fragments = CASES[name]
    path = tmp_path / f"{name}.csv"
    path.write_bytes(content)
    in_memory, streamed, validated = _messages(path, options)
    assert streamed == in_memory and validated == in_memory
    if not fragments:
        assert in_memory == "ok"
        return
    assert "\n" not in in_memory and str(path) in in_memory, in_memory
    assert "np." not in in_memory, in_memory  # numpy scalars shown as plain values
    for fragment in fragments:
        assert fragment in in_memory, in_memory


# (rows, validation, test) -> whether the in-memory split leaves train >= 2 and one row in
# each part asked for
SPLITS = [
    (3, 0.15, 0.15, False),
    (4, 0.25, 0.25, True),
    (5, 0.45, 0.45, False),
    (10, 0.001, 0.001, True),  # tiny fractions still get a row each
    (10, 0.0, 0.0, True),  # none asked for: all rows train
    (3, 0.0, 0.3, True),
    (2, 0.0, 0.3, False),
]


@pytest.mark.parametrize(("rows", "validation", "test", "fits"), SPLITS)
def test_split_fractions_leave_every_part_a_row(tmp_path, rows, validation, test, fits):
    path = tmp_path / "rows.csv"
    path.write_text(_table(_rows(rows)))
    options = {"validation": validation, "test": test, "seed": 3}
    if fits:
        splits = data_mod.load_splits(path, ["age", "years_worked"], "salary", **options)
        counts = splits.counts()
        assert counts["train"] >= 2 and sum(counts.values()) == rows
        assert counts["validation"] >= (validation > 0) and counts["test"] >= (test > 0)
    else:
        with pytest.raises(DataError, match=f"enough rows for the splits.*Received: {rows} rows"):
            data_mod.load_splits(path, ["age", "years_worked"], "salary", **options)
    try:  # the hash split may leave a part of a tiny file empty; never silently
        table = Table(path, ["age", "years_worked"], "salary", streamed=True, **options)
        counts = table.scan().rows
    except DataError as error:
        assert "split by a hash" in str(error) and f"Received: {rows} rows" in str(error)
    else:
        assert counts["train"] >= 2 and counts["test"] >= (test > 0)
        assert counts["validation"] >= (validation > 0)


@pytest.mark.parametrize(
    ("asked", "fragment"),
    [
        (" years_worked", "read without the spaces around them: write 'years_worked'"),
        ("years worked", "Did you mean 'years_worked'?"),
        ("", "must have a column ''"),  # an empty header cell is no column
    ],
)
def test_header_names_are_matched_without_their_spaces(tmp_path, asked, fragment):
    path = tmp_path / "spaced.csv"  # spaces around names, and an unnamed last column
    rows = "".join(",".join(row) + ",x\n" for row in _rows())
    path.write_text(" age ,  years_worked,salary,\n" + rows)
    splits = data_mod.load_splits(
        path, ["age", "years_worked"], "salary", validation=0.15, test=0.15, seed=1
    )
    assert sum(splits.counts().values()) == 40
    for read in (
        lambda: data_mod.load_splits(
            path, ["age", asked], "salary", validation=0.15, test=0.15, seed=1
        ),
        lambda: Table(
            path, ["age", asked], "salary", validation=0.15, test=0.15, seed=1, streamed=True
        ).scan(),
    ):
        with pytest.raises(DataError) as info:  # never a KeyError
            read()
        assert fragment in str(info.value)


def test_least_squares_returns_or_refuses_at_once():
    # LAPACK's SVD never returns on inf or NaN: guarded, in a process that must end.
    code = """
import numpy as np
from builder.errors import DataError
from builder.data.scoring import least_squares
from builder.data.stats import LeastSquares
x = np.random.default_rng(0).normal(size=(50, 3))
for bad in (np.inf, np.nan, 1e300 * 1e300):
    xb = x.copy(); xb[7, 1] = bad
    try:
        least_squares(xb, x[:, 0])
    except DataError as error:
        assert "least squares needs finite values" in str(error)
    else:
        raise SystemExit("accepted")
fit = least_squares(np.column_stack([x[:, 0] * 1e38, x[:, 1] * 1e-38, x[:, 0]]), x[:, 2])
assert np.isfinite(fit.coef).all()
lsq = LeastSquares(3); lsq.update(x, x[:, 0]); lsq.ata[0, 0] = np.inf
try:
    lsq.solve(np.zeros(3))
except DataError:
    print("refused")
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "refused"


def test_data_override_is_held_to_data_paths_rules(linear_config, tmp_path):
    config = load_config(linear_config)
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    cases = {
        tmp_path: "--data must name a file, not a directory",
        fifo: "--data must name a regular file, not a FIFO (named pipe)",
        "/dev/null": "--data must name a regular file, not a character device",
        tmp_path / "absent.csv": "--data must name an existing file",
        "bad\0name.csv": "--data must not contain a NUL byte",
    }
    for data, rule in cases.items():
        with pytest.raises(DataError) as info:
            with_overrides(config, data=data)
        assert str(info.value).startswith(rule) and "Received: " in str(info.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "--data", "x\0.csv", "c.yaml"], "error: --data must not contain a NUL"),
        (["train", "c\0.yaml"], "error: argument 2 must not contain a NUL byte"),
        (["predict", "run", "--data=x\0"], "error: --data must not contain a NUL byte"),
    ],
)
def test_nul_byte_in_an_argument_is_one_line(args, message, capsys):
    from builder.cli_fast import main

    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_evaluate_applies_trainings_value_rules(trained_run, tmp_path):
    run = load_run(trained_run.path)
    rows = "".join(f"{i},{i % 5},{1000 + i},{3 * i}\n" for i in range(30))
    path = tmp_path / "huge.csv"
    path.write_text(",".join([*LINEAR_FEATURES, LINEAR_TARGET]) + "\n" + rows + "1,2,3,1e300\n")
    with pytest.raises(DataError) as info:
        evaluate(run, path, chunk_rows=8)
    assert f"column '{LINEAR_TARGET}' must be finite as a 32-bit float" in str(info.value)
    assert "Received: 1e+300 on line 32" in str(info.value)


@pytest.mark.slow
def test_evaluate_refuses_labels_a_binary_model_was_not_trained_on(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(_table(_rows(60, target=lambda i: int(i % 7 > 3))))
    config = {
        "name": "binary",
        "data": {"path": str(path), "features": ["age", "years_worked"], "target": "salary"},
        "model": {"output": {"activation": "sigmoid"}},
        "training": {"loss": "binary_crossentropy", "metrics": ["accuracy"], "epochs": 1},
    }
    run = builder.train(write_yaml(tmp_path / "c.yaml", config), runs_dir=tmp_path / "runs")
    assert run.config.task == "classification"
    other = tmp_path / "three.csv"
    other.write_text(_table(_rows(30, target=lambda i: i % 3)))
    with pytest.raises(DataError) as info:
        evaluate(load_run(run.path), other, chunk_rows=2)
    assert str(info.value) == (
        f"{other}: target column 'salary' must hold the classes the model was trained on "
        f"(0, 1). Received: '2' on line 4"
    )
    # Training on that file is a three-class classifier instead.
    table = data_mod.load_splits(other, ["age", "years_worked"], "salary", validation=0.15,
                                 test=0.15, seed=1, classification=True)  # fmt: skip
    assert table.labels.classes == ("0", "1", "2")


@pytest.mark.slow
def test_a_target_at_the_spread_bound_trains_to_finite_metrics(tmp_path):
    # The bound is where training breaks, not below it: a standard deviation of 1e9 trains
    # (in float32, Adam, MSE in the target's units), and 1e30 is refused before training.
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(300, 2))
    z = x @ [2.0, -1.0] + rng.normal(0, 0.01, 300)
    y = 3e9 + z / np.std(z) * 0.95 * data_mod.MAX_TARGET_STD
    path = tmp_path / "wide.csv"
    path.write_text(HEADER + "".join(f"{a},{b},{t}\n" for (a, b), t in zip(x, y, strict=True)))
    config = {
        "name": "wide",
        "data": {"path": str(path), "features": ["age", "years_worked"], "target": "salary"},
        "training": {"steps": 200},
    }
    run = builder.train(write_yaml(tmp_path / "c.yaml", config), runs_dir=tmp_path / "runs")
    assert all(np.isfinite(v) for v in run.metrics["test"].values())
    assert run.metrics["test"]["r2"] > 0.9


def test_an_unreadable_csv_is_one_line(tmp_path, monkeypatch):
    """Permission denied (faked: tests may run as root, which reads anything)."""
    import builtins

    path = tmp_path / "d.csv"
    make_linear_frame(rows=20).to_csv(path, index=False)
    real_open = builtins.open

    def denied(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)
    with pytest.raises(DataError) as info:
        data_mod.load_splits(path, LINEAR_FEATURES, LINEAR_TARGET, validation=0.2, test=0.2, seed=0)
    assert str(info.value) == f"data file {path} cannot be read: Permission denied"
