"""Which part (train, validation, test) each data row belongs to.

In memory, the split is the exact seeded permutation of the kept rows (``split_rows``), so a run
keeps its test rows across versions. Streamed, the split is decided per row, without an index in
memory: data row ``i`` (0 is the first row after the header) goes to test when ``u(i) < test``,
to validation when ``u(i) < test + validation``, else to train, where ``u(i)`` is a 64-bit mix
(splitmix64) of ``i`` and the split seed, scaled to [0, 1). Parts therefore never overlap, cover
every row, do not depend on the chunk size, and hold the configured fractions up to binomial
noise (the in-memory split rounds exact counts instead, so the two pick different rows). Both
give part codes per row: ``TRAIN`` (0), ``VALIDATION`` (1), ``TEST`` (2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from builder.errors import DataError

PARTS = ("train", "validation", "test")
TRAIN, VALIDATION, TEST = 0, 1, 2

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def split_message(where: str | Path, rows: int, validation: float, test: float) -> str:
    """The message for too few rows for the splits (both splits)."""
    return (
        f"{where} must have enough rows for the splits: at least 2 training rows and one in "
        f"each part with a fraction above 0 (a streamed file's rows are split by a hash, so a "
        f"small one may leave a part empty). "
        f"Received: {rows} rows, validation={validation}, test={test}"
    )


def split_rows(
    n: int, validation: float, test: float, seed: int, where: str = "the data"
) -> dict[str, np.ndarray]:
    """Seeded random split of row indices; each part keeps the file's row order.

    Raises:
        DataError: too few rows for every requested part to get at least one row.
    """
    n_test = int(round(n * test))
    n_val = int(round(n * validation))
    if test > 0:
        n_test = max(n_test, 1)
    if validation > 0:
        n_val = max(n_val, 1)
    n_train = n - n_test - n_val
    if n_train < 2:
        raise DataError(split_message(where, n, validation, test))
    order = np.random.default_rng(seed).permutation(n)
    return {
        "test": np.sort(order[:n_test]),
        "validation": np.sort(order[n_test : n_test + n_val]),
        "train": np.sort(order[n_test + n_val :]),
    }


def permutation_codes(
    n: int, validation: float, test: float, seed: int, where: str = "the data"
) -> np.ndarray:
    """``split_rows`` as the part code of each of ``n`` rows.

    Raises:
        DataError: as ``split_rows``.
    """
    codes = np.empty(n, dtype=np.int8)
    for code, indices in enumerate(split_rows(n, validation, test, seed, where)[p] for p in PARTS):
        codes[indices] = code
    return codes


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
    """The hash split's part of each data row: ``TRAIN``, ``VALIDATION`` or ``TEST``."""
    u = row_uniform(rows, seed)
    codes = np.full(len(u), TRAIN, dtype=np.int8)
    codes[u < test + validation] = VALIDATION
    codes[u < test] = TEST
    return codes
