"""Many-class scoring and baselines in numpy: metrics, multinomial logistic regression, weights.

Classes are coded ``0..K-1`` (``K >= 2``) in the order of the ``classes`` labels. A model's output
is ``probabilities``, float ``(n, K)`` with rows summing to 1 (a binary model's ``p`` is passed as
``[1 - p, p]``), and its predicted class is the argmax (ties: the lowest index, as
``numpy.argmax``). ``ClassScore`` accumulates the metrics block by block, as the scorers of
``builder.data.scoring`` do (``update``, ``result``); ``logistic_regression`` is the many-class
counterpart of least squares (the best a network with no hidden layer can do); ``majority_class``
is the counterpart of the mean predictor; ``class_weights`` reads ``training.class_weight``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from builder.data.scoring import AUC_SAMPLE_ROWS, roc_auc
from builder.errors import ConfigError, DataError

HESSIAN_ROWS = 200_000
"""The most rows ``logistic_regression`` builds its Hessian from (a strided sample above)."""

LOG_LOSS_FLOOR = 1e-7
"""Probabilities are clipped to ``[LOG_LOSS_FLOOR, 1]`` for the log loss, so one confident
mistake costs ``-log(1e-7)`` (about 16) instead of infinity."""


def predicted_class(probabilities: np.ndarray) -> np.ndarray:
    """The argmax of each row (ties: the lowest index), as int64 codes."""
    return np.argmax(np.asarray(probabilities), axis=1).astype(np.int64)


def _codes(y: np.ndarray, k: int) -> np.ndarray:
    """``y`` as int64 class codes, checked to be whole numbers in ``0..k-1``."""
    y = np.asarray(y).ravel()
    codes = y.astype(np.int64) if y.dtype.kind == "f" else np.asarray(y, np.int64)
    if y.dtype.kind == "f" and not np.array_equal(codes, y):
        raise ValueError(
            f"class codes must be whole numbers 0..{k - 1}; received {y[codes != y][:3]}"
        )
    if len(codes) and (codes.min() < 0 or codes.max() >= k):
        raise ValueError(
            f"class codes must lie in 0..{k - 1}; received {codes.min()}..{codes.max()}"
        )
    return codes


class ClassScore:
    """Accuracy, macro F1, AUC and log loss of class probabilities, accumulated block by block.

    The confusion matrix, and with it accuracy, F1, precision and recall, and the log loss are
    exact over every row added; the AUC uses at most ``sample_rows`` rows, those with the smallest
    ``keys`` (``builder.data.split.row_uniform`` of the row numbers: a uniform sample, the same
    on every run and whatever the blocks).

    Conventions (scikit-learn's, so the numbers can be checked against it):

    - The precision of a class never predicted, the recall of a class absent from the rows, and
      the F1 of a class with neither are 0.0 (``zero_division=0``).
    - The macro F1 averages the classes that occur among the true or the predicted classes
      (``f1_score(average="macro")`` without ``labels``): a class the test rows lack and the model
      never predicts has no F1 to count.
    - Binary AUC is the ROC AUC of class 1's probability. For ``K >= 3`` it is the one-vs-rest
      macro average over the classes whose AUC is defined (rows of the class and rows of other
      classes in the sample). NaN where no AUC is defined.
    """

    def __init__(self, classes: Sequence[str], sample_rows: int = AUC_SAMPLE_ROWS) -> None:
        self.classes = [str(c) for c in classes]
        self.k = len(self.classes)
        if self.k < 2:
            raise ValueError(f"ClassScore needs at least 2 classes; received {self.classes}")
        self.sample_rows = sample_rows
        self.n = 0
        self.confusion = np.zeros((self.k, self.k), np.int64)
        self.neg_log = 0.0
        self.sse = 0.0
        self.keys = np.zeros(0)
        self.labels = np.zeros(0, np.int64)
        self.probs = np.zeros((0, self.k))
        # Blocks wait here until they outnumber the sample, so adding many small blocks does not
        # copy the sample on every update.
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.pending_rows = 0

    def update(self, y: np.ndarray, probabilities: np.ndarray, keys: np.ndarray) -> None:
        """Add a block of class codes (float or int), probabilities ``(n, K)`` and sample keys."""
        probabilities = np.asarray(probabilities, np.float64)
        codes = _codes(y, self.k)
        if probabilities.shape != (len(codes), self.k):
            raise ValueError(
                f"probabilities must have shape ({len(codes)}, {self.k}); "
                f"received {probabilities.shape}"
            )
        keys = np.asarray(keys, np.float64).ravel()
        if len(keys) != len(codes):
            raise ValueError(f"{len(keys)} keys for {len(codes)} rows")
        if not len(codes):
            return
        pred = predicted_class(probabilities)
        self.confusion += np.bincount(codes * self.k + pred, minlength=self.k * self.k).reshape(
            self.k, self.k
        )
        p_true = np.clip(probabilities[np.arange(len(codes)), codes], LOG_LOSS_FLOOR, 1.0)
        self.neg_log -= float(np.sum(np.log(p_true)))
        if self.k == 2:
            self.sse += float(np.sum((probabilities[:, 1] - codes) ** 2))
        self.n += len(codes)
        self.pending.append((keys, codes, probabilities))
        self.pending_rows += len(codes)
        if self.pending_rows > max(self.sample_rows, 1):
            self._merge()

    def _merge(self) -> None:
        """Fold the pending blocks into the sample, keeping the rows with the smallest keys."""
        if not self.pending:
            return
        self.keys = np.concatenate([self.keys, *(b[0] for b in self.pending)])
        self.labels = np.concatenate([self.labels, *(b[1] for b in self.pending)])
        self.probs = np.concatenate([self.probs, *(b[2] for b in self.pending)])
        self.pending, self.pending_rows = [], 0
        if len(self.keys) > self.sample_rows:
            keep = np.argpartition(self.keys, self.sample_rows)[: self.sample_rows]
            self.keys, self.labels, self.probs = (
                self.keys[keep],
                self.labels[keep],
                self.probs[keep],
            )

    def _per_class(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Precision, recall, F1 and support of each class (0.0 where a ratio is 0/0)."""
        tp = np.diag(self.confusion).astype(np.float64)
        support = self.confusion.sum(axis=1)
        predicted = self.confusion.sum(axis=0)

        def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

        precision = ratio(tp, predicted.astype(np.float64))
        recall = ratio(tp, support.astype(np.float64))
        # 2 tp / (2 tp + fp + fn) is 2 P R / (P + R) wherever that is defined, and 0 elsewhere.
        f1 = ratio(2 * tp, (support + predicted).astype(np.float64))
        return precision, recall, f1, support

    def auc(self) -> float:
        """The AUC of the sample (binary, or one-vs-rest macro), NaN where undefined."""
        self._merge()
        if self.k == 2:
            return roc_auc(self.labels == 1, self.probs[:, 1])
        found = [roc_auc(self.labels == c, self.probs[:, c]) for c in range(self.k)]
        found = [a for a in found if not math.isnan(a)]
        return float(np.mean(found)) if found else float("nan")

    def result(self) -> dict[str, float]:
        """``accuracy``, ``macro_f1``, ``auc``, ``log_loss`` (K == 2: and ``mse``); NaN if empty."""
        names = ["accuracy", "macro_f1", "auc", "log_loss"] + (["mse"] if self.k == 2 else [])
        if self.n == 0:
            return dict.fromkeys(names, float("nan"))
        _, _, f1, support = self._per_class()
        seen = (support + self.confusion.sum(axis=0)) > 0
        found = {
            "accuracy": float(np.trace(self.confusion)) / self.n,
            "macro_f1": float(np.mean(f1[seen])),
            "auc": self.auc(),
            "log_loss": self.neg_log / self.n,
        }
        if self.k == 2:
            found["mse"] = self.sse / self.n
        return found

    def details(self) -> dict[str, Any]:
        """The classes, the confusion matrix and each class's precision, recall, F1 and support.

        Returns:
            ``{"classes": [...], "confusion_matrix": [[int]], "per_class": {label: {"precision",
            "recall", "f1", "support"}}}``; the matrix's rows are the true classes and its columns
            the predicted ones, both in class order. The precision of a class never predicted is
            0.0, as are the recall and F1 of a class absent from the rows (scikit-learn's
            ``zero_division=0``).
        """
        precision, recall, f1, support = self._per_class()
        return {
            "classes": list(self.classes),
            "confusion_matrix": self.confusion.tolist(),
            "per_class": {
                label: {
                    "precision": float(precision[c]),
                    "recall": float(recall[c]),
                    "f1": float(f1[c]),
                    "support": int(support[c]),
                }
                for c, label in enumerate(self.classes)
            },
        }


def class_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, classes: Sequence[str]
) -> dict[str, float]:
    """``ClassScore.result`` of whole arrays (AUC over every row)."""
    codes = np.asarray(y_true).ravel()
    found = ClassScore(classes, sample_rows=max(len(codes), 1))
    found.update(codes, probabilities, np.zeros(len(codes)))
    return found.result()


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class LogisticFit:
    """``softmax(x @ coef + intercept)``: multinomial logistic regression (``logistic_regression``).

    ``coef`` is ``(p, K)`` and ``intercept`` ``(K,)``; class 0's column and intercept are 0 (the
    reference class), so for ``K == 2`` column 1 is the binary logistic regression.
    """

    coef: np.ndarray
    intercept: np.ndarray

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, K)`` of the rows of ``x``."""
        return _softmax(np.asarray(x, np.float64) @ self.coef + self.intercept)


def _require_finite(name: str, values: np.ndarray) -> None:
    bad = int((~np.isfinite(values)).sum())
    if bad:
        raise DataError(
            f"logistic regression needs finite values. Received: {bad} infinite or NaN values "
            f"among the {np.size(values)} of its {name}"
        )


class _Design:
    """The standardized rows ``[(x - mean) / scale, 1]`` in float64 chunks, never all at once.

    A float32 table of a million rows and a hundred columns stays as it is; only a chunk at a
    time is widened, so the fit needs little memory beyond its input.
    """

    def __init__(self, x: np.ndarray, mean: np.ndarray, scale: np.ndarray, chunk: int) -> None:
        self.x, self.mean, self.scale, self.chunk = x, mean, scale, chunk
        self.flat = np.flatnonzero(scale == 0)
        self.divisor = np.where(scale == 0, 1.0, scale)

    def bounds(self) -> Iterator[tuple[int, int]]:
        for lo in range(0, len(self.x), self.chunk):
            yield lo, min(lo + self.chunk, len(self.x))

    def centered(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` standardized, a fresh float64 array."""
        z = np.subtract(self.x[lo:hi], self.mean, dtype=np.float64)
        z /= self.divisor
        # A constant column is exactly 0, not its rounding residue, so the ridge holds its
        # coefficient at exactly 0.
        z[:, self.flat] = 0.0
        return z

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` standardized, with a column of ones for the intercept."""
        return np.hstack([self.centered(lo, hi), np.ones((hi - lo, 1))])


def _standardization(x: np.ndarray, w: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """The weighted mean and standard deviation of each column (0 for a constant column)."""
    mean = np.zeros(x.shape[1])
    for lo in range(0, len(x), chunk):
        mean += w[lo : lo + chunk] @ np.asarray(x[lo : lo + chunk], np.float64)
    var = np.zeros(x.shape[1])
    for lo in range(0, len(x), chunk):
        var += w[lo : lo + chunk] @ (np.asarray(x[lo : lo + chunk], np.float64) - mean) ** 2
    std = np.sqrt(var)
    return mean, np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 0.0)


def _log_softmax(free: np.ndarray) -> np.ndarray:
    """Log probabilities ``(n, K)`` from the K-1 free logits (class 0's logit is 0)."""
    logits = np.hstack([np.zeros((len(free), 1)), free])
    top = logits.max(axis=1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))


def logistic_regression(
    x: np.ndarray,
    y: np.ndarray,
    k: int,
    *,
    sample_weight: np.ndarray | None = None,
    l2: float = 1e-4,
    max_iter: int = 50,
    tol: float = 1e-8,
) -> LogisticFit:
    """Multinomial logistic regression by Newton's method with step halving, in float64.

    Minimizes the weighted mean negative log likelihood plus ``l2 / 2`` times the sum of squared
    coefficients of the standardized columns (mean 0, standard deviation 1 under the weights; the
    intercepts are not penalized). The ridge keeps separable classes and constant columns finite;
    it shrinks each standardized coefficient by about ``l2`` over the curvature of the loss in its
    direction (at the default, logits move by about ``1e-3`` on well-conditioned data).

    Softmax over K logits is over-parametrized, so class 0 is the reference: its coefficients
    and intercept are fixed at 0 and the other K-1 are fitted, which for ``K == 2`` is exactly
    the binary logistic regression. Each iteration solves a Hessian of side ``(p + 1)(K - 1)``
    built from at most ``HESSIAN_ROWS`` rows in about ``HESSIAN_ROWS (p + 1)^2 K^2`` operations,
    and passes over every row for the gradient and loss; Newton's method needs about ten
    iterations. A hundred columns and a few classes take seconds; many classes grow as K^2
    (Hessian) and K^3 (its solve).

    Args:
        x: features ``(n, p)``.
        y: class codes ``0..k-1`` (float or int), ``n`` of them.
        k: the number of classes (``>= 2``); a class with no rows gets a very low intercept.
        sample_weight: ``n`` finite weights ``>= 0`` (default all 1); weight 2 is the row twice.
        l2: the ridge on the standardized coefficients (``>= 0``; 0 is plain maximum likelihood,
            which separable data drives towards infinity until ``max_iter``).
        max_iter: the most Newton steps.
        tol: stop once the Newton decrement says the loss is within ``tol`` of its minimum.

    Returns:
        The fit, with coefficients on the original (unstandardized) columns.

    Raises:
        DataError: ``x``, ``y`` or ``sample_weight`` holds a value that is not finite.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D; received shape {x.shape}")
    if k < 2:
        raise ValueError(f"logistic regression needs k >= 2 classes; received k={k}")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0; received {l2}")
    n, p = x.shape
    y = np.asarray(y).ravel()
    _require_finite("features", x)
    _require_finite("target", y)
    codes = _codes(y, k)
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64).ravel()
    _require_finite("sample weights", w)
    if len(codes) != n or len(w) != n:
        raise ValueError(f"{n} rows of x, {len(codes)} class codes, {len(w)} sample weights")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("sample weights must be >= 0 with a positive sum")
    w = w / w.sum()  # the loss is a weighted mean, so l2 means the same whatever n is

    width = p + 1
    m = k - 1
    chunk = max(1024, 2**22 // (width * m))
    mean, scale = _standardization(x, w, chunk)
    design = _Design(x, mean, scale, chunk)
    # Above HESSIAN_ROWS rows the Hessian comes from every stride-th row (the gradient and loss
    # from every row), so an iteration costs about the same at a million rows as at
    # HESSIAN_ROWS; Newton's method with a sampled Hessian still converges to the exact minimum,
    # in a step or two more.
    stride = max(1, -(-n // HESSIAN_ROWS))
    if w[::stride].sum() <= 0:
        stride = 1
    sample = _Design(x[::stride], mean, scale, chunk)
    sample_w = w[::stride] / w[::stride].sum()
    penalized = np.ones(width)
    penalized[-1] = 0.0
    ridge = l2 * np.tile(penalized, m)  # parameter c * width + j: class c+1, column j

    def loss(theta: np.ndarray) -> float:
        total = 0.0
        for lo, hi in design.bounds():
            logp = _log_softmax(design.centered(lo, hi) @ theta[:-1] + theta[-1])
            total -= float(w[lo:hi] @ logp[np.arange(hi - lo), codes[lo:hi]])
        return total + 0.5 * float(ridge @ theta.T.ravel() ** 2)

    def gradient(theta: np.ndarray) -> np.ndarray:
        grad = np.zeros((width, m))
        for lo, hi in design.bounds():
            z = design.centered(lo, hi)
            prob = np.exp(_log_softmax(z @ theta[:-1] + theta[-1])[:, 1:])
            onehot = codes[lo:hi, None] == np.arange(1, k)
            residual = w[lo:hi, None] * (prob - onehot)
            grad[:-1] += z.T @ residual
            grad[-1] += residual.sum(axis=0)
        return grad.T.ravel() + ridge * theta.T.ravel()

    def hessian(theta: np.ndarray) -> np.ndarray:
        hess = np.zeros((m * width, m * width))
        for lo, hi in sample.bounds():
            z = sample.rows(lo, hi)
            prob = np.exp(_log_softmax(z @ theta))
            wc = sample_w[lo:hi]
            # H_ab = Z^T diag(w q_a (delta_ab - q_b)) Z over the free classes' probabilities q.
            # On the diagonal 1 - q_a is summed from the other classes, not subtracted from 1,
            # which would lose it to rounding where q_a is near 1.
            for a in range(1, k):
                rest = np.delete(prob, a, axis=1).sum(axis=1)
                for b in range(a, k):
                    factor = rest if a == b else -prob[:, b]
                    block = z.T @ (z * (wc * prob[:, a] * factor)[:, None])
                    rows, cols = (
                        slice((a - 1) * width, a * width),
                        slice((b - 1) * width, b * width),
                    )
                    hess[rows, cols] += block
                    if a != b:
                        hess[cols, rows] += block.T
        hess[np.diag_indices_from(hess)] += ridge
        return hess

    theta = np.zeros((width, m))
    # The intercepts start at the log odds of the class shares, the optimum of a model with no
    # coefficients, which saves Newton a step or two.
    share = np.bincount(codes, weights=w, minlength=k)
    share = np.maximum(share, 1e-12 * share.max())
    theta[-1] = np.log(share[1:] / share[0])
    current = loss(theta)
    for _ in range(max_iter):
        grad = gradient(theta)
        step = _newton_step(hessian(theta), grad)
        decrement = float(grad @ step)
        if not decrement > 0:  # not a descent direction (Hessian lost to rounding): gradient
            step, decrement = grad, float(grad @ grad)
        if decrement <= 0:
            break
        if decrement / 2 <= tol:
            # Within tol of the minimum: one last full step, unless rounding makes it worse;
            # halving here would only chase rounding error.
            candidate = theta - step.reshape(m, width).T
            if loss(candidate) <= current + 1e-12 * max(abs(current), 1.0):
                theta = candidate
            break
        size = 1.0
        while size > 1e-10:
            candidate = theta - size * step.reshape(m, width).T
            found = loss(candidate)
            if found <= current - 1e-4 * size * decrement:  # Armijo: a real decrease
                break
            size /= 2
        else:
            break  # no step decreases the loss: at the minimum to rounding
        theta, current = candidate, found

    beta = theta[:-1] / np.where(scale == 0, 1.0, scale)[:, None]
    coef = np.hstack([np.zeros((p, 1)), beta])
    intercept = np.concatenate([[0.0], theta[-1] - mean @ beta])
    return LogisticFit(coef=coef, intercept=intercept)


def _newton_step(hess: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """``hess^-1 grad`` by Cholesky, adding to the diagonal until the factorization succeeds."""
    jitter = 0.0
    floor = 1e-12 * max(float(np.abs(np.diag(hess)).max()), 1e-300)
    for _ in range(40):
        try:
            factor = np.linalg.cholesky(hess + jitter * np.eye(len(hess)))
        except np.linalg.LinAlgError:
            jitter = max(jitter * 10, floor)
            continue
        return np.linalg.solve(factor.T, np.linalg.solve(factor, grad))
    return grad


def majority_class(counts: Sequence[int]) -> int:
    """The most frequent class's index (ties: the lowest index)."""
    if len(counts) == 0:
        raise ValueError("majority_class needs the count of at least one class")
    return int(np.argmax(np.asarray(counts)))


def class_weights(
    setting: str | Mapping[Any, Any], counts: Sequence[int], classes: Sequence[str]
) -> dict[int, float]:
    """The weight of each class code under ``training.class_weight``.

    Args:
        setting: ``"balanced"``: ``n / (K * count)`` for each class (scikit-learn's formula, so
            every class carries the same total weight); a class with no training rows gets 0,
            a weight no row uses. Or a mapping ``{label: weight}``: the listed classes get their
            weight, the others 1.0. Labels are matched as text, so a YAML key ``1`` names the
            class ``"1"``.
        counts: the training rows of each class, in class order.
        classes: the class labels, in class order.

    Returns:
        ``{code: weight}`` for every class code ``0..K-1``.

    Raises:
        DataError: the mapping names a class the target column does not hold, or gives a weight
            that is not a finite number above 0.
        ConfigError: ``setting`` is neither ``"balanced"`` nor a mapping.
    """
    classes = [str(c) for c in classes]
    if len(counts) != len(classes):
        raise ValueError(f"{len(counts)} counts for {len(classes)} classes")
    if isinstance(setting, str) and setting == "balanced":
        n = float(sum(counts))
        k = len(classes)
        return {c: n / (k * count) if count > 0 else 0.0 for c, count in enumerate(counts)}
    if not isinstance(setting, Mapping):
        raise ConfigError(
            "training.class_weight must be 'balanced' or a mapping of class to weight. "
            f"Received: {setting!r}"
        )
    found = dict.fromkeys(range(len(classes)), 1.0)
    for label, weight in setting.items():
        if str(label) not in classes:
            raise DataError(
                f"training.class_weight names class '{label}', which the target column does not "
                f"hold. Received classes: {', '.join(classes)}"
            )
        ok = isinstance(weight, numbers.Real) and not isinstance(weight, bool)
        if not ok or not math.isfinite(weight) or weight <= 0:
            raise DataError(
                f"training.class_weight['{label}'] must be a finite number above 0. "
                f"Received: {weight!r}"
            )
        found[classes.index(str(label))] = float(weight)
    return found
