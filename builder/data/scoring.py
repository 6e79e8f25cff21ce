"""Scoring in numpy: test metrics and the two baselines every run is compared with.

The metrics exist twice only in form: on whole arrays (``score``, ``baselines``) and accumulated
block by block (``scorer``), which training, ``evaluate`` and the streamed test split use; the
accumulators give the whole-array results (AUC from a sample above ``AUC_SAMPLE_ROWS`` rows).
A classification's metrics are ``builder.data.classes.ClassScore``'s.

The baselines are what a model that learned nothing scores (the mean predictor; the majority
class) and the best a network with no hidden layer can do, fitted independently of Keras (exact
least squares with an intercept; logistic regression by Newton's method). Both are fitted on the
training split only and scored on the same test rows as the network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from builder.data.columns import Design
from builder.data.stats import LeastSquares, Moments, require_finite


@dataclass(frozen=True)
class LinearFit:
    """``y = design(x) @ coef + intercept``: exact least squares (``least_squares``); without a
    design (all features numeric), ``design(x)`` is ``x``."""

    coef: np.ndarray
    intercept: float
    design: Design | None = None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions for the rows of ``x`` (codes in categorical columns)."""
        x = np.asarray(x, np.float64)
        if self.design is not None:
            x = self.design.expand(x)
        return x @ self.coef + self.intercept

    def names(self, features: Sequence[str]) -> list[str]:
        """The coefficients' names: the features', or the design's columns."""
        return self.design.column_names() if self.design is not None else list(features)


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


def score(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The task's metrics: a classification's ``y_pred`` is class probabilities ``(n, k)``."""
    if task == "classification":
        found = scorer(task, [str(c) for c in range(np.shape(y_pred)[1])])
        found.update(np.asarray(y_true, np.float64).ravel(), y_pred, np.zeros(len(y_true)))
        return found.result()
    return regression_metrics(y_true, y_pred)


def baselines(
    task: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    features: list[str] | tuple[str, ...],
) -> dict[str, dict]:
    """The baselines on arrays, fitted on train and scored on test: the mean predictor and exact
    least squares for regression; for classification (``y``: class codes 0 .. k-1) the
    majority class and logistic regression (``class_baseline_scores``). Training's own
    baselines come from its statistics pass (``builder.data.table.Table.evaluate``), scored by
    the same functions.
    """
    if task == "classification":
        from builder.data.classes import logistic_regression

        k = int(max(np.max(y_train), np.max(y_test))) + 1
        codes = np.asarray(y_train).astype(np.int64)
        logistic = logistic_regression(np.asarray(x_train, np.float64), codes, k)
        return class_baseline_scores(
            [(x_test, y_test, None)],
            [str(c) for c in range(k)],
            np.bincount(codes, minlength=k),
            logistic,
            None,
        )
    fit = least_squares(x_train, y_train)
    return baseline_scores(task, [(x_test, y_test, None)], float(np.mean(y_train)), fit, features)


def _float_blocks(
    blocks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
) -> Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    # Test blocks as float64 features, flat float64 targets and AUC keys (zeros when None).
    for x, y, keys in blocks:
        y = np.asarray(y, np.float64).ravel()
        yield np.asarray(x, np.float64), y, np.zeros(len(y)) if keys is None else keys


def baseline_scores(
    task: str,
    blocks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    mean: float,
    fit: LinearFit,
    features: Sequence[str],
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Score the mean predictor, least squares and (if given) a regression model over blocks of
    test rows.

    Args:
        task: ``regression``.
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
    for x, y, keys in _float_blocks(blocks):
        if predict is not None:
            model.update(y, predict(x.astype(np.float32)), keys)
        constant.update(y, np.full(len(y), mean), keys)
        line.update(y, fit.predict(x), keys)
    found: dict[str, Any] = {
        "mean_predictor": {**constant.result(), "value": mean},
        "least_squares": {
            **line.result(),
            "coefficients": dict(zip(fit.names(features), fit.coef.tolist(), strict=True)),
            "intercept": fit.intercept,
        },
    }
    if predict is not None:
        found["model"] = model.result()
    return found


def class_baseline_scores(
    blocks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    classes: Sequence[str],
    class_counts: Sequence[int],
    logistic: Any,
    design: Design | None,
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Score the majority class, the logistic baseline and (if given) a classifier.

    Args:
        blocks: ``(x, y, keys)`` float64 blocks of test rows (``y``: class codes).
        classes: the class labels.
        class_counts: training rows per class: the majority class predicts the training
            frequencies as its probabilities (so its log loss is their entropy).
        logistic: ``builder.data.classes.LogisticFit`` on the training design, or ``None``.
        design: the dummy coding the logistic fit reads.
        predict: maps float32 features ``(n, k)`` to class probabilities ``(n, classes)``.

    Returns:
        ``{"majority_class": ..., "logistic": ...}`` (their ``ClassScore`` results), and under
        ``"model"`` the classifier's, under ``"details"`` its confusion matrix and per-class
        scores, when ``predict`` is given.
    """
    from builder.data.classes import ClassScore, majority_class

    prior = np.asarray(class_counts, np.float64)
    prior = prior / prior.sum()
    model, constant, linear = ClassScore(classes), ClassScore(classes), ClassScore(classes)
    for x, y, keys in _float_blocks(blocks):
        if predict is not None:
            model.update(y, predict(x.astype(np.float32)), keys)
        constant.update(y, np.tile(prior, (len(y), 1)), keys)
        if logistic is not None:
            linear.update(y, logistic.predict_proba(design.expand(x) if design else x), keys)
    majority = majority_class(class_counts)
    found: dict[str, Any] = {
        "majority_class": {**constant.result(), "class": classes[majority]},
    }
    if logistic is not None:
        found["logistic"] = linear.result()
    if predict is not None:
        found["model"] = model.result()
        found["details"] = model.details()
    return found


def learned_nothing(task: str, test: dict[str, float], baselines: dict[str, dict]) -> str | None:
    """A warning when the network scores no better than the mean predictor, else None.

    Regression: test MSE within 1% of the mean predictor's (R² about 0 or below).
    Classification: accuracy no better than the majority class and log loss within 1% of the
    training class frequencies': the network has not separated the classes.
    """
    if task == "classification":
        base = baselines["majority_class"]
        if test["accuracy"] > base["accuracy"] or test["log_loss"] < 0.99 * base["log_loss"]:
            return None
        scored = (
            f"test accuracy {test['accuracy']:.4g}, majority class {base['accuracy']:.4g}; "
            f"log loss {test['log_loss']:.4g}, class frequencies {base['log_loss']:.4g}"
        )
        return (
            f"the network is no better than always answering the majority class ({scored}). "
            "Look at the layers, the output activation, training.optimizer.learning_rate and "
            "the training length (training.epochs, training.steps)."
        )
    mean = baselines["mean_predictor"]
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


def scorer(task: str, classes: Sequence[str] = ("0", "1")) -> Any:
    """Metrics of predictions accumulated block by block: ``update(y, pred, keys)``, ``result()``.

    A classification's ``pred`` is class probabilities ``(n, classes)`` and its ``y`` class
    codes (``builder.data.classes.ClassScore``); ``keys``
    (``builder.data.split.row_uniform`` of the row numbers) pick its AUC sample.
    """
    if task == "classification":
        from builder.data.classes import ClassScore

        return ClassScore(classes)
    return RegressionScore()


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
