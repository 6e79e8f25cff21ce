"""Yardsticks in numpy: test metrics and the two baselines every run is compared with.

The baselines are the mean predictor (what a model that learned nothing scores) and exact least
squares with an intercept (the best a network with no hidden layer can do). Both are fitted on
the training split only and scored on the same test rows as the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from builder.errors import DataError


@dataclass(frozen=True)
class LeastSquares:
    """``y = x @ coef + intercept``, fitted by ``numpy.linalg.lstsq``."""

    coef: np.ndarray
    intercept: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions for the rows of ``x``."""
        return np.asarray(x, np.float64) @ self.coef + self.intercept


def solve_least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``numpy.linalg.lstsq(a, b)``'s solution, refusing what LAPACK cannot take.

    LAPACK's SVD never returns on an infinite or NaN input (the data readers' rules keep those
    out), so such input is refused before it is called; a finite one returns at once.

    Raises:
        DataError: ``a`` or ``b`` holds a value that is not finite, or the SVD fails.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    bad = int((~np.isfinite(a)).sum() + (~np.isfinite(b)).sum())
    if bad:
        raise DataError(
            f"least squares needs finite values. Received: {bad} infinite or NaN values "
            f"among the {a.size + b.size} of its input"
        )
    try:
        solution, *_ = np.linalg.lstsq(a, b, rcond=None)
    except np.linalg.LinAlgError as err:
        raise DataError(f"least squares could not be solved: {err}") from None
    return solution


def least_squares(x: np.ndarray, y: np.ndarray) -> LeastSquares:
    """Exact least squares with an intercept, in float64.

    Raises:
        DataError: as ``solve_least_squares`` (a value that is not finite).
    """
    x = np.asarray(x, np.float64)
    design = np.hstack([x, np.ones((len(x), 1))])
    solution = solve_least_squares(design, y)
    return LeastSquares(coef=solution[:-1], intercept=float(solution[-1]))


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE and R² (R² is 0 for the mean of ``y_true``, 1 for a perfect fit)."""
    y_true = np.asarray(y_true, np.float64).ravel()
    err = np.asarray(y_pred, np.float64).ravel() - y_true
    mse = float(np.mean(err**2))
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.mean(np.abs(err))),
        "r2": 1.0 - float(np.sum(err**2)) / total if total > 0 else float("nan"),
    }


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
    score = np.asarray(score, np.float64).ravel()
    return {
        "accuracy": float(np.mean((score >= 0.5) == (y_true > 0.5))),
        "auc": roc_auc(y_true, score),
        "mse": float(np.mean((score - y_true) ** 2)),
    }


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
    majority class's) and least squares is the linear probability model.
    """
    mean = float(np.mean(y_train))
    fit = least_squares(x_train, y_train)
    pred = fit.predict(x_test)
    if task == "classification":
        pred = np.clip(pred, 0.0, 1.0)
    return {
        "mean_predictor": {**score(task, y_test, np.full(len(y_test), mean)), "value": mean},
        "least_squares": {
            **score(task, y_test, pred),
            "coefficients": dict(zip(features, fit.coef.tolist(), strict=True)),
            "intercept": fit.intercept,
        },
    }


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
