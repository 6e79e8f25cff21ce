"""Column types: numeric or categorical features, vocabularies, class labels, the dummy design.

A categorical column's text becomes integer codes here, in the data path, with a vocabulary
counted on the training split: code ``c >= 1`` is the ``c``-th most frequent training value,
code 0 a value the vocabulary does not hold (never seen in training, or cut by
``max_categories`` / ``min_count``). The model's first layers one-hot encode or embed the codes
(``builder.layers.CategoryColumns``), so the model itself takes plain float input on every Keras
backend and exports to formats that have no string type. A classification's labels become class
codes ``0 .. k-1`` the same way (``Labels``).

``Design`` is the dummy coding that least squares and the logistic baseline use: numeric columns
as they are, and per categorical column one 0/1 column for each category but the most frequent
(the reference), as a regression table codes them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from builder.errors import DataError
from builder.rules import number_text

NUMERIC = "numeric"
CATEGORICAL = "categorical"
MAX_CLASSES = 1_000
"""The most classes a classification target may hold: more is a regression target read as labels
(a salary column holds thousands of values)."""


@dataclass(frozen=True)
class Column:
    """A feature column: its name, its type (``None``: inferred from the file), and for a
    categorical one which training values its vocabulary keeps."""

    name: str
    kind: str | None = None
    max_categories: int = 1_000
    min_count: int = 1

    @classmethod
    def of(cls, spec: object) -> Column:
        """A ``Column`` from a name, a ``Column``, or a config's feature entry (duck-typed)."""
        if isinstance(spec, Column):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        return cls(
            spec.name,  # type: ignore[attr-defined]
            spec.type,  # type: ignore[attr-defined]
            spec.max_categories,  # type: ignore[attr-defined]
            spec.min_count,  # type: ignore[attr-defined]
        )


def clean_text(values: pd.Series) -> np.ndarray:
    """A text column's cells as an object array of stripped strings, ``None`` where empty."""
    # Each distinct value is stripped once: a category column holds few of them, and string
    # methods cost per cell (bench/README.md, "Text feature columns").
    codes, distinct = pd.factorize(values)
    text = pd.Series(distinct, dtype=object).astype("string").str.strip()
    cleaned = text.astype(object).where(text.notna() & (text != ""), None).to_numpy(object)
    return np.append(cleaned, None)[codes]  # code -1 (an empty cell) is the None at the end


@dataclass
class Vocabulary:
    """A categorical column's kept training values, most frequent first (ties: by value).

    ``values[c - 1]`` has code ``c``; ``counts`` are their training counts.
    """

    values: tuple[str, ...]
    counts: tuple[int, ...]
    seen: int = 0  # distinct training values, kept or not
    _index: pd.Index | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_counts(cls, counts: Counter, max_categories: int, min_count: int) -> Vocabulary:
        """The vocabulary that keeps the ``max_categories`` most frequent values seen at least
        ``min_count`` times."""
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        kept = [(value, n) for value, n in ranked if n >= min_count][:max_categories]
        return cls(
            tuple(value for value, _ in kept), tuple(int(n) for _, n in kept), seen=len(counts)
        )

    def __len__(self) -> int:
        return len(self.values)

    @property
    def frequencies(self) -> np.ndarray:
        """Each kept value's share of the kept training values."""
        counts = np.asarray(self.counts, np.float64)
        return counts / counts.sum()

    def codes(self, text: np.ndarray) -> np.ndarray:
        """Codes of stripped strings (``clean_text``): 1.. for kept values, 0 for the rest, NaN
        for empty cells."""
        if self._index is None:
            self._index = pd.Index(self.values, dtype=object)
        codes = self._index.get_indexer(text).astype(np.float64) + 1.0
        codes[pd.isna(text)] = np.nan
        return codes


def unseen_message(path: Path, name: str, vocabulary: Vocabulary, value: str, row: int) -> str:
    """The ``data.unknown: error`` message: the column, the first unseen value and its line."""
    known = sorted(vocabulary.values)
    shown = ", ".join(repr(v) for v in known[:5])
    more = f" ... ({len(known)} in all)" if len(known) > 5 else ""
    return (
        f"{path}: column '{name}' must hold values seen in training (data.unknown: error). "
        f"Received: {_short(value)} on line {row + 2}; training's values: {shown}{more}"
    )


def _short(value: str, limit: int = 60) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def check_seen(
    path: Path, name: str, vocabulary: Vocabulary, text: np.ndarray, codes: np.ndarray, rows
) -> None:
    """``data.unknown: error``: every non-empty value is in the vocabulary.

    Raises:
        DataError: naming the first unseen value and its line.
    """
    unseen = codes == 0
    if unseen.any():
        first = int(np.flatnonzero(unseen)[0])
        raise DataError(unseen_message(path, name, vocabulary, str(text[first]), int(rows[first])))


@dataclass(frozen=True)
class Labels:
    """A classification target's classes in their recorded order; ``classes[c]`` has code ``c``.

    Labels that are all numbers are ordered by value and written as numbers are (``1``, not
    ``1.0``); other labels are ordered as text.
    """

    classes: tuple[str, ...]
    numeric: bool

    @classmethod
    def found(cls, texts: Iterable[np.ndarray]) -> Labels:
        """The labels of the target's non-empty cells (stripped strings)."""
        distinct: set[str] = set()
        for text in texts:
            distinct.update(v for v in pd.unique(text) if v is not None)
            if len(distinct) > MAX_CLASSES:
                break
        values = pd.Series(sorted(distinct), dtype=object)
        numbers = pd.to_numeric(values, errors="coerce")
        if len(values) and numbers.notna().all():
            canonical = sorted({float(v) for v in numbers})
            return cls(tuple(number_text(v) for v in canonical), numeric=True)
        return cls(tuple(values), numeric=False)

    def codes(self, text: np.ndarray) -> np.ndarray:
        """Class codes of stripped strings; NaN for empty cells and for labels not held."""
        if self.numeric:
            numbers = pd.to_numeric(pd.Series(text, dtype=object), errors="coerce").to_numpy()
            keys = np.array(
                [number_text(v) if np.isfinite(v) else None for v in numbers], dtype=object
            )
        else:
            keys = text
        codes = pd.Index(self.classes, dtype=object).get_indexer(keys).astype(np.float64)
        codes[(codes < 0) | pd.isna(keys)] = np.nan
        return codes

    def check(self, path: Path, target: str) -> None:
        """A classification target's rules: two classes at least, ``MAX_CLASSES`` at most.

        Raises:
            DataError: naming the column and what it holds.
        """
        k = len(self.classes)
        if k > MAX_CLASSES:
            raise DataError(
                f"{path}: target column '{target}' must hold at most {MAX_CLASSES:,} classes for "
                f"classification (is it a regression target? set task: regression). "
                f"Received: more than {MAX_CLASSES:,} distinct values"
            )
        if k < 2:
            value = repr(self.classes[0]) if k else "none"
            raise DataError(
                f"{path}: target column '{target}' must hold at least two classes for "
                f"classification. Received: every value {value}"
            )


def embedding_width(categories: int) -> int:
    """The default embedding width for ``categories`` values: min(50, round(1.6 * V**0.56)),
    fast.ai's rule of thumb."""
    return max(1, min(50, round(1.6 * categories**0.56)))


@dataclass(frozen=True)
class Design:
    """Dummy coding of a table's columns, for least squares and the logistic baseline.

    Args:
        names: the feature names, in input order.
        vocabularies: each categorical column's vocabulary (by name); other columns are numeric.
    """

    names: tuple[str, ...]
    vocabularies: dict[str, Vocabulary]

    @property
    def width(self) -> int:
        """Columns of the design."""
        return sum(self.width_of(name) for name in self.names)

    def width_of(self, name: str) -> int:
        """Design columns of feature ``name``: 1, or a categorical column's categories - 1."""
        vocabulary = self.vocabularies.get(name)
        return 1 if vocabulary is None else len(vocabulary) - 1

    def column_names(self) -> list[str]:
        """The design's column names: a numeric column's own, ``name=value`` for a dummy."""
        found: list[str] = []
        for name in self.names:
            vocabulary = self.vocabularies.get(name)
            if vocabulary is None:
                found.append(name)
            else:
                found.extend(f"{name}={value}" for value in vocabulary.values[1:])
        return found

    def expand(self, x: np.ndarray) -> np.ndarray:
        """The design of rows ``x`` (float64 ``(n, k)``, codes in categorical columns).

        A code 0 (a value the vocabulary does not hold) is coded as the training frequencies,
        as the model encodes it; NaN in a numeric column stays NaN (a cell to fill).
        """
        if not self.vocabularies:
            return x
        parts: list[np.ndarray] = []
        for i, name in enumerate(self.names):
            vocabulary = self.vocabularies.get(name)
            if vocabulary is None:
                parts.append(x[:, i : i + 1])
                continue
            table = np.vstack([vocabulary.frequencies, np.eye(len(vocabulary))])
            codes = np.nan_to_num(x[:, i], nan=0.0).astype(np.int64)
            codes[(codes < 0) | (codes > len(vocabulary))] = 0
            parts.append(table[codes][:, 1:])
        return np.hstack(parts) if parts else np.zeros((len(x), 0))


def collinear_columns(gram: np.ndarray, names: Sequence[str], tolerance: float = 1e-9) -> list[str]:
    """Design columns that are (nearly) exact linear combinations of the others and the intercept.

    Args:
        gram: the centred design's ``X^T X`` (without the intercept's row and column).
        names: the design's column names.
        tolerance: the relative eigenvalue below which a direction counts as exact.

    Returns:
        The names of the columns taking part in each such combination, largest weight first.
    """
    k = len(names)
    if k < 2:
        return []
    scale = np.sqrt(np.diag(gram))
    scale[scale == 0] = 1.0
    corr = gram / np.outer(scale, scale)
    values, vectors = np.linalg.eigh(corr)
    found: list[str] = []
    for value, vector in zip(values, vectors.T, strict=True):
        if value > tolerance * max(float(values[-1]), 1.0):
            break
        weights = np.abs(vector)
        for j in np.argsort(-weights):
            if weights[j] > 0.05 and names[j] not in found:
                found.append(names[j])
    return found


def infer_kind(text: pd.Series) -> tuple[bool, int | None]:
    """Whether a column read as text holds a non-number, and the first such row (else None)."""
    codes, distinct = pd.factorize(text)  # each distinct value is looked at once
    stripped = pd.Series(distinct, dtype=object).astype("string").str.strip()
    words = stripped.notna() & (stripped != "") & pd.to_numeric(stripped, errors="coerce").isna()
    bad = np.append(words.to_numpy(bool), False)[codes]  # code -1: an empty cell
    if bad.any():
        return True, int(np.flatnonzero(bad)[0])
    return False, None
