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
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from builder.data import csv
from builder.data.columns import (
    CATEGORICAL,
    NUMERIC,
    Column,
    Design,
    Labels,
    Vocabulary,
    check_seen,
)
from builder.data.scoring import LinearFit, baseline_scores, class_baseline_scores
from builder.data.split import PARTS, TRAIN, permutation_codes, row_uniform, split_codes
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

LOGISTIC_ROWS = 1_000_000
"""Training rows the logistic baseline is fitted on (Newton steps hold them in memory)."""

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
        features: feature columns: names, or ``builder.data.columns.Column`` (or a config's
            feature entries) with a type and a categorical column's vocabulary options.
        target: target column name.
        validation: fraction of rows for validation.
        test: fraction of rows for test.
        seed: split seed.
        missing: ``error``, ``drop`` or ``mean``, as ``data.missing``.
        classification: the target holds class labels (text or numbers).
        unknown: ``average`` or ``error``, as ``data.unknown``: what a categorical value that
            the training split does not hold becomes in the validation and test rows.
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
        features: Sequence[Any],
        target: str,
        *,
        validation: float,
        test: float,
        seed: int,
        missing: str = "error",
        classification: bool = False,
        unknown: str = "average",
        streamed: bool = False,
        chunk_rows: int | None = None,
        shuffle_rows: int = SHUFFLE_ROWS,
    ) -> None:
        self.path = Path(path)
        self.columns = tuple(Column.of(spec) for spec in features)
        self.features = tuple(column.name for column in self.columns)
        self.target = target
        self.validation_fraction = validation
        self.test_fraction = test
        self.seed = seed
        self.missing = missing
        self.classification = classification
        self.unknown = unknown
        self.streamed = streamed
        self.chunk_rows = chunk_rows if chunk_rows or not streamed else csv.CHUNK_ROWS
        self.shuffle_rows = max(shuffle_rows, self.chunk_rows or 0)
        self._kinds: dict[str, str] | None = None
        self.inferred: dict[str, tuple[int, str]] = {}
        self._vocabularies: dict[str, Vocabulary] | None = None
        self._labels: Labels | None = None
        self._raw: tuple | None = None
        self._read = 0
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

    # ---- column types, vocabularies and labels

    @property
    def kinds(self) -> dict[str, str]:
        """Every feature's type: as declared, else ``categorical`` when a cell of the file is
        not a number (``inferred`` holds that cell's row and text), else ``numeric``."""
        if self._kinds is None:
            open_columns = [c.name for c in self.columns if c.kind is None]
            self.inferred = (
                csv.infer_text_columns(self.path, open_columns, chunk_rows=csv.CHUNK_ROWS)
                if open_columns
                else {}
            )
            self._kinds = {
                c.name: c.kind or (CATEGORICAL if c.name in self.inferred else NUMERIC)
                for c in self.columns
            }
        return self._kinds

    @property
    def categorical(self) -> list[str]:
        """The categorical features, in input order."""
        return [name for name in self.features if self.kinds[name] == CATEGORICAL]

    def text_columns(self) -> list[str]:
        """The columns read as text: categorical features, a classification's target."""
        return [*self.categorical, *([self.target] if self.classification else [])]

    @property
    def vocabularies(self) -> dict[str, Vocabulary]:
        """Each categorical feature's vocabulary, counted on the training split."""
        if self._vocabularies is None:
            self._count()
        assert self._vocabularies is not None
        return self._vocabularies

    @property
    def labels(self) -> Labels | None:
        """A classification's class labels (of every kept row), else ``None``."""
        if self.classification and self._labels is None:
            self._count()
        return self._labels

    @property
    def design(self) -> Design:
        """The dummy coding of the features (least squares, the logistic baseline)."""
        return Design(self.features, self.vocabularies)

    def _count(self) -> None:
        # The vocabulary pass: training counts of each categorical value, every label.
        names = self.categorical
        counts = {name: Counter() for name in names}
        label_texts: list[np.ndarray] = []
        for _, _, texts, part in self._raw_blocks():
            train = part == TRAIN
            for name in names:
                cells = texts[name][train]
                counts[name].update(pd.Series(cells[~pd.isna(cells)]).value_counts().to_dict())
            if self.classification:
                label_texts.append(texts[self.target])
        by_name = {column.name: column for column in self.columns}
        self._vocabularies = {
            name: Vocabulary.from_counts(
                counts[name], by_name[name].max_categories, by_name[name].min_count
            )
            for name in names
        }
        for name, vocabulary in self._vocabularies.items():
            if not len(vocabulary):
                raise DataError(
                    f"{self.path}: column '{name}' must have a value in the training rows "
                    f"that is seen at least min_count={by_name[name].min_count} times. "
                    f"Received: {vocabulary.seen} distinct values"
                )
        if self.classification:
            self._labels = Labels.found(label_texts)
            self._labels.check(self.path, self.target)

    # ---- reading

    def _kept(self) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], int]]:
        # (rows, values, texts, rows read) per block, without the rows the missing-value policy
        # drops.
        k = len(self.features)
        reader = csv.CsvReader(
            self.path,
            [*self.features, self.target],
            empty="error" if self.missing == "error" else "keep",
            max_magnitude=csv.MAX_MAGNITUDE,
            chunk_rows=self.chunk_rows,
            text=self.text_columns(),
        )
        for block in reader.blocks():
            values, rows, texts = block.values, block.rows, block.text
            empty = np.isnan(values)
            if empty.any():
                # "mean" fills features only: a row without a target has nothing to learn from.
                keep = ~empty.any(axis=1) if self.missing == "drop" else ~empty[:, k]
                values, rows = values[keep], rows[keep]
                texts = {name: cells[keep] for name, cells in texts.items()}
            yield rows, values, texts, len(block.values)

    def _raw_blocks(
        self,
    ) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]]:
        # (rows, values, texts, part codes): the one window in memory, else each chunk.
        if not self.streamed:
            yield self._resident_raw()
            return
        for rows, values, texts, _ in self._kept():
            part = split_codes(rows, self.validation_fraction, self.test_fraction, self.seed)
            yield rows, values, texts, part

    def _resident_raw(self):
        if self._raw is None:
            blocks = list(self._kept())
            rows = np.concatenate([b[0] for b in blocks])
            values = np.concatenate([b[1] for b in blocks])
            texts = {
                name: np.concatenate([b[2][name] for b in blocks]) for name in self.text_columns()
            }
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
            self._raw = (rows, values, texts, part)
            self._read = sum(b[3] for b in blocks)
        return self._raw

    def _encoded(self, rows, values, texts, part, read) -> Chunk:
        # Text to codes: categorical features by their vocabularies, labels to class codes.
        k = len(self.features)
        if texts:
            values = values.copy()
        for name, vocabulary in self.vocabularies.items():
            i = self.features.index(name)
            codes = vocabulary.codes(texts[name])
            empty = np.isnan(codes)
            if self.missing == "mean" and empty.any():
                codes[empty] = 1.0  # the most frequent training value
            if self.unknown == "error":
                held_out = part != TRAIN  # training's own rare values are cut, not unseen
                check_seen(
                    self.path,
                    name,
                    vocabulary,
                    texts[name][held_out],
                    codes[held_out],
                    rows[held_out],
                )
            values[:, i] = codes
        y = values[:, k]
        if self.classification:
            assert self.labels is not None
            y = self.labels.codes(texts[self.target])
        return Chunk(rows=rows, x=values[:, :k], y=y, part=part, read=read)

    def chunks(self) -> Iterator[Chunk]:
        """Checked chunks in file order, with their part codes; in memory, the one window.

        Rows the missing-value policy drops are left out; every rule of ``builder.data.csv``
        holds, with its messages. Categorical features hold their codes, a classification's
        target its class codes.
        """
        if not self.streamed:
            if self._window is None:
                raw = self._resident_raw()
                self._window = self._encoded(*raw, self._read)
                self._raw = None  # the text cells are coded now; the window holds what is left
            yield self._window
            return
        if self._vocabularies is None:
            self._count()  # the vocabulary pass, before the chunks are coded with them
        for rows, values, texts, read in self._kept():
            part = split_codes(rows, self.validation_fraction, self.test_fraction, self.seed)
            yield self._encoded(rows, values, texts, part, read)

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
            design=self.design,
            classes=self.labels.classes if self.labels is not None else (),
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
    ) -> tuple[dict[str, float], dict[str, Any], dict[str, Any] | None]:
        """Score predictions and the two baselines on the test split in one pass.

        Args:
            predict: maps float32 features ``(n, k)`` to ``n`` predictions (regression) or to
                class probabilities ``(n, classes)`` (classification).
            task: ``regression`` or ``classification``.

        Returns:
            ``(test_metrics, baselines, details)``: the metrics of ``builder.data.scoring``,
            the baselines scored likewise (regression: the mean predictor and least squares
            from the statistics pass; classification: the majority class and logistic
            regression on the training split's dummy-coded features), and a classification's
            confusion matrix and per-class scores (``None`` for regression).
        """
        stats = self.stats
        blocks = (
            (x, y, row_uniform(rows, self.seed, salt=1)) for rows, x, y in self.arrays("test")
        )
        if task == "classification":
            found = class_baseline_scores(
                blocks,
                stats.classes,
                stats.class_counts,
                self.logistic_fit(),
                stats.design,
                predict,
            )
            return found.pop("model"), found, found.pop("details")
        design = stats.design if stats.design is not None and stats.design.vocabularies else None
        fit = LinearFit(stats.coefficients, stats.intercept, design)
        found = baseline_scores(task, blocks, stats.target_mean, fit, self.features, predict)
        return found.pop("model"), found, None

    def logistic_fit(self) -> Any:
        """Multinomial logistic regression on the training split's dummy-coded features (at most
        ``LOGISTIC_ROWS`` of them, the first in the file), fitted in numpy.

        Returns:
            A ``builder.data.classes.LogisticFit``.
        """
        from builder.data.classes import logistic_regression

        xs, ys, held = [], [], 0
        for _, x, y in self.arrays("train"):
            xs.append(x[: LOGISTIC_ROWS - held])
            ys.append(y[: LOGISTIC_ROWS - held])
            held += len(ys[-1])
            if held >= LOGISTIC_ROWS:
                break
        x, y = np.concatenate(xs), np.concatenate(ys)
        return logistic_regression(
            self.design.expand(x), y.astype(np.int64), len(self.stats.classes)
        )


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


def load_splits(path: str | Path, features: Sequence[Any], target: str, **options: Any) -> Table:
    """Read a CSV into memory, split it and run the statistics pass.

    Args:
        path, features, target: as for ``Table``.
        **options: ``Table``'s keyword arguments (``validation``, ``test`` and ``seed`` are
            required; ``missing``, ``classification``, ``unknown``).

    With ``missing="mean"`` empty feature cells are filled with the training split's means (the
    target is never filled: those rows are dropped).

    Raises:
        DataError: the file breaks a rule.
    """
    table = Table(path, features, target, **options)
    table.scan()
    return table


def problems(*args: Any, **kwargs: Any) -> list[str]:
    """Every problem training would find in a CSV, one message each (``examine``'s list)."""
    return examine(*args, **kwargs)[0]


def examine(
    path: str | Path,
    features: Sequence[Any],
    target: str,
    *,
    values: bool = True,
    validation: float = 0.15,
    test: float = 0.15,
    seed: int = 42,
    missing: str = "error",
    classification: bool = False,
    unknown: str = "average",
) -> tuple[list[str], Table]:
    """Every problem training would find in a CSV, one message each, without training.

    The rules and messages are ``load_splits``'s, and its message comes first; but where
    ``load_splits`` stops at the first problem, this goes on: every absent column, every column
    that breaks a cell rule (in the order of their first offending lines), every column with
    empty cells, then the rules on the whole file.

    Args:
        path: the CSV file.
        features: the feature columns (names or ``Column``, as for ``Table``).
        target: the target column.
        values: read the values too; otherwise check the file and its header only (fast on a
            file of any size: it reads one line).
        validation, test, seed, missing, classification, unknown: as for ``Table``.

    Returns:
        ``(messages, table)``: the messages, empty when the file would train; and the table,
        whose ``kinds``, ``vocabularies`` and ``labels`` say what training would infer (read
        them only when there are no messages).
    """
    path = Path(path)
    table = Table(
        path,
        features,
        target,
        validation=validation,
        test=test,
        seed=seed,
        missing=missing,
        classification=classification,
        unknown=unknown,
    )
    columns = [*table.features, target]
    try:
        header = csv.checked_header(path)
    except DataError as err:
        return [str(err)], table
    present = csv.present_columns(header)
    found = [csv.absent_message(path, name, header) for name in columns if name not in present]
    if found or not values:
        return found, table
    try:
        text = table.text_columns()
        _, frame = next(csv.read_frames(path, header, text=text))
    except DataError as err:
        return [str(err)], table
    numbers, broken = csv.column_problems(
        frame, columns, path, max_magnitude=csv.MAX_MAGNITUDE, text=text
    )
    if broken:
        return [message for _, _, message in broken], table
    empty = csv.EmptyCells(columns)
    for name in text:
        numbers[:, columns.index(name)] = np.where(frame[name].isna(), np.nan, 0.0)
    if missing == "error" and empty.add(np.isnan(numbers), 0):
        return [empty.message(path, column) for column in empty.columns()], table
    try:
        table.scan()
    except DataError as err:
        found.append(str(err))
    return found, table
