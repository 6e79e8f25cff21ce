"""Many-class scoring and baselines (builder.data.classes), checked against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_class_weight

from builder.data import classes as classes_mod
from builder.data.classes import (
    LOG_LOSS_FLOOR,
    ClassScore,
    LogisticFit,
    class_metrics,
    class_weights,
    logistic_regression,
    majority_class,
    predicted_class,
)
from builder.data.scoring import roc_auc
from builder.errors import ConfigError, DataError


def random_probabilities(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    raw = rng.gamma(0.7, size=(n, k))
    return raw / raw.sum(axis=1, keepdims=True)


def labels(k: int) -> list[str]:
    return [f"c{i}" for i in range(k)]


def softmax_data(rng, n, k, p, scale=1.0, shift=0.0):
    """Rows whose classes follow a known multinomial logistic model."""
    x = rng.normal(size=(n, p)) * scale + shift
    w = rng.normal(size=(p, k))
    logits = ((x - shift) / scale) @ w
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    y = (prob.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    return x, np.minimum(y, k - 1)


def scored(y, prob, k, sample_rows=None):
    found = ClassScore(labels(k), sample_rows=sample_rows or max(len(y), 1))
    found.update(y, prob, np.zeros(len(y)))
    return found


# ---- ClassScore -------------------------------------------------------------------------------


def test_class_score_matches_sklearn_on_four_classes():
    rng = np.random.default_rng(0)
    k = 4
    y = rng.integers(0, k, 600)
    prob = random_probabilities(rng, 600, k)
    prob[:, 3] = 0.5 * prob[:, :3].max(axis=1)  # class 3 is never predicted: precision 0/0
    prob /= prob.sum(axis=1, keepdims=True)
    assert (predicted_class(prob) != 3).all()
    found = scored(y.astype(np.float64), prob, k)
    result, details = found.result(), found.details()
    pred = prob.argmax(axis=1)

    assert set(result) == {"accuracy", "macro_f1", "auc", "log_loss"}
    assert result["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert result["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
    auc = roc_auc_score(y, prob, multi_class="ovr", average="macro")
    assert result["auc"] == pytest.approx(auc, abs=1e-12)
    assert result["log_loss"] == pytest.approx(log_loss(y, prob, labels=range(k)), rel=1e-9)

    assert details["classes"] == labels(k)
    assert details["confusion_matrix"] == confusion_matrix(y, pred, labels=range(k)).tolist()
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=range(k), zero_division=0)
    for c, label in enumerate(labels(k)):
        got = details["per_class"][label]
        assert got["precision"] == pytest.approx(p[c], abs=1e-12)
        assert got["recall"] == pytest.approx(r[c], abs=1e-12)
        assert got["f1"] == pytest.approx(f[c], abs=1e-12)
        assert got["support"] == s[c] and isinstance(got["support"], int)
    assert details["per_class"]["c3"]["precision"] == 0.0


def test_macro_f1_leaves_out_a_class_neither_present_nor_predicted():
    y = np.array([0, 0, 1, 1, 2, 2])
    prob = np.eye(4)[[0, 1, 1, 1, 2, 0]] * 0.9 + 0.025  # class 3: no row, never predicted
    result = scored(y, prob, 4).result()
    assert result["macro_f1"] == pytest.approx(f1_score(y, prob.argmax(axis=1), average="macro"))
    assert scored(y, prob, 4).details()["per_class"]["c3"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
    }


def test_one_vs_rest_auc_averages_the_classes_it_can_score():
    rng = np.random.default_rng(1)
    y = rng.choice([0, 2], 200)  # class 1 has no rows: its one-vs-rest AUC is undefined
    prob = random_probabilities(rng, 200, 3)
    expected = np.mean([roc_auc_score(y == c, prob[:, c]) for c in (0, 2)])
    assert scored(y, prob, 3).result()["auc"] == pytest.approx(expected, abs=1e-12)
    assert math.isnan(scored(np.zeros(5), random_probabilities(rng, 5, 3), 3).result()["auc"])


def test_binary_scores_agree_with_sklearn_and_the_binary_auc():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 500).astype(np.float64)
    p1 = np.clip(rng.random(500) * 0.6 + 0.4 * y, 0.0, 1.0)
    p1[p1 == 0.5] = 0.51  # a threshold at 0.5 would call it class 1, argmax calls it class 0
    result = scored(y, np.column_stack([1 - p1, p1]), 2).result()
    assert set(result) == {"accuracy", "macro_f1", "auc", "log_loss", "mse"}
    assert result["accuracy"] == pytest.approx(accuracy_score(y, p1 > 0.5), abs=1e-12)
    assert result["macro_f1"] == pytest.approx(f1_score(y, p1 > 0.5, average="macro"), abs=1e-12)
    assert result["auc"] == roc_auc(y, p1)
    assert result["auc"] == pytest.approx(roc_auc_score(y, p1), abs=1e-12)
    assert result["mse"] == pytest.approx(brier_score_loss(y, p1), abs=1e-12)


def test_blocks_accumulate_to_the_whole_and_the_auc_sample_is_the_smallest_keys():
    rng = np.random.default_rng(3)
    n, k, sample = 1000, 3, 300
    y = rng.integers(0, k, n)
    prob = random_probabilities(rng, n, k)
    keys = rng.random(n)
    whole = ClassScore(labels(k), sample_rows=sample)
    whole.update(y, prob, keys)
    blocks = ClassScore(labels(k), sample_rows=sample)
    cuts = [0, 7, 7, 250, 251, 640, n]  # one empty block, one of a single row
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        blocks.update(y[lo:hi].astype(np.float64), prob[lo:hi], keys[lo:hi])
    assert blocks.result() == whole.result()
    assert blocks.details() == whole.details()
    kept = np.argsort(keys)[:sample]
    auc = roc_auc_score(y[kept], prob[kept], multi_class="ovr")
    assert blocks.result()["auc"] == pytest.approx(auc, abs=1e-12)
    # accuracy and log loss are exact over every row, not the sample
    full = class_metrics(y, prob, labels(k))
    assert blocks.result()["accuracy"] == full["accuracy"]
    assert blocks.result()["log_loss"] == pytest.approx(full["log_loss"], rel=1e-12)
    assert full["auc"] != blocks.result()["auc"]


def test_log_loss_clips_a_zero_probability():
    prob = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    result = scored(np.array([1, 1]), prob, 3).result()
    assert result["log_loss"] == pytest.approx(-math.log(LOG_LOSS_FLOOR) / 2)


def test_argmax_ties_go_to_the_lowest_class():
    prob = np.array([[0.5, 0.5], [0.2, 0.4], [0.4, 0.4]])
    prob = np.column_stack([prob, 1 - prob.sum(axis=1)])
    assert predicted_class(prob).tolist() == [0, 1, 0]


def test_empty_score_is_nan_and_bad_input_is_refused():
    result = ClassScore(labels(2)).result()
    assert set(result) == {"accuracy", "macro_f1", "auc", "log_loss", "mse"}
    assert all(math.isnan(v) for v in result.values())
    found = ClassScore(labels(3))
    with pytest.raises(ValueError, match="0..2"):
        found.update(np.array([0.0, 3.0]), np.full((2, 3), 1 / 3), np.zeros(2))
    with pytest.raises(ValueError, match="whole numbers"):
        found.update(np.array([0.5]), np.full((1, 3), 1 / 3), np.zeros(1))
    with pytest.raises(ValueError, match="shape"):
        found.update(np.array([0, 1]), np.full((2, 2), 0.5), np.zeros(2))


# ---- logistic_regression -------------------------------------------------------------------


def sklearn_fit(x, y, c=1e8):
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000, tol=1e-12))
    return model.fit(x, y)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_logistic_regression_matches_sklearn(k):
    rng = np.random.default_rng(10 + k)
    # columns on very different scales and far from 0: the fit standardizes internally
    x, y = softmax_data(rng, 1500, k, 4, scale=np.array([1, 10, 0.1, 3]), shift=[0, 100, 5, -2])
    fit = logistic_regression(x, y, k, l2=1e-10)
    assert isinstance(fit, LogisticFit)
    assert fit.coef.shape == (4, k) and fit.intercept.shape == (k,)
    assert not fit.coef[:, 0].any() and fit.intercept[0] == 0.0  # class 0 is the reference
    prob = fit.predict_proba(x)
    assert prob.shape == (1500, k)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(prob, sklearn_fit(x, y).predict_proba(x), atol=1e-4)
    # the default ridge is small: the same probabilities to about 1e-2
    np.testing.assert_allclose(logistic_regression(x, y, k).predict_proba(x), prob, atol=1e-2)


def test_binary_fit_is_the_binary_logistic_regression_with_its_ridge():
    rng = np.random.default_rng(4)
    x, y = softmax_data(rng, 800, 2, 3, scale=np.array([2.0, 0.5, 7.0]), shift=3.0)
    l2 = 1e-2  # large enough to matter: sklearn's C = 1 / (l2 n) on standardized columns
    fit = logistic_regression(x, y.astype(np.float64), 2, l2=l2)
    sk = sklearn_fit(x, y, c=1 / (l2 * len(y)))
    scaler, model = sk[0], sk[1]
    np.testing.assert_allclose(fit.coef[:, 1] * scaler.scale_, model.coef_[0], rtol=1e-6)
    np.testing.assert_allclose(fit.predict_proba(x)[:, 1], sk.predict_proba(x)[:, 1], atol=1e-8)


def test_separable_classes_stay_finite():
    x = np.linspace(-3, 3, 60)[:, None] * np.array([[1.0, 2.0]])
    y = np.digitize(x[:, 0], [-1.0, 1.0])  # three classes in order along the line
    for k, codes in ((2, (y > 0).astype(int)), (3, y)):
        fit = logistic_regression(x, codes, k)
        prob = fit.predict_proba(x)
        assert np.isfinite(fit.coef).all() and np.isfinite(fit.intercept).all()
        assert (predicted_class(prob) == codes).all()
        assert prob[np.arange(60), codes].min() > 0.5


def test_a_constant_column_gets_no_coefficient():
    rng = np.random.default_rng(5)
    x, y = softmax_data(rng, 400, 3, 2)
    wide = np.column_stack([x[:, 0], np.full(400, 1234.5), x[:, 1]])
    fit = logistic_regression(wide, y, 3)
    assert np.isfinite(fit.coef).all()
    assert not fit.coef[1].any()
    np.testing.assert_allclose(
        fit.predict_proba(wide), logistic_regression(x, y, 3).predict_proba(x), atol=1e-10
    )


def test_sample_weights_equal_duplicated_rows():
    rng = np.random.default_rng(6)
    x, y = softmax_data(rng, 300, 3, 3, shift=5.0)
    weight = rng.integers(0, 4, 300)  # 0 leaves the row out
    fit = logistic_regression(x, y, 3, sample_weight=weight.astype(np.float64))
    repeated = logistic_regression(np.repeat(x, weight, axis=0), np.repeat(y, weight), 3)
    np.testing.assert_allclose(fit.coef, repeated.coef, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(fit.intercept, repeated.intercept, rtol=1e-7, atol=1e-9)


def test_a_class_without_rows_gets_a_vanishing_probability():
    rng = np.random.default_rng(7)
    x, y = softmax_data(rng, 300, 2, 2)
    fit = logistic_regression(x, y * 2, 3)  # classes 0 and 2; 1 has no rows
    prob = fit.predict_proba(x)
    assert np.isfinite(fit.intercept).all()
    assert prob[:, 1].max() < 1e-6
    np.testing.assert_allclose(
        prob[:, 2], logistic_regression(x, y, 2).predict_proba(x)[:, 1], atol=1e-5
    )


def test_newton_steps_are_halved_rather_than_diverging():
    # Outliers far out and an almost separating column: a full Newton step from the start
    # overshoots; the fit must still end below the loss of knowing only the class shares.
    rng = np.random.default_rng(8)
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] + 0.05 * rng.normal(size=400) > 0).astype(int)
    x[:5, 1] = 1e4
    y[:5] = 1 - y[:5]
    fit = logistic_regression(x, y, 2, l2=0.0, max_iter=100)
    prob = fit.predict_proba(x)
    assert np.isfinite(prob).all()
    share = np.bincount(y) / len(y)
    assert log_loss(y, prob) < log_loss(y, np.tile(share, (400, 1))) / 3


def test_an_overshooting_step_is_halved_until_the_loss_falls(monkeypatch):
    # Newton's method from the class shares rarely overshoots on real data, so the step is made
    # to: 300 times the Newton step. Halving must bring every step back to a decrease.
    rng = np.random.default_rng(13)
    x, y = softmax_data(rng, 300, 3, 2)
    exact = logistic_regression(x, y, 3)
    newton = classes_mod._newton_step
    monkeypatch.setattr(classes_mod, "_newton_step", lambda h, g: 300.0 * newton(h, g))
    overshot = logistic_regression(x, y, 3, tol=1e-14)  # its decrement is 300 times too
    np.testing.assert_allclose(overshot.predict_proba(x), exact.predict_proba(x), atol=1e-6)


def test_sampled_hessian_converges_to_the_exact_fit(monkeypatch):
    rng = np.random.default_rng(9)
    x, y = softmax_data(rng, 4000, 3, 3)
    exact = logistic_regression(x, y, 3)
    monkeypatch.setattr(classes_mod, "HESSIAN_ROWS", 500)
    sampled = logistic_regression(x, y, 3, tol=1e-12)
    np.testing.assert_allclose(sampled.predict_proba(x), exact.predict_proba(x), atol=1e-6)


def test_float32_input_is_fitted_in_float64():
    rng = np.random.default_rng(11)
    x, y = softmax_data(rng, 500, 3, 2)
    x = x.astype(np.float32)
    np.testing.assert_allclose(
        logistic_regression(x, y, 3).coef,
        logistic_regression(x.astype(np.float64), y, 3).coef,
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("features", lambda x, y, w: (np.where(x == x[3, 1], np.nan, x), y, w)),
        ("features", lambda x, y, w: (np.where(x == x[0, 0], np.inf, x), y, w)),
        ("target", lambda x, y, w: (x, np.where(np.arange(len(y)) == 2, np.nan, y), w)),
        ("sample weights", lambda x, y, w: (x, y, np.where(w == w[0], np.inf, w))),
    ],
)
def test_non_finite_input_is_a_data_error(what, change):
    rng = np.random.default_rng(12)
    x, y = softmax_data(rng, 20, 2, 2)
    x, y, w = change(x, y.astype(np.float64), np.arange(1.0, 21.0))
    with pytest.raises(DataError, match=f"logistic regression needs finite values.*its {what}"):
        logistic_regression(x, y, 2, sample_weight=w)


# ---- majority class and class weights ------------------------------------------------------


def test_majority_class_takes_the_lowest_of_ties():
    assert majority_class([3, 5, 5]) == 1
    assert majority_class([7, 2, 7]) == 0
    assert majority_class([0, 0, 1]) == 2


def test_balanced_weights_follow_sklearn():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    counts = np.bincount(y).tolist()
    found = class_weights("balanced", counts, ["a", "b", "c"])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    assert list(found) == [0, 1, 2]
    np.testing.assert_allclose(list(found.values()), expected, rtol=1e-12)
    assert class_weights("balanced", [1, 0, 2], ["a", "b", "c"]) == {0: 1.0, 1: 0.0, 2: 0.5}


def test_mapped_weights_default_to_one():
    classes = ["cat", "dog", "1"]
    assert class_weights({"dog": 3, 1: 0.5}, [5, 5, 5], classes) == {0: 1.0, 1: 3.0, 2: 0.5}
    assert class_weights({}, [1, 1], ["a", "b"]) == {0: 1.0, 1: 1.0}
    assert class_weights({"a": np.float64(2.5)}, [1, 1], ["a", "b"])[0] == 2.5


def test_a_weight_for_an_unknown_class_is_refused():
    with pytest.raises(DataError) as err:
        class_weights({"x": 2.0}, [1, 1], ["a", "b"])
    assert str(err.value) == (
        "training.class_weight names class 'x', which the target column does not hold. "
        "Received classes: a, b"
    )


@pytest.mark.parametrize("weight", [0, -1.0, math.inf, math.nan, "2", True, None])
def test_a_weight_must_be_finite_and_positive(weight):
    with pytest.raises(DataError, match=r"training.class_weight\['b'\] must be a finite number"):
        class_weights({"b": weight}, [1, 1], ["a", "b"])


def test_a_setting_of_the_wrong_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="'balanced' or a mapping"):
        class_weights("even", [1, 1], ["a", "b"])
