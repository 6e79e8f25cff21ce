"""The object training gets: one CSV, split, with its statistics, batches and test scoring.

In memory and streamed are the same class. In memory, the file is read once into one window
(all its checked rows) and split by the exact seeded permutation; streamed, it is read again in
chunks of ``chunk_rows`` rows on every pass and split by a hash of the row number
(``builder.data.split``). Either way the statistics come from one pass (``builder.data.stats``)
and the test scores from the same scorers (``builder.data.scoring``); only ``tf.data`` differs,
at the edge (``builder.data.tfdata``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from builder.data import csv
from builder.data.scoring import LinearFit, baseline_scores
from builder.data.split import PARTS, permutation_codes, row_uniform, split_codes
from builder.data.stats import Chunk, Stats, statistics
from builder.errors import DataError

AUTO_STREAMING_BYTES = 200 * 1024 * 1024
"""``data.streaming: auto`` streams files larger than this (200 MiB, about 10 million rows of the
salary CSV). The in-memory path holds about ten times the file's size (measured: +204 MB for the
20 MB, 1M-row file), so up to this size it costs at most ~2 GB, and it never re-reads the file
between epochs."""

SHUFFLE_ROWS = 1_048_576
"""Training rows a streamed table shuffles together: a window of consecutive chunks (about 20 MB
as float32 for four features), reshuffled each epoch. Files up to this size are shuffled whole,
as in memory."""

_MASK64 = (1 << 64) - 1


def use_streaming(setting: bool | str, path: str | Path) -> bool:
    """Whether ``data.streaming`` (``True``, ``False`` or ``"auto"``) streams this file."""
    if setting == "auto":
        path = Path(path)
        return path.is_file() and path.stat().st_size > AUTO_STREAMING_BYTES
    return bool(setting)


class Table:
    """A CSV's features and target, split into train, validation and test.

    Args:
        path: the CSV file (UTF-8, comma-separated, header row; any column order, extra columns
            ignored).
        features: feature column names.
        target: target column name.
        validation: fraction of rows for validation.
        test: fraction of rows for test.
        seed: split seed.
        missing: ``error``, ``drop`` or ``mean``, as ``data.missing``.
        classification: the target must hold 0 and 1.
        streamed: read in chunks on every pass (hash split) instead of once into memory.
        chunk_rows: rows parsed at a time (default: ``csv.CHUNK_ROWS`` streamed, the whole file
            in memory).
        shuffle_rows: training rows a streamed table shuffles together.
    """

    # `validation` and `test` name the parts (``Part``), so the fractions are stored as
    # `validation_fraction` and `test_fraction`.
    def __init__(
        self,
        path: str | Path,
        features: Sequence[str],
        target: str,
        *,
        validation: float,
        test: float,
        seed: int,
        missing: str = "error",
        classification: bool = False,
        streamed: bool = False,
        chunk_rows: int | None = None,
        shuffle_rows: int = SHUFFLE_ROWS,
    ) -> None:
        self.path = Path(path)
        self.features = tuple(features)
        self.target = target
        self.validation_fraction = validation
        self.test_fraction = test
        self.seed = seed
        self.missing = missing
        self.classification = classification
        self.streamed = streamed
        self.chunk_rows = chunk_rows if chunk_rows or not streamed else csv.CHUNK_ROWS
        self.shuffle_rows = max(shuffle_rows, self.chunk_rows or 0)
        self._window: Chunk | None = None
        self._stats: Stats | None = None
        self._float32: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # ---- what a run records

    @property
    def stats(self) -> Stats:
        """The statistics pass's result (runs it on first use)."""
        return self._stats if self._stats is not None else self.scan()

    @property
    def train(self) -> Part:
        """The training split (its ``len`` is its row count)."""
        return Part(self, "train")

    @property
    def validation(self) -> Part:
        """The validation split."""
        return Part(self, "validation")

    @property
    def test(self) -> Part:
        """The test split."""
        return Part(self, "test")

    @property
    def sha256(self) -> str:
        """SHA-256 of the file."""
        return self.stats.sha256

    @property
    def dropped_rows(self) -> int:
        """Rows dropped by the missing-value policy."""
        return self.stats.dropped_rows

    @property
    def filled_cells(self) -> int:
        """Cells filled with training means (``missing: mean``)."""
        return self.stats.filled_cells

    def counts(self) -> dict[str, int]:
        """Row counts of each split."""
        return self.stats.counts()

    # ---- reading

    def _kept(self) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        # (rows, values, rows read) per block, without the rows the missing-value policy drops.
        k = len(self.features)
        reader = csv.CsvReader(
            self.path,
            [*self.features, self.target],
            empty="error" if self.missing == "error" else "keep",
            max_magnitude=csv.MAX_MAGNITUDE,
            chunk_rows=self.chunk_rows,
        )
        for block in reader.blocks():
            values, rows = block.values, block.rows
            empty = np.isnan(values)
            if empty.any():
                # "mean" fills features only: a row without a target has nothing to learn from.
                keep = ~empty.any(axis=1) if self.missing == "drop" else ~empty[:, k]
                values, rows = values[keep], rows[keep]
            yield rows, values, len(block.values)

    def chunks(self) -> Iterator[Chunk]:
        """Checked chunks in file order, with their part codes; in memory, the one window.

        Rows the missing-value policy drops are left out; every rule of ``builder.data.csv``
        holds, with its messages.
        """
        if not self.streamed:
            yield self._resident()
            return
        k = len(self.features)
        for rows, values, read in self._kept():
            part = split_codes(rows, self.validation_fraction, self.test_fraction, self.seed)
            yield Chunk(rows=rows, x=values[:, :k], y=values[:, k], part=part, read=read)

    def _resident(self) -> Chunk:
        if self._window is None:
            k = len(self.features)
            blocks = list(self._kept())
            rows = np.concatenate([b[0] for b in blocks])
            values = np.concatenate([b[1] for b in blocks])
            part = (
                permutation_codes(
                    len(rows),
                    self.validation_fraction,
                    self.test_fraction,
                    self.seed,
                    where=str(self.path),
                )
                if len(rows)
                else np.zeros(0, np.int8)  # the statistics pass says why
            )
            read = sum(b[2] for b in blocks)
            self._window = Chunk(rows=rows, x=values[:, :k], y=values[:, k], part=part, read=read)
        return self._window

    # ---- the statistics pass

    def scan(self) -> Stats:
        """One pass over the file: counts, normalization, target and least-squares statistics.

        Raises:
            DataError: the file breaks a rule, or has too few rows for the splits.
        """
        stats = statistics(
            self.chunks(),
            self.path,
            self.features,
            self.target,
            validation=self.validation_fraction,
            test=self.test_fraction,
            missing=self.missing,
            classification=self.classification,
        )
        self._stats = dataclasses.replace(stats, sha256=csv.file_sha256(self.path))
        return self._stats

    # ---- batches

    def _filled(self, x: np.ndarray) -> np.ndarray:
        if self.missing != "mean":
            return x
        empty = np.isnan(x)
        return np.where(empty, self.stats.fill, x) if empty.any() else x

    def windows(
        self, part: str, *, shuffle_seed: int | None = None, epoch: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(x, y)`` float32 numpy blocks of one part in file order; ``y`` has shape ``(n, 1)``.

        With ``shuffle_seed``, each block is a window of at least ``shuffle_rows`` consecutive
        rows of the part (the last may be smaller; in memory, the whole part), shuffled
        differently each ``epoch``; without it, each chunk's rows of the part as they are.
        """
        code = PARTS.index(part)
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        held = 0
        window = 0
        for chunk in self.chunks():
            take = chunk.part == code
            if not take.any():
                continue
            xs.append(self._filled(chunk.x[take]).astype(np.float32))
            ys.append(chunk.y[take].astype(np.float32))
            held += len(ys[-1])
            if shuffle_seed is None or held >= self.shuffle_rows:
                yield self._mixed(xs, ys, shuffle_seed, epoch, window)
                xs, ys, held, window = [], [], 0, window + 1
        if held:
            yield self._mixed(xs, ys, shuffle_seed, epoch, window)

    def _mixed(self, xs, ys, shuffle_seed, epoch, window):
        x = np.concatenate(xs) if len(xs) > 1 else xs[0]
        y = np.concatenate(ys) if len(ys) > 1 else ys[0]
        if shuffle_seed is not None:
            rng = np.random.default_rng([shuffle_seed & _MASK64, epoch, window])
            order = rng.permutation(len(y))
            x, y = x[order], y[order]
        return x, y[:, None]

    def arrays(self, part: str) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(rows, x, y)`` float64 arrays of one part, a chunk at a time (empty cells filled)."""
        code = PARTS.index(part)
        for chunk in self.chunks():
            take = chunk.part == code
            if take.any():
                yield chunk.rows[take], self._filled(chunk.x[take]), chunk.y[take]

    def part_arrays(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` float64 of one whole part (a streamed table reads the file for it)."""
        k = len(self.features)
        blocks = list(self.arrays(part))
        if not blocks:
            return np.zeros((0, k)), np.zeros(0)
        return np.concatenate([b[1] for b in blocks]), np.concatenate([b[2] for b in blocks])

    def float32(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of one part as the float32 the model trains on (kept once made)."""
        if part not in self._float32:
            x, y = self.part_arrays(part)
            self._float32[part] = (x.astype(np.float32), y.astype(np.float32))
        return self._float32[part]

    # ---- scoring

    def evaluate(
        self, predict: Callable[[np.ndarray], np.ndarray], task: str
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Score predictions and the two baselines on the test split in one pass.

        Args:
            predict: maps float32 features ``(n, k)`` to ``n`` predictions.
            task: ``regression`` or ``classification``.

        Returns:
            ``(test_metrics, baselines)``: the metrics of ``builder.data.scoring.score``, and the
            mean predictor and least squares (from the statistics pass) scored likewise.
        """
        stats = self.stats
        blocks = (
            (x, y, row_uniform(rows, self.seed, salt=1)) for rows, x, y in self.arrays("test")
        )
        fit = LinearFit(stats.coefficients, stats.intercept)
        found = baseline_scores(task, blocks, stats.target_mean, fit, self.features, predict)
        return found.pop("model"), found


@dataclasses.dataclass(frozen=True)
class Part:
    """One split of a ``Table``: its row count, and its rows as float32 ``x`` and ``y``."""

    table: Table
    name: str

    def __len__(self) -> int:
        return self.table.stats.rows[self.name]

    @property
    def x(self) -> np.ndarray:
        """Features, float32 ``(n, k)``."""
        return self.table.float32(self.name)[0]

    @property
    def y(self) -> np.ndarray:
        """Target, float32 ``(n,)``."""
        return self.table.float32(self.name)[1]


def load_splits(
    path: str | Path,
    features: Sequence[str],
    target: str,
    *,
    validation: float,
    test: float,
    seed: int,
    missing: str = "error",
    classification: bool = False,
) -> Table:
    """Read a CSV into memory, split it and run the statistics pass.

    With ``missing="mean"`` empty feature cells are filled with the training split's means (the
    target is never filled: those rows are dropped).

    Raises:
        DataError: the file breaks a rule.
    """
    table = Table(
        path,
        features,
        target,
        validation=validation,
        test=test,
        seed=seed,
        missing=missing,
        classification=classification,
    )
    table.scan()
    return table


def problems(
    path: str | Path,
    features: Sequence[str],
    target: str,
    *,
    values: bool = True,
    validation: float = 0.15,
    test: float = 0.15,
    seed: int = 42,
    missing: str = "error",
    classification: bool = False,
) -> list[str]:
    """Every problem training would find in a CSV, one message each, without training.

    The rules and messages are ``load_splits``'s, and its message comes first; but where
    ``load_splits`` stops at the first problem, this goes on: every absent column, every column
    that breaks a cell rule (in the order of their first offending lines), every column with
    empty cells, then the rules on the whole file.

    Args:
        path: the CSV file.
        features: the feature columns.
        target: the target column.
        values: read the values too; otherwise check the file and its header only (fast on a
            file of any size: it reads one line).
        validation, test, seed, missing, classification: as for ``load_splits``.

    Returns:
        The messages; empty when the file would train.
    """
    path = Path(path)
    columns = [*features, target]
    try:
        header = csv.checked_header(path)
    except DataError as err:
        return [str(err)]
    present = csv.present_columns(header)
    found = [csv.absent_message(path, name, header) for name in columns if name not in present]
    if found or not values:
        return found
    try:
        _, frame = next(csv.read_frames(path, header))
    except DataError as err:
        return [str(err)]
    numbers, broken = csv.column_problems(frame, columns, path, max_magnitude=csv.MAX_MAGNITUDE)
    if broken:
        return [message for _, _, message in broken]
    empty = csv.EmptyCells(columns)
    if missing == "error" and empty.add(np.isnan(numbers), 0):
        return [empty.message(path, column) for column in empty.columns()]
    try:
        load_splits(
            path,
            features,
            target,
            validation=validation,
            test=test,
            seed=seed,
            missing=missing,
            classification=classification,
        )
    except DataError as err:
        found.append(str(err))
    return found
