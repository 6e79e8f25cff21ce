"""Scoring in numpy: test metrics and the two baselines every run is compared with.

The metrics exist twice only in form: on whole arrays (``score``, ``baselines``) and accumulated
block by block (``scorer``), which training, ``evaluate`` and the streamed test split use; the
accumulators give the whole-array results (AUC from a sample above ``AUC_SAMPLE_ROWS`` rows).

The baselines are the mean predictor (what a model that learned nothing scores) and exact least
squares with an intercept (the best a network with no hidden layer can do). Both are fitted on
the training split only and scored on the same test rows as the network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from builder.data.stats import LeastSquares, Moments, require_finite


@dataclass(frozen=True)
class LinearFit:
    """``y = x @ coef + intercept``: exact least squares (``least_squares``)."""

    coef: np.ndarray
    intercept: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions for the rows of ``x``."""
        return np.asarray(x, np.float64) @ self.coef + self.intercept


def least_squares(x: np.ndarray, y: np.ndarray) -> LinearFit:
    """Exact least squares with an intercept, in float64 (``builder.data.stats.LeastSquares``).

    Raises:
        DataError: a value is not finite (``builder.data.stats.require_finite``).
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    require_finite(x, y)  # NaN would be read as a cell to fill
    fit = LeastSquares(x.shape[1])
    fit.update(x, y)
    coef, intercept = fit.solve(np.zeros(x.shape[1]))
    return LinearFit(coef=coef, intercept=intercept)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE and R² (R² is 0 for the mean of ``y_true``, 1 for a perfect fit)."""
    y_true = np.asarray(y_true, np.float64).ravel()
    found = RegressionScore()
    found.update(y_true, y_pred, np.zeros(len(y_true)))
    return found.result()


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties averaged."""
    y_true = np.asarray(y_true).ravel() > 0.5
    score = np.asarray(score, np.float64).ravel()
    n_pos = int(y_true.sum())
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(y_true: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Accuracy (score >= 0.5 is class 1), ROC AUC and MSE of the scores."""
    y_true = np.asarray(y_true, np.float64).ravel()
    found = ClassificationScore(sample_rows=len(y_true))
    found.update(y_true, score, np.zeros(len(y_true)))
    return found.result()


def score(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The task's metrics."""
    if task == "classification":
        return classification_metrics(y_true, y_pred)
    return regression_metrics(y_true, y_pred)


def baselines(
    task: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    features: list[str] | tuple[str, ...],
) -> dict[str, dict]:
    """The mean predictor and exact least squares, fitted on train and scored on test.

    For classification the mean predictor is the training base rate (so its accuracy is the
    majority class's) and least squares is the linear probability model. Training's own
    baselines come from its statistics pass (``builder.data.table.Table.evaluate``), scored by
    ``baseline_scores`` as here.
    """
    fit = least_squares(x_train, y_train)
    return baseline_scores(task, [(x_test, y_test, None)], float(np.mean(y_train)), fit, features)


def baseline_scores(
    task: str,
    blocks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    mean: float,
    fit: LinearFit,
    features: Sequence[str],
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Score the mean predictor, least squares and (if given) a model over blocks of test rows.

    Args:
        task: ``regression`` or ``classification``.
        blocks: ``(x, y, keys)`` float64 blocks of test rows; ``keys`` pick the AUC sample
            (``None``: no sample, every row, for arrays that fit in it).
        mean: the training target's mean (the mean predictor's value).
        fit: least squares on the training rows.
        features: the feature names, for the coefficients.
        predict: maps float32 features ``(n, k)`` to ``n`` predictions.

    Returns:
        ``{"mean_predictor": ..., "least_squares": ...}``, and under ``"model"`` the model's
        metrics when ``predict`` is given.
    """
    model, constant, line = scorer(task), scorer(task), scorer(task)
    for x, y, keys in blocks:
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64).ravel()
        keys = np.zeros(len(y)) if keys is None else keys
        if predict is not None:
            model.update(y, predict(x.astype(np.float32)), keys)
        constant.update(y, np.full(len(y), mean), keys)
        pred = fit.predict(x)
        if task == "classification":
            pred = np.clip(pred, 0.0, 1.0)
        line.update(y, pred, keys)
    found: dict[str, Any] = {
        "mean_predictor": {**constant.result(), "value": mean},
        "least_squares": {
            **line.result(),
            "coefficients": dict(zip(features, fit.coef.tolist(), strict=True)),
            "intercept": fit.intercept,
        },
    }
    if predict is not None:
        found["model"] = model.result()
    return found


def learned_nothing(task: str, test: dict[str, float], baselines: dict[str, dict]) -> str | None:
    """A warning when the network scores no better than the mean predictor, else None.

    Regression: test MSE within 1% of the mean predictor's (R² about 0 or below).
    Classification: accuracy no better than the majority class and the scores' MSE (Brier
    score) within 1% of the base rate's: the network has not separated the classes.
    """
    mean = baselines["mean_predictor"]
    if task == "classification":
        if test["accuracy"] > mean["accuracy"] or test["mse"] < 0.99 * mean["mse"]:
            return None
        scored = (
            f"test accuracy {test['accuracy']:.4g}, majority class {mean['accuracy']:.4g}; "
            f"Brier score {test['mse']:.4g}, base rate {mean['mse']:.4g}"
        )
    else:
        if test["mse"] < 0.99 * mean["mse"]:  # False for NaN: a diverged network is warned about
            return None
        scored = f"test MSE {test['mse']:.4g}, mean predictor {mean['mse']:.4g}"
    return (
        f"the network is no better than the mean predictor ({scored}). Look at the layers "
        "(a threshold or relu layer whose output is the same for every row passes nothing on), "
        "the output activation, training.optimizer.learning_rate and the training length "
        "(training.epochs, training.steps)."
    )


AUC_SAMPLE_ROWS = 1_000_000
"""Test rows kept for the classification AUC (exact below this; above it a uniform sample chosen
by a hash of the row number). Accuracy and MSE are accumulated exactly over every test row."""


def scorer(task: str) -> RegressionScore | ClassificationScore:
    """Metrics of predictions accumulated block by block: ``update(y, pred, keys)``, ``result()``.

    ``keys`` (``builder.data.split.row_uniform`` of the row numbers) pick the AUC sample of a
    classification.
    """
    return ClassificationScore() if task == "classification" else RegressionScore()


class RegressionScore:
    """MSE, RMSE, MAE and R², accumulated exactly (as ``regression_metrics``)."""

    def __init__(self) -> None:
        self.n = 0
        self.sse = 0.0
        self.sae = 0.0
        self.y = Moments(1)

    def update(self, y: np.ndarray, pred: np.ndarray, keys: np.ndarray) -> None:
        """Add a block of targets and predictions."""
        err = np.asarray(pred, np.float64).ravel() - y
        self.n += len(y)
        self.sse += float(np.sum(err**2))
        self.sae += float(np.sum(np.abs(err)))
        self.y.update(y)

    def result(self) -> dict[str, float]:
        """The metrics of every block added (NaN for none)."""
        if self.n == 0:
            return dict.fromkeys(("mse", "rmse", "mae", "r2"), float("nan"))
        mse = self.sse / self.n
        total = float(self.y.m2[0])
        return {
            "mse": mse,
            "rmse": math.sqrt(mse),
            "mae": self.sae / self.n,
            "r2": 1.0 - self.sse / total if total > 0 else float("nan"),
        }


class ClassificationScore:
    """Accuracy and MSE accumulated exactly; AUC from at most ``sample_rows`` rows."""

    def __init__(self, sample_rows: int = AUC_SAMPLE_ROWS) -> None:
        self.n = 0
        self.correct = 0
        self.sse = 0.0
        self.sample_rows = sample_rows
        self.keys = np.zeros(0)
        self.labels = np.zeros(0)
        self.scores = np.zeros(0)

    def update(self, y: np.ndarray, score: np.ndarray, keys: np.ndarray) -> None:
        """Add a block of labels and scores."""
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
        """The metrics of every block added."""
        return {
            "accuracy": self.correct / self.n,
            "auc": roc_auc(self.labels, self.scores),
            "mse": self.sse / self.n,
        }
