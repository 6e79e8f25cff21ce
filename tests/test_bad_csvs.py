"""The corpus of bad and unusual CSVs in tests/bad_csvs: each one's expected outcome."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import builder
from builder.cli import app
from builder.data import (
    CHUNK_ROWS,
    Table,
    load_splits,
    problems,
    read_column_chunks,
    read_columns,
)
from builder.data.columns import Column
from builder.errors import DataError
from tests.conftest import write_yaml

FOLDER = Path(__file__).parent / "bad_csvs"
# Declared numeric: undeclared, a column holding text is categorical (tests/test_categorical.py).
FEATURES = [Column("age", "numeric"), Column("years_worked", "numeric")]
NAMES = ["age", "years_worked"]
DECLARED = [{"name": name, "type": "numeric"} for name in NAMES]
TARGET = "salary"

# file -> fragments the one-line error must contain
REJECTED = {
    "empty.csv": ["is empty"],
    "header_only.csv": ["has a header but no data rows"],
    "missing_feature.csv": ["must have a column 'age'", "Did you mean 'agee'?",
                            "Received columns: agee, years_worked, salary"],
    "missing_target.csv": ["must have a column 'salary'",
                           "Received columns: age, years_worked, pay"],
    "non_numeric.csv": ["column 'age' must be numeric", "Received: 'abc' on line 4"],
    "empty_cells.csv": ["column 'years_worked' must have no empty or NaN cells",
                        "data.missing", "Received: 2 empty on lines 3, 5"],
    "nan_values.csv": ["column 'years_worked' must have no empty or NaN cells", "on line 6"],
    "infinite.csv": ["column 'years_worked' must be finite", "Received: inf on line 3"],
    "duplicate_columns.csv": ["column names must be unique", "Received: 'age' twice"],
    "semicolon.csv": ["must have a column 'age'", "looks ';'-separated"],
    "too_few_rows.csv": ["must have enough rows for the splits", "Received: 3 rows"],
    "constant_target.csv": ["target column 'salary' must vary", "Received: every value 50000"],
    "ragged_row.csv": ["could not be read as CSV", "line 4"],
    "latin1.csv": ["must be a UTF-8 CSV file", "Received: byte 0xe9 on line 7", "not UTF-8"],
    "binary.csv": ["must be a UTF-8 CSV file", "Received: byte 0x89 on line 1"],
    "all_rows_empty_target.csv": ["column 'salary' must have no empty or NaN cells",
                                  "Received: 20 empty"],
    # the header
    "tab_separated.csv": ["must have a column 'age'", "The header looks tab-separated"],
    "no_header.csv": ["must have a column 'age'", "The first line looks like data"],
    "duplicate_after_spaces.csv": ["column names must be unique",
                                   "Received: 'age' twice, as columns 1 and 3"],
    "extra_field_every_row.csv": ["could not be read as CSV",
                                  "Expected 3 fields in line 2, saw 4"],
    # values, checked against what they become (float32) and what training does with them
    "float32_overflow.csv": ["column 'age' must be finite as a 32-bit float",
                             "3.402823e+38", "Received: 1e+300 on line 7"],
    "huge_target.csv": ["column 'salary' must be at most 1e+15 in magnitude",
                        "Received: 4e+29 on line 2"],
    "wide_target.csv": ["target column 'salary' must have a standard deviation of at most 1e+09",
                        "Received: standard deviation"],
    "true_false.csv": ["column 'salary' must be numeric (write true/false as 1/0)",
                       "Received: 'False' on line 2"],
    # text columns and labels (their options: OPTIONS)
    "unseen_category.csv": ["column 'job' must hold values seen in training (data.unknown: error)",
                            "Received: 'astronaut' on line 9"],
    "one_class_label.csv": ["target column 'salary' must hold at least two classes",
                            "Received: every value 'yes'"],
    # encodings
    "utf16.csv": ["must be a UTF-8 CSV file", "Received: UTF-16 text", "iconv"],
    "nul_byte.csv": ["must be a UTF-8 CSV file", "Received: a NUL byte on line 5"],
}  # fmt: skip
ACCEPTED = {  # file -> rows read
    "utf8_bom.csv": 20,
    "crlf.csv": 20,
    "quoted_numbers.csv": 20,
    "extra_columns.csv": 20,
    "scientific.csv": 20,
    "spaces_around.csv": 20,
    "no_trailing_newline.csv": 20,
    "blank_lines.csv": 20,
    "constant_feature.csv": 20,
    "header_spaces.csv": 20,  # names are read without the spaces around them
    "index_column.csv": 20,  # empty names (DataFrame.to_csv's index column) are ignored
}


# Files read with other options than the rest: a categorical column, a classifier's labels.
OPTIONS = {
    "unseen_category.csv": {"features": [*FEATURES, Column("job")], "unknown": "error"},
    "one_class_label.csv": {"classification": True},
}


def options(name: str, **kwargs) -> dict:
    """The reader options of a corpus file: features, target and split, and its own."""
    found = {"features": FEATURES, "target": TARGET, "validation": 0.15, "test": 0.15, "seed": 1}
    return {**found, **OPTIONS.get(name, {}), **kwargs}


def _load(name: str, **kwargs):
    return load_splits(FOLDER / name, **options(name, **kwargs))


def test_corpus_is_complete():
    on_disk = {p.name for p in FOLDER.glob("*.csv")}
    assert on_disk == set(REJECTED) | set(ACCEPTED)
    assert len(on_disk) >= 36


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected(name):
    with pytest.raises(DataError) as info:
        _load(name)
    message = str(info.value)
    assert "\n" not in message and name in message, message
    for fragment in REJECTED[name]:
        assert fragment in message, message


@pytest.mark.parametrize("name", sorted({*REJECTED, *ACCEPTED}))
def test_chunked_reading_says_what_whole_reading_says(name):
    # predict and evaluate read in chunks (3 rows here): same rows, same errors, same lines.
    columns = [*NAMES, TARGET]
    try:
        whole = read_columns(FOLDER / name, columns)
    except DataError as error:
        with pytest.raises(DataError) as chunked:
            list(read_column_chunks(FOLDER / name, columns, chunk_rows=3))
        assert str(chunked.value) == str(error)
        return
    chunks = list(read_column_chunks(FOLDER / name, columns, chunk_rows=3))
    assert len(chunks) == -(-len(whole) // 3)
    numeric = pd.concat([n for n, _ in chunks])
    pd.testing.assert_frame_equal(numeric, whole)
    text = pd.concat([t for _, t in chunks], ignore_index=True)
    # The text keeps the file's header as written (predict writes it back).
    assert len(text) == len(whole) and set(columns) <= {c.strip() for c in text.columns}
    numbers_only = list(read_column_chunks(FOLDER / name, columns, chunk_rows=3, text=False))
    assert all(t is None for _, t in numbers_only)
    pd.testing.assert_frame_equal(pd.concat([n for n, _ in numbers_only]), whole)


@pytest.mark.parametrize("chunk_rows", [CHUNK_ROWS, 3])
@pytest.mark.parametrize("name", sorted(REJECTED))
def test_streaming_says_word_for_word_what_the_in_memory_reader_says(name, chunk_rows):
    # One reader (builder.data.csv) and one statistics pass for both: same text, same line.
    with pytest.raises(DataError) as whole:
        _load(name)
    stream = Table(FOLDER / name, **options(name, streamed=True, chunk_rows=chunk_rows))
    with pytest.raises(DataError) as streamed:
        stream.scan()
    assert str(streamed.value) == str(whole.value)
    # ... and `builder validate --data` lists it first
    found = problems(FOLDER / name, **options(name))
    assert found[0] == str(whole.value)


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_accepted(name):
    splits = _load(name)
    assert sum(splits.counts().values()) == ACCEPTED[name]
    assert np.isfinite(splits.train.x).all() and np.isfinite(splits.train.y).all()


def test_accepted_values_are_read_exactly():
    plain = _load("crlf.csv")
    for name in ("utf8_bom.csv", "quoted_numbers.csv", "extra_columns.csv", "spaces_around.csv"):
        other = _load(name)
        np.testing.assert_array_equal(other.train.x, plain.train.x)
        np.testing.assert_array_equal(other.test.y, plain.test.y)


def test_missing_drop_and_mean_are_recorded(tmp_path):
    dropped = _load("empty_cells.csv", missing="drop")
    assert sum(dropped.counts().values()) == 18 and dropped.dropped_rows == 2
    filled = _load("empty_cells.csv", missing="mean")
    assert sum(filled.counts().values()) == 20 and filled.filled_cells == 2
    config = {
        "name": "holes",
        "data": {"path": str(FOLDER / "empty_cells.csv"), "features": DECLARED,
                 "target": TARGET, "missing": "mean"},
        "training": {"epochs": 1},
    }  # fmt: skip
    run = builder.train(write_yaml(tmp_path / "c.yaml", config), runs_dir=tmp_path / "runs")
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert manifest["data"]["missing"] == "mean" and manifest["data"]["filled_cells"] == 2


def test_constant_feature_trains_without_dividing_by_zero(tmp_path):
    config = {
        "name": "const",
        "data": {"path": str(FOLDER / "constant_feature.csv"), "features": DECLARED,
                 "target": TARGET},
        "training": {"epochs": 2},
    }  # fmt: skip
    run = builder.train(write_yaml(tmp_path / "c.yaml", config), runs_dir=tmp_path / "runs")
    assert all(np.isfinite(v) for v in run.metrics["test"].values())
    weights = np.concatenate([w.ravel() for w in run.model.get_weights()])
    assert np.isfinite(weights).all()


def test_a_classification_target_needs_two_classes_and_at_most_a_thousand(tmp_path):
    one = tmp_path / "one.csv"
    one.write_text("age,years_worked,salary\n" + "".join(f"{i},{i},yes\n" for i in range(20)))
    with pytest.raises(DataError, match="must hold at least two classes.*every value 'yes'"):
        _load(str(one), classification=True)
    many = tmp_path / "many.csv"
    many.write_text("age,years_worked,salary\n" + "".join(f"{i},1,{i}\n" for i in range(1002)))
    with pytest.raises(DataError, match="at most 1,000 classes"):
        _load(str(many), classification=True)


def test_cli_reports_a_bad_csv_in_one_line(tmp_path):
    config = {
        "name": "bad",
        "data": {"path": str(FOLDER / "non_numeric.csv"), "features": DECLARED, "target": TARGET},
    }
    path = write_yaml(tmp_path / "c.yaml", config)
    result = CliRunner().invoke(app, ["train", str(path), "--runs-dir", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert "column 'age' must be numeric. Received: 'abc' on line 4" in result.output
    assert not (tmp_path / "r").exists()


def _table_text(cells: dict[tuple[int, str], str], rows: int = 20) -> str:
    # A clean 20-row file with some cells replaced: (data row, column) -> text.
    lines = ["age,years_worked,salary"]
    for row in range(rows):
        values = {"age": str(20 + row), "years_worked": str(row % 7), "salary": str(40000 + row)}
        values.update({name: text for (at, name), text in cells.items() if at == row})
        lines.append(",".join(values[name] for name in ("age", "years_worked", "salary")))
    return "\n".join(lines) + "\n"


# Two problems in one file: the one on the first line is named, whatever its column, its rule or
# the chunk it falls in; empty cells are counted over the whole file.
FIRST_LINE = {
    "later_column_first": ({(8, "age"): "abc", (2, "years_worked"): "xyz"},
                           "column 'years_worked' must be numeric. Received: 'xyz' on line 4"),
    "magnitude_before_non_numeric": ({(1, "salary"): "1e20", (13, "age"): "abc"},
                                     "column 'salary' must be at most 1e+15 in magnitude"),
    "non_numeric_before_magnitude": ({(13, "salary"): "1e20", (1, "age"): "abc"},
                                     "column 'age' must be numeric. Received: 'abc' on line 3"),
    "overflow_after_infinity": ({(9, "age"): "1e300", (4, "years_worked"): "-inf"},
                                "column 'years_worked' must be finite. Received: -inf on line 6"),
    "empty_cells_of_a_later_column_first": (
        {(10, "age"): "", (17, "age"): "", (3, "years_worked"): ""},
        "column 'years_worked' must have no empty or NaN cells (set data.missing to drop or "
        "mean to allow them). Received: 1 empty on line 5",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(FIRST_LINE))
def test_the_first_offending_line_is_named_on_every_path(name, tmp_path):
    cells, expected = FIRST_LINE[name]
    path = tmp_path / f"{name}.csv"
    path.write_text(_table_text(cells))
    options = {"validation": 0.15, "test": 0.15, "seed": 1}
    with pytest.raises(DataError) as whole:
        load_splits(path, FEATURES, TARGET, **options)
    assert f"{path}: {expected}" in str(whole.value)
    for chunk_rows in (3, 7, CHUNK_ROWS):
        with pytest.raises(DataError) as streamed:
            Table(path, FEATURES, TARGET, streamed=True, chunk_rows=chunk_rows, **options).scan()
        assert str(streamed.value) == str(whole.value), chunk_rows
    assert problems(path, FEATURES, TARGET, **options)[0] == str(whole.value)
