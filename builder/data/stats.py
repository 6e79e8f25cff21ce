"""The one statistics pass: float64 accumulators merged block by block, and what they give.

``statistics`` reads checked blocks of rows with their part codes once and returns ``Stats``: row
counts per part, the training split's feature means and variances (the model's input
normalization), target mean and standard deviation (target scaling), the fill values for
``missing: mean``, and exact least squares from ``X^T X`` and ``X^T y`` (the baseline every run
reports). A table in memory runs it over its one window, a streamed one over its chunks, so both
get their numbers, and their messages for the rules that need the whole file, from this code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from builder.data import csv
from builder.data.columns import Design, collinear_columns
from builder.data.split import PARTS, TRAIN, split_message
from builder.errors import DataError


def require_finite(a: np.ndarray, b: np.ndarray) -> None:
    """Least squares' rule on its input: every value finite.

    Raises:
        DataError: counting the values that are not.
    """
    bad = int((~np.isfinite(a)).sum() + (~np.isfinite(b)).sum())
    if bad:
        raise DataError(
            f"least squares needs finite values. Received: {bad} infinite or NaN values "
            f"among the {np.size(a) + np.size(b)} of its input"
        )


def solve_least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``numpy.linalg.lstsq(a, b)``'s solution, refusing what LAPACK cannot take.

    LAPACK's SVD never returns on an infinite or NaN input (the data readers' rules keep those
    out), so such input is refused before it is called; a finite one returns at once.

    Raises:
        DataError: ``a`` or ``b`` holds a value that is not finite, or the SVD fails.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    require_finite(a, b)
    try:
        solution, *_ = np.linalg.lstsq(a, b, rcond=None)
    except np.linalg.LinAlgError as err:
        raise DataError(f"least squares could not be solved: {err}") from None
    return solution


class Moments:
    """Per-column count, mean and sum of squared deviations (Chan et al.'s merge); NaN skipped."""

    def __init__(self, width: int) -> None:
        self.n = np.zeros(width)
        self.mean = np.zeros(width)
        self.m2 = np.zeros(width)

    def update(self, values: np.ndarray) -> None:
        """Add a block of rows (``(n, width)``, or ``n`` values for width 1)."""
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


class LeastSquares:
    """``X^T X`` and ``X^T y`` of the training rows, in float64, shifted for conditioning.

    Features and target are shifted by the first block's means, so the sums stay far from the
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
        """Add a block of training rows (``x`` may hold NaN for cells to fill)."""
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

    def centred_gram(self) -> np.ndarray:
        """``X^T X`` of the training design about its mean (filled cells aside)."""
        k = self.width
        n = self.ata[k, k]
        if n == 0:
            return np.zeros((k, k))
        sums = self.ata[:k, k]
        return self.ata[:k, :k] - np.outer(sums, sums) / n

    def solve(self, fill: np.ndarray) -> tuple[np.ndarray, float]:
        """``(coefficients, intercept)`` of ``y = x @ coefficients + intercept``.

        Raises:
            DataError: as ``solve_least_squares``.
        """
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


@dataclass(frozen=True)
class Chunk:
    """Checked rows: data-row numbers, float64 features and target, part codes.

    ``x`` holds NaN only under ``missing: mean`` (filled from training means when batched);
    ``read`` counts the rows parsed, before the missing-value policy dropped any.
    """

    rows: np.ndarray
    x: np.ndarray
    y: np.ndarray
    part: np.ndarray
    read: int


@dataclass
class Stats:
    """What the statistics pass learned; ``rows`` counts each part."""

    features: tuple[str, ...]
    target: str
    rows: dict[str, int]
    dropped_rows: int
    filled_cells: int
    feature_mean: np.ndarray
    feature_variance: np.ndarray
    fill: np.ndarray
    target_mean: float
    target_std: float
    coefficients: np.ndarray  # least squares on ``design`` (dummy-coded columns)
    intercept: float
    design: Design | None = None
    classes: tuple[str, ...] = ()  # a classification's labels; ``y`` holds their codes
    class_counts: tuple[int, ...] = ()  # training rows of each class
    collinear: tuple[str, ...] = ()  # design columns that are linear combinations of others
    sha256: str = ""  # the file's, filled in by the table that read it

    def counts(self) -> dict[str, int]:
        """Row counts of each split."""
        return dict(self.rows)


def statistics(
    chunks: Iterable[Chunk],
    path: Path,
    features: Sequence[str],
    target: str,
    *,
    validation: float,
    test: float,
    missing: str,
    classification: bool,
    design: Design | None = None,
    classes: Sequence[str] = (),
) -> Stats:
    """One pass over checked chunks: counts, normalization, target and least-squares statistics.

    Then the rules that need every row, in this order: some row kept, enough rows for the
    splits, a value to fill each feature with (``missing: mean``), a regression target's spread
    (over every kept row), a target that varies in the training rows (two classes there).

    Least squares runs on the ``design`` (dummy coding of categorical features, whose codes the
    chunks hold); their normalization is the identity (mean 0, variance 1): the model encodes
    their codes itself. A classification's ``y`` holds class codes into ``classes``.

    Raises:
        DataError: a rule is broken (or by the chunks, as they are read).
    """
    k = len(features)
    design = design or Design(tuple(features), {})
    categorical = [i for i, name in enumerate(features) if name in design.vocabularies]
    counts = np.zeros(3, dtype=np.int64)
    total = kept = filled = 0
    x_moments = Moments(k)
    y_moments = Moments(1)
    every_target = Moments(1)  # every kept row, as the spread rule reads them
    lsq = LeastSquares(design.width)
    class_counts = np.zeros(len(classes), dtype=np.int64)
    y_min, y_max = math.inf, -math.inf
    for chunk in chunks:
        total += chunk.read
        kept += len(chunk.rows)
        filled += int(np.isnan(chunk.x).sum())
        counts += np.bincount(chunk.part, minlength=3)
        every_target.update(chunk.y)
        train = chunk.part == TRAIN
        x, y = chunk.x[train], chunk.y[train]
        if len(y):
            x_moments.update(x)
            y_moments.update(y)
            lsq.update(design.expand(x), y)
            y_min, y_max = min(y_min, float(y.min())), max(y_max, float(y.max()))
            if classification:
                class_counts += np.bincount(y.astype(np.int64), minlength=len(classes))
    rows = dict(zip(PARTS, (int(c) for c in counts), strict=True))
    if kept == 0:
        raise DataError(
            f"{path}: every row has an empty cell, so data.missing={missing} leaves none."
        )
    short = (
        rows["train"] < 2
        or (test > 0 and rows["test"] == 0)
        or (validation > 0 and rows["validation"] == 0)
    )
    if short:
        raise DataError(split_message(path, kept, validation, test))
    if missing == "mean":
        csv.check_fill(x_moments.n, features, path)
    if not classification:
        spread = math.sqrt(float(every_target.m2[0]) / max(float(every_target.n[0]), 1.0))
        csv.check_target_spread(path, target, spread)
    if y_min == y_max:
        value = repr(classes[int(y_min)]) if classification else f"{y_min:g}"
        rule = "two classes in" if classification else "vary in"
        raise DataError(
            f"{path}: target column '{target}' must {rule} the training rows; "
            f"a constant target leaves nothing to learn. Received: every value {value}"
        )
    n_train = rows["train"]
    mean, variance = x_moments.mean.copy(), x_moments.m2 / n_train
    # Codes are encoded by the model, not normalized; they are never empty here.
    mean[categorical], variance[categorical] = 0.0, 1.0
    # Only numeric design columns have cells to fill: dummies are never empty.
    coef, intercept = lsq.solve(design.expand(mean[None, :])[0])
    return Stats(
        features=tuple(features),
        target=target,
        rows=rows,
        dropped_rows=total - kept,
        filled_cells=filled,
        feature_mean=mean,
        # Filled cells sit at the mean: they add rows but no squared deviation.
        feature_variance=variance,
        fill=mean,
        target_mean=float(y_moments.mean[0]),
        target_std=float(math.sqrt(y_moments.m2[0] / n_train)),
        coefficients=coef,
        intercept=intercept,
        design=design,
        classes=tuple(classes),
        class_counts=tuple(int(c) for c in class_counts),
        collinear=tuple(collinear_columns(lsq.centred_gram(), design.column_names())),
    )
