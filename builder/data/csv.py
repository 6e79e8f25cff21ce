"""The one CSV reader: file checks, header, parsing, the cell rules and their messages.

Knows columns and rows, nothing about splits or models. Every problem with a file is a
``DataError`` that names the file, the column and, where it applies, the first offending line
and value. ``CsvReader`` reads any file in blocks of rows (one block for the whole file when
``chunk_rows`` is ``None``); training in memory, streamed training, ``predict``, ``evaluate``,
``explain`` and ``builder validate`` all read through it.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import hashlib
import math
import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from builder import files
from builder.data.columns import clean_text, infer_kind
from builder.errors import DataError
from builder.rules import number_text, plain


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Cells read as missing.
NA_VALUES = ["", "NA", "N/A", "NaN", "nan", "NULL", "null"]
# Rows parsed at a time by ``read_column_chunks`` (predict and evaluate) and by a streamed table:
# large enough that pandas' per-call cost vanishes, small enough that a chunk of a few dozen
# numeric columns stays within tens of MB.
CHUNK_ROWS = 131_072

FLOAT32_MAX = float(np.finfo(np.float32).max)
# Casting rounds to the nearest float32: from this magnitude on, a float64 becomes inf.
_FLOAT32_OVERFLOW = 2.0**128 - 2.0**103

MAX_MAGNITUDE = 1e15
"""The largest magnitude of a value builder trains on. Training runs in float32 (at most 3.4e38),
where the normalization's mean and variance and the loss sum values and their squares over
rows: a single square overflows from about 1.8e19, and sums of squares of 1e15 stay finite up to
hundreds of millions of rows. ``predict`` and ``evaluate`` take any value finite as float32."""

MAX_TARGET_STD = 1e9
"""The largest standard deviation of a regression target. The loss is computed in the target's
own units (target scaling only reparametrizes the output), so its gradients grow with the square
of the target's scale and Adam's second moment with its fourth power, which leaves float32's
range (3.4e38) for a standard deviation of a few times 1e9: the first epoch then ends in NaN."""

# Bytes at the start of a file looked at for compression, other encodings and binary content.
_SNIFF_BYTES = 1 << 16

# Leading bytes of compressed files and archives, what each is, and the command that unpacks
# it. They are refused rather than read through: `data.streaming: auto` decides by the file's
# size, which says nothing about the rows a compressed file holds.
_COMPRESSED = (
    (b"\x1f\x8b", "a gzip-compressed file", "gunzip"),
    (b"\xfd7zXZ\x00", "an xz-compressed file", "unxz"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file", "unzstd"),
    (b"PK\x03\x04", "a zip archive", "unzip"),
    (b"PK\x05\x06", "a zip archive", "unzip"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "7z x"),
)
# bzip2's magic is printable text ("BZh9"), so the first block's magic (or the end of an empty
# stream) is matched too.
_BZIP2 = re.compile(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)")
# Byte-order marks of the encodings a spreadsheet's "Unicode text" export uses (UTF-32 first:
# its little-endian mark starts with UTF-16's).
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
# Separators a one-column header may hold instead of commas, as messages name them.
_SEPARATORS = (("\t", "tab"), (";", "';'"), ("|", "'|'"))


def _short(value: Any, limit: int = 60) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


_NEWLINE = b"\n"


def _encoding_problem(path: Path, *, limit: int | None = None) -> str | None:
    """The message for the file's first byte that is not UTF-8 text, or is NUL; else None.

    Reads ``limit`` bytes at most (the whole file when ``None``), in blocks.
    """
    line = 1
    carry = b""
    read = 0
    with open(path, "rb") as handle:
        while limit is None or read < limit:
            block = handle.read(1 << 20 if limit is None else limit - read)
            buf = carry + block
            if read == 0 and buf.startswith(codecs.BOM_UTF8):
                buf = buf[len(codecs.BOM_UTF8) :]
            read += len(block)
            if not buf:
                return None
            bad = None
            try:
                buf.decode("utf-8")
                good = len(buf)
            except UnicodeDecodeError as err:
                # A character cut by the end of the block is completed by the next one.
                if block and err.reason == "unexpected end of data":
                    good = err.start
                else:
                    good = bad = err.start
            nul = buf.find(b"\0", 0, good)
            if nul >= 0:
                return (
                    f"{path} must be a UTF-8 CSV file. Received: a NUL byte on line "
                    f"{line + buf.count(_NEWLINE, 0, nul)} (a binary file, or UTF-16 text?)"
                )
            if bad is not None:
                return (
                    f"{path} must be a UTF-8 CSV file. Received: byte 0x{buf[bad]:02x} on line "
                    f"{line + buf.count(_NEWLINE, 0, bad)}, which is not UTF-8 (a Latin-1 or "
                    f"Windows-1252 file? Save it as UTF-8)"
                )
            line += buf.count(_NEWLINE, 0, good)
            carry = buf[good:]
            if not block:
                return None
    return None


def _sniff(path: Path) -> None:
    # What the first bytes say: empty, compressed, another encoding, binary.
    with open(path, "rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if not head:
        raise DataError(f"{path} is empty: a CSV needs a header row and data rows.")
    for magic, what, command in _COMPRESSED:
        if head.startswith(magic):
            raise DataError(_compressed_message(path, what, command))
    if _BZIP2.match(head):
        raise DataError(_compressed_message(path, "a bzip2-compressed file", "bunzip2"))
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            raise DataError(
                f"{path} must be a UTF-8 CSV file. Received: {encoding} text (it starts with "
                f"a {encoding} byte-order mark); save it as UTF-8, e.g. "
                f"iconv -f {encoding} -t UTF-8 {shlex.quote(str(path))}"
            )
    problem = _encoding_problem(path, limit=_SNIFF_BYTES)
    if problem:
        raise DataError(problem)


def _compressed_message(path: Path, what: str, command: str) -> str:
    return (
        f"{path} is {what}; builder reads plain UTF-8 CSV: decompress it first "
        f"({command} {shlex.quote(str(path))})"
    )


def _header(path: Path) -> tuple[list[str], list[str] | None, int]:
    # The header, the first data row (None when there is none) and that row's line number.
    # skipinitialspace as pandas reads (csv_options), so both see the same quoted names.
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path} is empty: a CSV needs a header row and data rows.") from None
        except UnicodeDecodeError as err:
            raise DataError(_encoding_problem(path) or f"{path} must be UTF-8: {err}") from None
        except csv.Error as err:
            raise DataError(f"{path} could not be read as CSV: {err}") from None
        try:
            first = next((row for row in reader if row), None)
        except (UnicodeDecodeError, csv.Error):  # pandas reads what csv cannot (a huge cell)
            first = None
        return header, first, reader.line_num


def checked_header(path: Path) -> list[str]:
    """The column names in the header of an existing, regular, plain UTF-8 CSV file, checked.

    Names are read as pandas reads cells (quotes, a BOM) and without the spaces around them, so
    ``age, years_worked`` names ``years_worked``. An empty name (the index column
    ``DataFrame.to_csv`` writes) is allowed, may repeat, and never matches a config's column;
    other names must be unique.

    Raises:
        DataError: the file is missing, a directory or device, compressed, not UTF-8 text, or
            its header breaks a rule; its first data row has more fields than the header (pandas
            would silently read the first field as the row's label, shifting every column).
    """
    path = Path(path)
    files.check_regular(path, what="data file", error=DataError)  # a FIFO would never end
    try:
        _sniff(path)
    except OSError as err:  # permission denied, an I/O error: the first read says so
        raise DataError(f"data file {path} cannot be read: {err.strerror or err}") from None
    raw, first, line = _header(path)
    names = [name.strip() for name in raw]
    if not any(names):
        raise DataError(f"{path} must start with a header row of column names. Received: {raw}")
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name in seen:
            raise DataError(
                f"{path}: column names must be unique (spaces around them aside). "
                f"Received: '{name}' twice, as columns {seen[name]} and {position}"
            )
        if name:
            seen[name] = position
    if first is not None and len(first) > len(names):
        raise DataError(
            f"{path} could not be read as CSV: Expected {len(names)} fields in line {line}, "
            f"saw {len(first)} (the header names {len(names)} columns)"
        )
    return names


def present_columns(header: Sequence[str]) -> set[str]:
    """The names of ``checked_header`` that a config can ask for (all but empty ones)."""
    return {name for name in header if name}


def _wanted_columns(
    path: Path, columns: Sequence[str], optional: Sequence[str]
) -> tuple[list[str], list[str]]:
    header = checked_header(path)
    present = present_columns(header)
    absent = [c for c in columns if c not in present]
    if absent:
        raise DataError(absent_message(path, absent[0], header))
    return header, [*columns, *[c for c in optional if c in present and c not in columns]]


def _shown_name(name: str) -> str:
    return name if name and name.isprintable() else repr(name)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def absent_message(path: Path, name: str, header: Sequence[str]) -> str:
    """The message for a column ``name`` that ``header`` (``checked_header``'s) lacks.

    It says what the header suggests: a did-you-mean, a header that is one column holding tabs
    or semicolons, a first line of numbers (no header row), a name asked with spaces around it.
    """
    message = f"{path} must have a column '{name}'."
    names = [n for n in header if n]
    close: list[str] = []
    if name.strip() != name and name.strip() in names:
        message += f" Header names are read without the spaces around them: write '{name.strip()}'."
    else:
        close = difflib.get_close_matches(name, names, n=1)
    if len(header) == 1:
        word = next((word for sep, word in _SEPARATORS if sep in header[0]), None)
        if word:
            message += f" The header looks {word}-separated: builder reads comma-separated files."
            close = []  # the whole header line is no name to suggest
    if names and all(_is_number(n) for n in names):
        message += " The first line looks like data: the file needs a header row of column names."
    if close:
        message += f" Did you mean '{close[0]}'?"
    shown = ", ".join(_shown_name(n) for n in header[:20]) + (" ..." if len(header) > 20 else "")
    return f"{message} Received columns: {shown}"


def csv_options() -> dict:
    """``pandas.read_csv`` options of every numeric read."""
    # No usecols: with it pandas silently accepts rows with too many fields.
    return {
        "encoding": "utf-8-sig",
        "skipinitialspace": True,
        "keep_default_na": False,
        "na_values": NA_VALUES,
    }


def read_frames(
    path: Path,
    header: Sequence[str],
    *,
    chunk_rows: int | None = None,
    text: Sequence[str] = (),
) -> Iterator[tuple[int, pd.DataFrame]]:
    """The data rows of a CSV as frames whose columns are ``header`` (``checked_header``'s).

    Columns named in ``text`` are read as strings (a categorical column's ``02139`` stays
    ``02139``); the others as pandas infers them.

    Yields:
        ``(start, frame)``: the whole file as one frame (``chunk_rows`` ``None``) or
        ``chunk_rows`` rows at a time; ``start`` is the data-row number of the frame's first
        row (0 is the row after the header), its line ``start + 2``.

    Raises:
        DataError: the file cannot be parsed (ragged rows, bytes that are not UTF-8) or has no
            data rows.
    """
    options = csv_options() if chunk_rows is None else {**csv_options(), "chunksize": chunk_rows}
    if text:
        # By position: the file's own names may carry the spaces that checked_header strips.
        options["dtype"] = {i: str for i, name in enumerate(header) if name in set(text)}
    reader = _read_csv(path, options)
    start = 0
    with contextlib.nullcontext() if chunk_rows is None else reader:
        for frame in [reader] if chunk_rows is None else _chunks(reader, path):
            if len(frame) == 0:
                continue
            if len(frame.columns) != len(header):  # checked_header makes this unreachable
                raise DataError(
                    f"{path} could not be read as CSV: Expected {len(header)} fields, "
                    f"saw {len(frame.columns)}"
                )
            frame.columns = list(header)
            yield start, frame
            start += len(frame)
    if start == 0:
        raise DataError(f"{path} has a header but no data rows.")


@dataclass(frozen=True)
class Block:
    """Checked rows of a CSV: ``start``, the data-row number of the first (0 is the row after
    the header, on line 2), and ``values``, float64 ``(n, k)`` in the reader's column order
    (NaN for an empty cell). A text column's cells are in ``text`` (stripped strings, ``None``
    where empty); its column of ``values`` is 0.0, or NaN where empty."""

    start: int
    values: np.ndarray
    text: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def rows(self) -> np.ndarray:
        """The data-row number of each row."""
        return np.arange(self.start, self.start + len(self.values), dtype=np.int64)


class CsvReader:
    """The one CSV reader: header, parsing and cell rules, in blocks of rows, any file size.

    Training (in memory and streamed), ``predict``, ``evaluate`` and ``explain`` all read through
    it, so every rule has one implementation and one message. A cell rule (numeric, finite as
    float32, at most ``max_magnitude`` in magnitude) names the first offending line in the file
    across all columns (ties: the column asked first), whatever the block size. Under
    ``empty="error"``, the first empty cell stops the output, but reading goes on (checking every
    value), so that the message counts and places the empty cells of the whole file.

    Args:
        path: the CSV file (UTF-8, comma-separated, header row; BOM and CRLF are fine).
        columns: columns that must exist; other columns are ignored.
        optional: columns read when present (e.g. the target for ``predict``).
        empty: ``error`` makes empty cells an error; ``keep`` leaves them as NaN.
        max_magnitude: training's bound on values (``MAX_MAGNITUDE``); ``None``: none.
        chunk_rows: rows parsed at a time; ``None`` parses the file in one block.
        text: columns read as text (categorical features, a classifier's labels): no cell
            rule but the empty one applies to them.

    Raises:
        DataError: the file or a column is missing, or the header breaks a rule.
    """

    def __init__(
        self,
        path: str | Path,
        columns: Sequence[str],
        *,
        optional: Sequence[str] = (),
        empty: str = "error",
        max_magnitude: float | None = None,
        chunk_rows: int | None = CHUNK_ROWS,
        text: Sequence[str] = (),
    ) -> None:
        self.path = Path(path)
        self.header, names = _wanted_columns(self.path, columns, optional)
        self.names = tuple(names)
        self.empty = empty
        self.max_magnitude = max_magnitude
        self.chunk_rows = chunk_rows
        self.text = tuple(name for name in self.names if name in set(text))

    def blocks(self) -> Iterator[Block]:
        """Checked blocks in file order.

        Raises:
            DataError: the file cannot be parsed, has no data rows, or a cell breaks a rule; a
                problem in a later block is raised when it is reached (empty cells at the end).
        """
        empty = EmptyCells(self.names) if self.empty == "error" else None
        frames = read_frames(self.path, self.header, chunk_rows=self.chunk_rows, text=self.text)
        for start, frame in frames:
            values = column_values(
                frame,
                self.names,
                self.path,
                start,
                max_magnitude=self.max_magnitude,
                text=self.text,
            )
            texts = {name: clean_text(frame[name]) for name in self.text}
            for name, cells in texts.items():
                values[:, self.names.index(name)] = np.where(pd.isna(cells), np.nan, 0.0)
            if empty is not None and empty.add(np.isnan(values), start):
                continue
            yield Block(start, values, texts)
        if empty:
            raise DataError(empty.message(self.path))


def read_columns(
    path: str | Path,
    columns: Sequence[str],
    *,
    optional: Sequence[str] = (),
    missing: str = "error",
    text: Sequence[str] = (),
) -> pd.DataFrame:
    """Read the named numeric columns of a CSV, checking every rule on the way.

    Columns in ``text`` (categorical ones) hold their cells as stripped strings (``None`` where
    empty) instead of numbers.

    Args:
        path: the CSV file (UTF-8, comma-separated, header row; BOM and CRLF are fine).
        columns: columns that must exist; other columns are ignored.
        optional: columns read when present (e.g. the target for ``predict``).
        missing: ``error`` makes empty cells an error; ``drop`` and ``mean`` leave them as NaN
            for the caller to drop or fill (from training statistics).

    Returns:
        A float64 frame with the requested columns, in the order asked, and the file's row order;
        its index is each row's data-row number.

    Raises:
        DataError: missing file or column, non-numeric or infinite value, empty cells, no rows.
    """
    reader = CsvReader(
        path,
        columns,
        optional=optional,
        empty="error" if missing == "error" else "keep",
        chunk_rows=None,
        text=text,
    )
    return pd.concat([_frame(block, reader.names) for block in reader.blocks()])


def _frame(block: Block, names: Sequence[str]) -> pd.DataFrame:
    index = pd.RangeIndex(block.start, block.start + len(block.values))
    frame = pd.DataFrame(block.values, columns=list(names), index=index)
    for name, cells in block.text.items():
        frame[name] = pd.Series(cells, index=index, dtype=object)
    return frame


def read_column_chunks(
    path: str | Path,
    columns: Sequence[str],
    *,
    missing: str = "error",
    chunk_rows: int = CHUNK_ROWS,
    text: bool = True,
    text_columns: Sequence[str] = (),
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame | None]]:
    """``read_columns`` in chunks of rows, each also as the file's text, for files of any size.

    Yields:
        ``(numeric, text)`` per chunk: ``numeric`` as ``read_columns`` returns it (index: the
        row number in the file; ``text_columns`` as stripped strings), ``text`` every column of
        the same rows as the strings in the file, under the file's own header names (``None``
        when ``text`` is false). Errors name the file's line, as ``read_columns`` does.

    Raises:
        DataError: as ``read_columns``; a problem in a later chunk is raised when it is reached.
    """
    reader = CsvReader(
        path,
        columns,
        empty="error" if missing == "error" else "keep",
        chunk_rows=chunk_rows,
        text=text_columns,
    )
    blocks = reader.blocks()
    if not text:
        for block in blocks:
            yield _frame(block, reader.names), None
        return
    # A second reader in step keeps the text as it is (predict writes every input column back
    # unchanged). The numbers go first: once they stop (an empty cell), nothing more is yielded.
    texts = _read_csv(
        reader.path,
        {"encoding": "utf-8-sig", "dtype": str, "keep_default_na": False, "chunksize": chunk_rows},
    )
    with contextlib.closing(blocks), texts:
        for block, as_text in zip(blocks, _chunks(texts, reader.path), strict=True):
            yield _frame(block, reader.names), as_text


class EmptyCells:
    """``missing: error`` over blocks: the empty cells of each column, once one is found."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.counts: list[int] | None = None
        self.first: list[list[int]] = [[] for _ in self.names]  # the lines a message shows

    def add(self, holes: np.ndarray, start: int) -> bool:
        """Record a block's empty cells (``(n, k)`` booleans from data row ``start``).

        Returns:
            Whether any cell so far was empty.
        """
        if self.counts is None:
            if not holes.any():
                return False
            self.counts = [0] * len(self.names)
        for i, first in enumerate(self.first):
            rows = np.flatnonzero(holes[:, i])
            self.counts[i] += len(rows)
            first.extend(int(r) + start for r in rows[: SHOWN_LINES - len(first)])
        return True

    def __bool__(self) -> bool:
        return self.counts is not None

    def columns(self) -> list[int]:
        """The columns with empty cells, the one with the first empty line first."""
        assert self.counts is not None
        found = [i for i, count in enumerate(self.counts) if count]
        return sorted(found, key=lambda i: (self.first[i][0], i))

    def message(self, path: Path, column: int | None = None) -> str:
        """``empty_cells_message`` for ``column`` (default: the first empty line's)."""
        assert self.counts is not None
        i = self.columns()[0] if column is None else column
        return empty_cells_message(path, self.names[i], self.first[i], count=self.counts[i])


# What pandas raises for a file it cannot parse (bad UTF-8, ragged rows, ...).
_UNREADABLE = (UnicodeDecodeError, pd.errors.ParserError, ValueError)


def _unreadable(path: Path, err: Exception) -> DataError:
    if isinstance(err, UnicodeDecodeError):
        problem = _encoding_problem(path)
        if problem:
            return DataError(problem)
    return DataError(f"{path} could not be read as CSV: {str(err).splitlines()[0]}")


def _read_csv(path: Path, options: dict) -> Any:
    try:
        return pd.read_csv(path, **options)
    except _UNREADABLE as err:
        raise _unreadable(path, err) from None


def _chunks(reader: Any, path: Path) -> Iterator[pd.DataFrame]:
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except _UNREADABLE as err:
            raise _unreadable(path, err) from None


def column_values(
    frame: pd.DataFrame,
    names: Sequence[str],
    path: Path,
    start: int = 0,
    *,
    max_magnitude: float | None = None,
    text: Sequence[str] = (),
) -> np.ndarray:
    """The named columns of a frame ``read_frames`` yielded, as checked float64 ``(n, k)``.

    Columns in ``text`` are skipped (left 0.0): they hold categories, not numbers.

    Each column must be numeric, each value finite as the float32 it becomes (and at most
    ``max_magnitude`` in magnitude when given); empty cells are NaN.

    Raises:
        DataError: for the first offending line across the columns (ties: the first column in
            ``names``), naming the column, the rule, the value and the line.
    """
    values, found = column_problems(
        frame, names, path, start, max_magnitude=max_magnitude, text=text
    )
    if found:
        raise DataError(found[0][2])
    return values


def column_problems(
    frame: pd.DataFrame,
    names: Sequence[str],
    path: Path,
    start: int = 0,
    *,
    max_magnitude: float | None = None,
    text: Sequence[str] = (),
) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    """``column_values`` that goes on: the values and every column's first broken cell rule.

    Returns:
        ``(values, problems)``: ``problems`` holds ``(row, column, message)`` for each column
        with a broken rule, its first offending row, first in file order (ties: ``names``).
    """
    values = np.zeros((len(frame), len(names)))
    found = []
    for i, name in enumerate(names):
        if name in text:
            continue
        values[:, i], problem = _numeric(frame[name], name, path, start, max_magnitude)
        if problem is not None:
            found.append((problem[0], i, problem[1]))
    return values, sorted(found)


def beyond_float32(values: np.ndarray) -> np.ndarray:
    """Which of ``values`` (float64) are not finite as the float32 they become: infinities, and
    finite numbers that round to one. NaN (an empty cell) breaks no rule here."""
    with np.errstate(invalid="ignore"):
        return np.abs(values) >= _FLOAT32_OVERFLOW


def float32_rule(value: float) -> str:
    """The rule a value ``beyond_float32`` breaks and what was received, as a message's end:
    ``must be finite. Received: inf``."""
    rule = (
        "must be finite"
        if math.isinf(value)
        else f"must be finite as a 32-bit float (at most {FLOAT32_MAX:.7g} in magnitude)"
    )
    return f"{rule}. Received: {number_text(value)}"


def _numeric(
    column: pd.Series, name: str, path: Path, start: int, max_magnitude: float | None
) -> tuple[np.ndarray, tuple[int, str] | None]:
    # The column as float64 (NaN where a cell breaks the numeric rule) and its first problem.
    problems: list[tuple[int, str]] = []
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        numbers = pd.to_numeric(column.astype("string").str.strip(), errors="coerce")
        bad = numbers.isna() & column.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            cell = plain(column.iloc[row])
            # pandas reads a column of True/False as booleans: show the cell as the file has it.
            text = str(cell) if isinstance(cell, bool) else cell
            hint = (
                " (write true/false as 1/0)"
                if str(text).strip().lower() in ("true", "false")
                else ""
            )
            problems.append(
                (
                    row,
                    f"{path}: column '{name}' must be numeric{hint}. "
                    f"Received: {_short(text)} on line {start + row + 2}",
                )
            )
        column = numbers
    values = column.to_numpy(np.float64, na_value=np.nan)
    over = beyond_float32(values)
    if over.any():
        row = int(np.flatnonzero(over)[0])
        problems.append(
            (
                row,
                f"{path}: column '{name}' {float32_rule(float(values[row]))} "
                f"on line {start + row + 2}",
            )
        )
    if max_magnitude is not None:
        with np.errstate(invalid="ignore"):
            big = (np.abs(values) > max_magnitude) & ~over
        if big.any():
            row = int(np.flatnonzero(big)[0])
            problems.append(
                (
                    row,
                    f"{path}: column '{name}' must be at most {max_magnitude:g} in magnitude to "
                    f"train on: training runs in 32-bit floats, where sums of squares of larger "
                    f"values overflow (divide the column by a power of ten). "
                    f"Received: {number_text(values[row])} on line {start + row + 2}",
                )
            )
    return values, min(problems) if problems else None


def infer_text_columns(
    path: str | Path, columns: Sequence[str], *, chunk_rows: int | None = CHUNK_ROWS
) -> dict[str, tuple[int, str]]:
    """The columns among ``columns`` that hold a cell which is not a number (type inference).

    Reads the file once (in chunks); empty cells say nothing either way.

    Returns:
        ``{name: (row, value)}``: for each such column, its first such cell's data-row number
        and text, in ``columns`` order.

    Raises:
        DataError: the file or a column is missing, or the file cannot be read as CSV.
    """
    path = Path(path)
    header, _ = _wanted_columns(path, columns, ())
    found: dict[str, tuple[int, str]] = {}
    for start, frame in read_frames(path, header, chunk_rows=chunk_rows):
        for name in columns:
            if name in found:
                continue
            column = frame[name]
            if pd.api.types.is_bool_dtype(column):
                found[name] = (start, str(column.iloc[0]))
            elif not pd.api.types.is_numeric_dtype(column):
                text, row = infer_kind(column)
                if text:
                    found[name] = (start + row, str(column.iloc[row]).strip())
        if len(found) == len(columns):
            break
    return {name: found[name] for name in columns if name in found}


def check_target_spread(path: Path, target: str, std: float) -> None:
    """A regression target's rule: standard deviation (all rows) at most ``MAX_TARGET_STD``.

    Raises:
        DataError: naming the column, the bound and the standard deviation received.
    """
    if std > MAX_TARGET_STD:
        raise DataError(
            f"{path}: target column '{target}' must have a standard deviation of at most "
            f"{MAX_TARGET_STD:g} for regression: the loss is computed in 32-bit floats in the "
            f"target's units, and its gradients, squared by the optimizer, overflow beyond "
            f"that (divide the column by a power of ten, e.g. to millions). "
            f"Received: standard deviation {std:.3g}"
        )


def check_fill(present: np.ndarray, features: Sequence[str], path: Path) -> None:
    """``missing: mean``'s rule: each feature has a value in the training rows to fill with.

    Args:
        present: the count of non-empty training cells of each feature.
        features: the feature names.
        path: the file, for the message.

    Raises:
        DataError: naming the first feature with no value.
    """
    empty = np.flatnonzero(np.asarray(present) == 0)
    if len(empty):
        raise DataError(
            f"{path}: column '{features[int(empty[0])]}' must have a value in the training "
            f"rows to fill its empty cells with the mean (data.missing: mean). "
            f"Received: every training cell empty"
        )


SHOWN_LINES = 5  # lines a message lists (then "...")


def empty_cells_message(
    path: Path, name: str, rows: Sequence[int], *, count: int | None = None
) -> str:
    """The ``missing: error`` message for column ``name``, empty in data rows ``rows`` (0-based).

    ``count`` is the number of empty cells when ``rows`` holds only the first of them.
    """
    count = len(rows) if count is None else count
    lines = ", ".join(str(r + 2) for r in rows[:SHOWN_LINES])
    lines = ("lines " if count > 1 else "line ") + lines + (" ..." if count > SHOWN_LINES else "")
    return (
        f"{path}: column '{name}' must have no empty or NaN cells "
        f"(set data.missing to drop or mean to allow them). "
        f"Received: {count} empty on {lines}"
    )
