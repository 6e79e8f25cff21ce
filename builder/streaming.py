"""CSVs larger than memory: chunked reading, a hash split, one statistics pass, ``tf.data``.

Knows columns and rows, nothing about models (``builder.streaming_fit`` holds the model side).
The file is read with pandas in chunks of ``chunk_rows`` rows, never whole, and every chunk is
checked by ``builder.data``'s own functions, so every rule and message is the in-memory path's
(header, encoding, missing column, non-numeric value or one not finite as float32, magnitude,
empty cells, ragged rows, labels, the target's spread), naming the file, the column and the line.

The split is decided per row, without an index in memory: data row ``i`` (0 is the first row
after the header) goes to test when ``u(i) < test``, to validation when
``u(i) < test + validation``, else to train, where ``u(i)`` is a 64-bit mix (splitmix64) of ``i``
and the split seed, scaled to [0, 1). Parts therefore never overlap, cover every row, do not
depend on the chunk size, and hold the configured fractions up to binomial noise (the in-memory
path rounds exact counts instead, so the two paths pick different rows).

``CsvStream.scan`` is the one statistics pass over the file: row counts per part, the training
split's feature means and variances (the model's input normalization), target mean and standard
deviation (target scaling), the fill values for ``missing: mean``, and exact least squares from
``X^T X`` and ``X^T y`` accumulated in float64 over chunks (the baseline every run reports).
Training reads the file again each epoch through ``CsvStream.dataset``; ``CsvStream.evaluate``
scores the test split in one more pass.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from builder import data as data_mod
from builder.errors import DataError
from builder.metrics import roc_auc, solve_least_squares

AUTO_STREAMING_BYTES = 200 * 1024 * 1024
"""``data.streaming: auto`` streams files larger than this (200 MiB, about 10 million rows of the
salary CSV). The in-memory path holds about ten times the file's size (measured: +204 MB for the
20 MB, 1M-row file), so up to this size it costs at most ~2 GB, and it never re-reads the file
between epochs."""

CHUNK_ROWS = data_mod.CHUNK_ROWS
"""Rows parsed at a time (131,072; see ``builder.data.CHUNK_ROWS``)."""

SHUFFLE_ROWS = 1_048_576
"""Training rows shuffled together: a window of consecutive chunks (about 20 MB as float32 for
four features), reshuffled each epoch. Files up to this size are shuffled whole, as in memory."""

AUC_SAMPLE_ROWS = 1_000_000
"""Test rows kept for the classification AUC (exact below this; above it a uniform sample chosen
by a hash of the row number). Accuracy and MSE are accumulated exactly over every test row."""

PARTS = ("train", "validation", "test")
TRAIN, VALIDATION, TEST = 0, 1, 2
NA_VALUES = data_mod.NA_VALUES  # cells read as missing, as builder.data reads them

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def use_streaming(setting: bool | str, path: str | Path) -> bool:
    """Whether ``data.streaming`` (``True``, ``False`` or ``"auto"``) streams this file."""
    if setting == "auto":
        path = Path(path)
        return path.is_file() and path.stat().st_size > AUTO_STREAMING_BYTES
    return bool(setting)


# --------------------------------------------------------------------------------------------
# The split


def _mix64(z: np.ndarray) -> np.ndarray:
    # splitmix64's finalizer; uint64 array arithmetic wraps modulo 2**64, which is the point.
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _mix64_int(value: int) -> int:
    z = value & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def row_uniform(rows: np.ndarray, seed: int, salt: int = 0) -> np.ndarray:
    """A deterministic uniform number in [0, 1) for each row number, given a seed and a salt."""
    key = _mix64_int(_mix64_int(seed) ^ _mix64_int(salt + 1))
    z = np.asarray(rows).astype(np.uint64) * np.uint64(_GOLDEN) + np.uint64(key)
    return (_mix64(z) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def split_codes(rows: np.ndarray, validation: float, test: float, seed: int) -> np.ndarray:
    """The part of each data row: ``TRAIN`` (0), ``VALIDATION`` (1) or ``TEST`` (2)."""
    u = row_uniform(rows, seed)
    codes = np.full(len(u), TRAIN, dtype=np.int8)
    codes[u < test + validation] = VALIDATION
    codes[u < test] = TEST
    return codes


# --------------------------------------------------------------------------------------------
# Accumulators (float64, merged chunk by chunk with Chan et al.'s formulas)


class _Moments:
    """Per-column count, mean and sum of squared deviations; NaN cells are skipped."""

    def __init__(self, width: int) -> None:
        self.n = np.zeros(width)
        self.mean = np.zeros(width)
        self.m2 = np.zeros(width)

    def update(self, values: np.ndarray) -> None:
        values = values.reshape(len(values), -1)
        present = ~np.isnan(values)
        n_b = present.sum(axis=0).astype(np.float64)
        if not n_b.any():
            return
        filled = np.where(present, values, 0.0)
        mean_b = np.divide(filled.sum(axis=0), n_b, out=np.zeros_like(n_b), where=n_b > 0)
        m2_b = (np.where(present, values - mean_b, 0.0) ** 2).sum(axis=0)
        n = self.n + n_b
        delta = mean_b - self.mean
        share = np.divide(n_b, n, out=np.zeros_like(n), where=n > 0)
        self.mean = self.mean + delta * share
        self.m2 = self.m2 + m2_b + delta**2 * self.n * share
        self.n = n


class _LeastSquares:
    """``X^T X`` and ``X^T y`` of the training rows, in float64, shifted for conditioning.

    Features and target are shifted by the first chunk's means, so the sums stay far from the
    cancellation that raw squares of six-figure salaries would suffer. Under ``missing: mean``
    the filled values are not known until the pass ends, so the sums are kept with empty cells
    as 0 plus their indicator products, and the fill is applied when solving.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.shift: np.ndarray | None = None
        self.y_shift = 0.0
        k1 = width + 1
        self.ata = np.zeros((k1, k1))
        self.atn = np.zeros((k1, width))
        self.ntn = np.zeros((width, width))
        self.aty = np.zeros(k1)
        self.nty = np.zeros(width)

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        if len(y) == 0:
            return
        empty = np.isnan(x)
        if self.shift is None:
            self.shift = np.nan_to_num(np.nanmean(np.where(empty.all(axis=0), 0.0, x), axis=0))
            self.y_shift = float(np.mean(y))
        a = np.hstack([np.where(empty, 0.0, x - self.shift), np.ones((len(y), 1))])
        holes = empty.astype(np.float64)
        yc = y - self.y_shift
        self.ata += a.T @ a
        self.atn += a.T @ holes
        self.ntn += holes.T @ holes
        self.aty += a.T @ yc
        self.nty += holes.T @ yc

    def solve(self, fill: np.ndarray) -> tuple[np.ndarray, float]:
        """``(coefficients, intercept)`` of ``y = x @ coefficients + intercept``."""
        k = self.width
        shift = self.shift if self.shift is not None else np.zeros(k)
        d = np.zeros((k, k + 1))
        d[:, :k] = np.diag(np.nan_to_num(fill - shift))
        gram = self.ata + self.atn @ d + d.T @ self.atn.T + d.T @ self.ntn @ d
        rhs = self.aty + d.T @ self.nty
        # Column scaling: the normal equations square the design's condition number.
        scale = np.sqrt(np.diag(gram))
        scale[scale == 0] = 1.0
        solution = solve_least_squares(gram / np.outer(scale, scale), rhs / scale)
        solution = solution / scale
        coef = solution[:k]
        intercept = float(solution[k] + self.y_shift - shift @ coef)
        return coef, intercept


def scorer(task: str) -> _RegressionScore | _ClassificationScore:
    """Metrics of predictions accumulated chunk by chunk: ``update(y, pred, keys)``, ``result()``.

    ``keys`` (``row_uniform`` of the row numbers) pick the AUC sample of a classification.
    """
    return _ClassificationScore() if task == "classification" else _RegressionScore()


class _RegressionScore:
    """MSE, RMSE, MAE and R², accumulated exactly (as ``builder.metrics.regression_metrics``)."""

    def __init__(self) -> None:
        self.n = 0
        self.sse = 0.0
        self.sae = 0.0
        self.y = _Moments(1)

    def update(self, y: np.ndarray, pred: np.ndarray, keys: np.ndarray) -> None:
        err = np.asarray(pred, np.float64).ravel() - y
        self.n += len(y)
        self.sse += float(np.sum(err**2))
        self.sae += float(np.sum(np.abs(err)))
        self.y.update(y)

    def result(self) -> dict[str, float]:
        mse = self.sse / self.n
        total = float(self.y.m2[0])
        return {
            "mse": mse,
            "rmse": math.sqrt(mse),
            "mae": self.sae / self.n,
            "r2": 1.0 - self.sse / total if total > 0 else float("nan"),
        }


class _ClassificationScore:
    """Accuracy and MSE accumulated exactly; AUC from at most ``AUC_SAMPLE_ROWS`` test rows."""

    def __init__(self, sample_rows: int = AUC_SAMPLE_ROWS) -> None:
        self.n = 0
        self.correct = 0
        self.sse = 0.0
        self.sample_rows = sample_rows
        self.keys = np.zeros(0)
        self.labels = np.zeros(0)
        self.scores = np.zeros(0)

    def update(self, y: np.ndarray, score: np.ndarray, keys: np.ndarray) -> None:
        score = np.asarray(score, np.float64).ravel()
        self.n += len(y)
        self.correct += int(np.sum((score >= 0.5) == (y > 0.5)))
        self.sse += float(np.sum((score - y) ** 2))
        # The rows with the smallest hash keys are a uniform sample, the same on every run.
        self.keys = np.concatenate([self.keys, keys])
        self.labels = np.concatenate([self.labels, y])
        self.scores = np.concatenate([self.scores, score])
        if len(self.keys) > self.sample_rows:
            keep = np.argpartition(self.keys, self.sample_rows)[: self.sample_rows]
            self.keys, self.labels, self.scores = (
                self.keys[keep],
                self.labels[keep],
                self.scores[keep],
            )

    def result(self) -> dict[str, float]:
        return {
            "accuracy": self.correct / self.n,
            "auc": roc_auc(self.labels, self.scores),
            "mse": self.sse / self.n,
        }


# --------------------------------------------------------------------------------------------
# The stream


@dataclass(frozen=True)
class Chunk:
    """Checked rows of one chunk: data-row numbers, float64 features and target, split codes.

    ``x`` holds NaN only under ``missing: mean`` (filled from training means when batched);
    ``read`` counts the rows parsed, before the missing-value policy dropped any.
    """

    rows: np.ndarray
    x: np.ndarray
    y: np.ndarray
    part: np.ndarray
    read: int


@dataclass
class StreamStats:
    """What the statistics pass learned. Has ``Splits``' manifest fields (``counts``, ``sha256``
    ``dropped_rows``, ``filled_cells``, ``features``, ``target``)."""

    features: tuple[str, ...]
    target: str
    sha256: str
    rows: dict[str, int]
    dropped_rows: int
    filled_cells: int
    feature_mean: np.ndarray
    feature_variance: np.ndarray
    fill: np.ndarray
    target_mean: float
    target_std: float
    coefficients: np.ndarray
    intercept: float

    def counts(self) -> dict[str, int]:
        """Row counts of each split."""
        return dict(self.rows)


class CsvStream:
    """A CSV read in chunks: statistics pass, batched ``tf.data`` per split, test scoring.

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
        chunk_rows: rows parsed at a time.
        shuffle_rows: training rows shuffled together.
    """

    # `validation` and `test` name the split parts (as on ``builder.data.Splits``), so the
    # fractions are stored as `validation_fraction` and `test_fraction`.
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
        chunk_rows: int = CHUNK_ROWS,
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
        self.chunk_rows = chunk_rows
        self.shuffle_rows = max(shuffle_rows, chunk_rows)
        self._stats: StreamStats | None = None

    @property
    def stats(self) -> StreamStats:
        """The statistics pass's result (runs it on first use)."""
        if self._stats is None:
            self.scan()
        assert self._stats is not None
        return self._stats

    # What a run records about its data, under the same names as ``builder.data.Splits``.

    @property
    def train(self) -> StreamPart:
        """The training split (its ``len`` is its row count)."""
        return StreamPart(self, "train")

    @property
    def validation(self) -> StreamPart:
        """The validation split."""
        return StreamPart(self, "validation")

    @property
    def test(self) -> StreamPart:
        """The test split."""
        return StreamPart(self, "test")

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

    def _check_header(self) -> list[str]:
        header = data_mod.checked_header(self.path)
        present = data_mod.present_columns(header)
        for name in [*self.features, self.target]:
            if name not in present:
                raise DataError(data_mod.absent_message(self.path, name, header))
        return header

    def chunks(self) -> Iterator[Chunk]:
        """Checked chunks in file order; rows the missing-value policy drops are left out.

        Every rule of ``builder.data``'s reader holds, with its messages (the same functions).
        """
        names = [*self.features, self.target]
        k = len(self.features)
        header = self._check_header()
        empty_cells = data_mod.EmptyCells(names)  # missing: error's
        for start, frame in data_mod.read_frames(self.path, header, chunk_rows=self.chunk_rows):
            values = data_mod.column_values(frame, names, self.path, start)
            rows = np.arange(start, start + len(values), dtype=np.int64)
            empty = np.isnan(values)
            if self.missing == "error" and empty_cells.add(empty, start):
                continue
            data_mod.check_magnitude(values, names, self.path, rows)
            if empty.any():
                # "mean" fills features only: a row without a target has nothing to learn from.
                keep = ~empty.any(axis=1) if self.missing == "drop" else ~empty[:, k]
                values, rows = values[keep], rows[keep]
            yield Chunk(
                read=len(frame),
                rows=rows,
                x=values[:, :k],
                y=values[:, k],
                part=split_codes(rows, self.validation_fraction, self.test_fraction, self.seed),
            )
        if empty_cells:
            raise DataError(empty_cells.message(self.path))

    # ---- the statistics pass

    def scan(self) -> StreamStats:
        """One pass over the file: counts, normalization, target and least-squares statistics.

        The rules after reading are the in-memory path's, in its order and with its messages:
        enough rows for the splits, a value to fill each feature with (``missing: mean``), 0/1
        labels or a regression target's spread, a target that varies.

        Raises:
            DataError: the file breaks a rule, or has too few rows for the splits.
        """
        k = len(self.features)
        counts = np.zeros(3, dtype=np.int64)
        total = kept = filled = 0
        features = _Moments(k)
        target = _Moments(1)
        every_target = _Moments(1)  # all kept rows, as the in-memory spread rule reads them
        lsq = _LeastSquares(k)
        y_min, y_max = math.inf, -math.inf
        first_bad_label: tuple[np.ndarray, np.ndarray] | None = None
        for chunk in self.chunks():
            total += chunk.read
            kept += len(chunk.rows)
            filled += int(np.isnan(chunk.x).sum())
            counts += np.bincount(chunk.part, minlength=3)
            every_target.update(chunk.y)
            if self.classification and first_bad_label is None:
                bad = (chunk.y != 0.0) & (chunk.y != 1.0)
                if bad.any():
                    first_bad_label = (chunk.y[bad], chunk.rows[bad])
            train = chunk.part == TRAIN
            x, y = chunk.x[train], chunk.y[train]
            if len(y):
                features.update(x)
                target.update(y)
                lsq.update(x, y)
                y_min, y_max = min(y_min, float(y.min())), max(y_max, float(y.max()))
        rows = dict(zip(PARTS, (int(c) for c in counts), strict=True))
        self._check_counts(kept, total, rows)
        if self.missing == "mean":
            data_mod.check_fill(features.n, self.features, self.path)
        if first_bad_label is not None:
            data_mod.check_labels(self.path, self.target, *first_bad_label)
        if not self.classification:
            spread = math.sqrt(float(every_target.m2[0]) / max(float(every_target.n[0]), 1.0))
            data_mod.check_target_spread(self.path, self.target, spread)
        if y_min == y_max:
            raise DataError(
                f"{self.path}: target column '{self.target}' must vary in the training rows; "
                f"a constant target leaves nothing to learn. Received: every value {y_min:g}"
            )
        n_train = rows["train"]
        fill = features.mean.copy()
        coef, intercept = lsq.solve(fill)
        self._stats = StreamStats(
            features=self.features,
            target=self.target,
            sha256=data_mod.file_sha256(self.path),
            rows=rows,
            dropped_rows=total - kept,
            filled_cells=filled,
            feature_mean=features.mean,
            # Filled cells sit at the mean: they add rows but no squared deviation.
            feature_variance=features.m2 / n_train,
            fill=fill,
            target_mean=float(target.mean[0]),
            target_std=float(math.sqrt(target.m2[0] / n_train)),
            coefficients=coef,
            intercept=intercept,
        )
        return self._stats

    def _check_counts(self, kept: int, total: int, rows: dict[str, int]) -> None:
        if kept == 0:
            raise DataError(
                f"{self.path}: every row has an empty cell, so data.missing={self.missing} "
                f"leaves none."
            )
        short = (
            rows["train"] < 2
            or (self.test_fraction > 0 and rows["test"] == 0)
            or (self.validation_fraction > 0 and rows["validation"] == 0)
        )
        if short:
            raise DataError(
                data_mod.split_message(
                    self.path, kept, self.validation_fraction, self.test_fraction
                )
            )

    # ---- batches for training

    def _filled(self, x: np.ndarray) -> np.ndarray:
        if self.missing != "mean":
            return x
        empty = np.isnan(x)
        return np.where(empty, self.stats.fill, x) if empty.any() else x

    def windows(
        self, part: str, *, shuffle_seed: int | None = None, epoch: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(x, y)`` float32 blocks of one part in file order; ``y`` has shape ``(n, 1)``.

        With ``shuffle_seed``, each block is a window of at least ``shuffle_rows`` consecutive
        rows of the part (the last may be smaller), shuffled differently each ``epoch``; without
        it, each chunk's rows of the part as they are.
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

    def dataset(self, part: str, batch_size: int, *, shuffle_seed: int | None = None):
        """A batched, prefetched ``tf.data.Dataset`` of ``(x, y)`` that reads the file each epoch.

        Every batch is full except the last. Python hands over whole windows and ``rebatch``
        cuts them in C++: a Python generator per batch cost ~0.25 ms a step, 1.4x the epoch
        time on a 1M-row file (bench/README.md, scale). Its cardinality is asserted from the
        statistics pass, so Keras knows the steps per epoch and does not warn that the input ran
        out of data.
        """
        import tensorflow as tf

        n = self.stats.rows[part]
        epochs = itertools.count()

        def generate():
            return self.windows(part, shuffle_seed=shuffle_seed, epoch=next(epochs))

        spec = (
            tf.TensorSpec((None, len(self.features)), tf.float32),
            tf.TensorSpec((None, 1), tf.float32),
        )
        data = tf.data.Dataset.from_generator(generate, output_signature=spec)
        # The next window is parsed while this one trains (one more window in memory).
        data = data.prefetch(1).rebatch(batch_size)
        data = data.apply(tf.data.experimental.assert_cardinality(math.ceil(n / batch_size)))
        return data.prefetch(tf.data.AUTOTUNE)

    # ---- scoring

    def arrays(self, part: str) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(rows, x, y)`` float64 arrays of one part, a chunk at a time (empty cells filled)."""
        code = PARTS.index(part)
        for chunk in self.chunks():
            take = chunk.part == code
            if take.any():
                yield chunk.rows[take], self._filled(chunk.x[take]), chunk.y[take]

    def evaluate(
        self, predict: Callable[[np.ndarray], np.ndarray], task: str
    ) -> tuple[dict[str, float], dict[str, dict]]:
        """Score predictions and the two baselines on the test split in one pass.

        Args:
            predict: maps float32 features ``(n, k)`` to ``n`` predictions.
            task: ``regression`` or ``classification``.

        Returns:
            ``(test_metrics, baselines)``, shaped as ``builder.metrics.score`` and
            ``builder.metrics.baselines`` return them.
        """
        stats = self.stats
        model, mean, lsq = scorer(task), scorer(task), scorer(task)
        for rows, x, y in self.arrays("test"):
            keys = row_uniform(rows, self.seed, salt=1)
            model.update(y, predict(x.astype(np.float32)), keys)
            mean.update(y, np.full(len(y), stats.target_mean), keys)
            line = x @ stats.coefficients + stats.intercept
            if task == "classification":
                line = np.clip(line, 0.0, 1.0)
            lsq.update(y, line, keys)
        baselines = {
            "mean_predictor": {**mean.result(), "value": stats.target_mean},
            "least_squares": {
                **lsq.result(),
                "coefficients": dict(zip(self.features, stats.coefficients.tolist(), strict=True)),
                "intercept": stats.intercept,
            },
        }
        return model.result(), baselines


@dataclass(frozen=True)
class StreamPart:
    """One split of a ``CsvStream``: its row count, and its batches as ``tf.data``."""

    stream: CsvStream
    name: str

    def __len__(self) -> int:
        return self.stream.stats.rows[self.name]


def dataset(part: StreamPart, batch_size: int, *, shuffle_seed: int | None = None):
    """``builder.data.dataset`` for a streamed split: batched, prefetched, read in chunks."""
    return part.stream.dataset(part.name, batch_size, shuffle_seed=shuffle_seed)
