"""Permutation importance: how much a run's test loss grows when one feature is shuffled.

Works for any model, with or without hidden layers: each feature's values in the test split are
shuffled (which breaks their link to the target and keeps their distribution), the test rows are
scored again with the run's loss, and the increase over the unshuffled loss is that feature's
importance. Each feature is shuffled ``repeats`` times from the run's seed; the mean and the
standard deviation of the increases are reported. Plain data; nothing here prints.

A categorical feature is one column of codes in the model's input (its one-hot columns or
embedding are made inside the model), so shuffling that column moves whole categories between
rows: the feature is scored as one, never column by column. A classifier is scored on its class
codes with all its outputs: one sigmoid unit's ``(n, 1)`` for binary_crossentropy, the ``(n, k)``
softmax probabilities for sparse_categorical_crossentropy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from builder.errors import DataError
from builder.predict import holdout_split
from builder.runs import Run

#: Shuffles per feature.
REPEATS = 5
#: Test rows scored at most (a seeded sample beyond it): each feature costs ``repeats`` passes.
MAX_ROWS = 100_000


def loss_values(loss: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The mean of a Keras loss (by its config name) over the rows, as training computes it.

    Args:
        loss: the loss's name (``mse``, ``binary_crossentropy``,
            ``sparse_categorical_crossentropy`` ...).
        y_true: ``n`` targets (a classifier's class codes).
        y_pred: the model's outputs, ``(n, units)`` (a flat ``n`` for one unit).
    """
    import keras

    fn = keras.losses.get(loss)
    y_true = np.asarray(y_true, np.float32).reshape(-1, 1)
    values = fn(y_true, np.asarray(y_pred, np.float32).reshape(len(y_true), -1))
    return float(np.mean(np.asarray(keras.ops.convert_to_numpy(values), np.float64)))


def permutation_importance(
    run: Run,
    *,
    repeats: int = REPEATS,
    seed: int | None = None,
    max_rows: int = MAX_ROWS,
    split: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Permutation importance of each feature on the run's test split.

    Args:
        run: a loaded run directory.
        repeats: shuffles per feature.
        seed: the shuffles' seed (default: the run's ``training.seed``).
        max_rows: test rows used at most (a seeded sample of them beyond).
        split: ``(x, y)`` to use instead of the run's test split.

    Returns:
        ``loss`` (its name), ``test_loss`` (unshuffled), ``rows``, ``repeats``, ``seed`` and
        ``features``: one entry per feature (a categorical one as a whole), most important
        first, with ``name``, ``type`` (``numeric`` or ``categorical``), ``mean``
        (the mean increase in test loss), ``std`` (their standard deviation over the repeats),
        ``relative`` (mean / test_loss) and ``increases`` (each repeat's).

    Raises:
        DataError: as ``holdout_split``; or the test split is empty.
    """
    from builder.predict import vocabularies_of
    from builder.training import model_outputs

    x, y = split if split is not None else holdout_split(run, "importance")
    if len(y) == 0:
        raise DataError("the run's test split is empty (data.split.test is 0): nothing to score.")
    seed = run.config.training.seed if seed is None else seed
    rng = np.random.default_rng(seed)
    if len(y) > max_rows:
        keep = np.sort(rng.choice(len(y), size=max_rows, replace=False))
        x, y = x[keep], y[keep]
    x = np.asarray(x, np.float32)
    loss = run.config.training.loss
    base = loss_values(loss, y, model_outputs(run.model, x))
    categorical = vocabularies_of(run.model)
    features = []
    n = len(y)
    for j, name in enumerate(run.config.data.feature_names):
        # All repeats of a feature in one call: the model's per-call cost dominates small splits.
        shuffled = np.tile(x, (repeats, 1))
        for r in range(repeats):
            shuffled[r * n : (r + 1) * n, j] = x[rng.permutation(n), j]
        predicted = model_outputs(run.model, shuffled)
        increases = [
            loss_values(loss, y, predicted[r * n : (r + 1) * n]) - base for r in range(repeats)
        ]
        mean = float(np.mean(increases))
        features.append(
            {
                "name": name,
                "type": "categorical" if name in categorical else "numeric",
                "mean": mean,
                "std": float(np.std(increases, ddof=1)) if repeats > 1 else 0.0,
                "relative": mean / base if base else float("nan"),
                "increases": increases,
            }
        )
    features.sort(key=lambda item: -item["mean"])
    return {
        "loss": loss,
        "test_loss": base,
        "rows": n,
        "repeats": repeats,
        "seed": seed,
        "features": features,
    }
