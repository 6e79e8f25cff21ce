"""Tests of the classification plots of builder.plotting: confusion matrix and class confidence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from builder import plotting
from builder.errors import DataError, RunError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    """Checks that ``path`` is a readable PNG and that no temporary file is left beside it."""
    import matplotlib.image

    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 0 and image.shape[1] > 0
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def classified(k: int, n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True codes, softmax probabilities leaning towards the true class, and their argmax."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y_true] += 1.5
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y_true, probabilities, probabilities.argmax(axis=1)


def labels(k: int) -> list[str]:
    return [f"class {i}" for i in range(k)]


def drawn_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


# --------------------------------------------------------------------------------------------
# confusion_counts
# --------------------------------------------------------------------------------------------


def test_confusion_counts_counts_each_pair() -> None:
    y_true = [0, 0, 1, 2, 2, 2]
    y_pred = [0, 1, 1, 2, 0, 2]
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_array_equal(plotting.confusion_counts(y_true, y_pred, 3), expected)


def test_confusion_counts_match_a_loop_and_keep_unseen_classes() -> None:
    rng = np.random.default_rng(3)
    y_true, y_pred = rng.integers(0, 6, 500), rng.integers(0, 6, 500)
    expected = np.zeros((7, 7), dtype=int)  # class 6 never occurs: a zero row and column
    for t, p in zip(y_true, y_pred, strict=True):
        expected[t, p] += 1
    counts = plotting.confusion_counts(y_true, y_pred.astype(float).reshape(-1, 1), 7)
    np.testing.assert_array_equal(counts, expected)
    assert counts.shape == (7, 7) and counts.sum() == 500


def test_confusion_counts_of_no_rows_is_zeros() -> None:
    np.testing.assert_array_equal(plotting.confusion_counts([], [], 2), np.zeros((2, 2)))


@pytest.mark.parametrize(
    ("y_true", "y_pred", "k", "match"),
    [
        ([0, 1], [0], 2, "same length"),
        ([0, 2], [0, 1], 2, r"codes 0\.\.1.*Received: 2 \(1 codes out of range\)"),
        ([0, -1], [0, 1], 2, "Received: -1"),
        ([0, 1], [0, 0.5], 2, "integer class codes.*Received: 0.5"),
        (["a", "b"], [0, 1], 2, "not labels"),
        (np.zeros((2, 2)), [0, 1], 2, r"1-D.*\(2, 2\)"),
        ([0], [0], 0, "positive integer"),
    ],
)
def test_confusion_counts_rejects_bad_codes(y_true, y_pred, k, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        plotting.confusion_counts(y_true, y_pred, k)


# --------------------------------------------------------------------------------------------
# plot_confusion
# --------------------------------------------------------------------------------------------


def test_confusion_figure_draws_the_true_counts_and_row_shares() -> None:
    y_true = np.array([0] * 50 + [1] * 30 + [2] * 20)
    y_pred = np.array([0] * 41 + [1] * 9 + [1] * 30 + [0] * 5 + [2] * 15)
    fig = plotting._confusion_figure(y_true, y_pred, ["a", "b", "c"], title=None, target="kind")
    texts = drawn_texts(fig)
    counts = plotting.confusion_counts(y_true, y_pred, 3)
    assert texts == [
        f"{counts[i, j]}\n{counts[i, j] / counts[i].sum():.0%}" for i in range(3) for j in range(3)
    ]
    assert texts[:3] == ["41\n82%", "9\n18%", "0\n0%"]
    ax = fig.axes[0]
    assert ax.get_ylabel() == "true kind" and ax.get_xlabel() == "predicted"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert "accuracy = 0.8600 (86 of 100 rows correct)" in ax.get_title()


def test_confusion_figure_a_class_without_rows_has_no_share() -> None:
    fig = plotting._confusion_figure([0, 0, 1], [0, 2, 1], labels(3), title="Mine", target=None)
    texts = drawn_texts(fig)
    assert texts[6:] == ["0", "0", "0"]  # the row of class 2: no true row, so no percentage
    assert fig.axes[0].get_ylabel() == "true class"
    assert fig.axes[0].get_title().startswith("Mine\naccuracy = 0.6667")


def test_plot_confusion_writes_png(tmp_path: Path) -> None:
    y_true, _, y_pred = classified(5)
    target = tmp_path / "plots" / "confusion.png"  # the folder is created
    path = plotting.plot_confusion(y_true, y_pred, labels(5), target, target="$species")
    assert path == target
    assert_png(path)


def test_plot_confusion_two_classes(tmp_path: Path) -> None:
    y_true, _, y_pred = classified(2)
    assert_png(plotting.plot_confusion(y_true, y_pred, ["no", "yes"], tmp_path / "c.png"))


def test_plot_confusion_with_many_classes_prints_counts_only_or_nothing(tmp_path: Path) -> None:
    y_true, _, y_pred = classified(30, n=900)
    fig = plotting._confusion_figure(y_true, y_pred, labels(30), title=None, target=None)
    texts = drawn_texts(fig)
    counts = plotting.confusion_counts(y_true, y_pred, 30)
    assert texts == [str(c) for c in counts.ravel()]
    assert_png(plotting.plot_confusion(y_true, y_pred, labels(30), tmp_path / "c30.png"))

    rng = np.random.default_rng(0)
    many = rng.integers(0, 150, 2000)
    fig = plotting._confusion_figure(many, many[::-1], labels(150), title=None, target=None)
    assert drawn_texts(fig) == []
    assert "too many to print counts" in fig.axes[0].get_title()


def test_plot_confusion_never_refuses_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "confusion.png"
    path.write_bytes(b"earlier")
    with pytest.raises(RunError, match="already exists"):
        plotting.plot_confusion([0, 1], [0, 1], ["a", "b"], path, overwrite="never")
    assert path.read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png"]
    assert_png(plotting.plot_confusion([0, 1], [0, 1], ["a", "b"], path))  # "file" replaces it
    fresh = tmp_path / "fresh.png"
    assert_png(plotting.plot_confusion([0, 1], [0, 1], ["a", "b"], fresh, overwrite="never"))


@pytest.mark.parametrize(
    ("classes", "match"),
    [
        (["only"], "at least 2 classes"),
        ("ab", "list of class labels"),
        (["a", "b"], r"codes 0\.\.1"),  # three codes used, two labels
    ],
)
def test_plot_confusion_rejects_classes_that_do_not_fit(
    tmp_path: Path, classes, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        plotting.plot_confusion([0, 1, 2], [0, 1, 2], classes, tmp_path / "c.png")
    assert list(tmp_path.iterdir()) == []


def test_plot_confusion_rejects_an_unknown_overwrite(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="overwrite must be one of"):
        plotting.plot_confusion([0, 1], [0, 1], ["a", "b"], tmp_path / "c.png", overwrite="any")


def test_plot_confusion_without_rows_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no test rows to plot"):
        plotting.plot_confusion([], [], ["a", "b"], tmp_path / "c.png")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# plot_class_probabilities
# --------------------------------------------------------------------------------------------


def test_plot_class_probabilities_two_classes_marks_the_threshold(tmp_path: Path) -> None:
    y_true, probabilities, _ = classified(2)
    fig = plotting._probabilities_figure(
        y_true, probabilities, ["no", "yes"], title=None, target="churn"
    )
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    n_no, n_yes = int(np.sum(y_true == 0)), int(np.sum(y_true == 1))
    assert legend == [f"true no (n = {n_no})", f"true yes (n = {n_yes})", "threshold 0.5"]
    assert [line.get_xdata()[0] for line in ax.get_lines()] == [0.5]
    # Each class is drawn as shares of its own rows (a rare class stays as tall as a common one).
    bins = np.linspace(0.0, 1.0, 21)
    for code, patch in enumerate(ax.patches):
        rows = probabilities[y_true == code, 1]
        shares = np.histogram(rows, bins)[0] / rows.size
        assert patch.get_path().vertices[:, 1].max() == pytest.approx(shares.max())
    accuracy = np.mean((probabilities[:, 1] >= 0.5) == (y_true == 1))
    assert f"accuracy at 0.5 = {accuracy:.4f}" in ax.get_title()
    assert ax.get_xlabel() == "predicted p(yes)"
    assert_png(
        plotting.plot_class_probabilities(y_true, probabilities, ["no", "yes"], tmp_path / "p.png")
    )


def test_plot_class_probabilities_takes_a_sigmoid_column_for_two_classes(tmp_path: Path) -> None:
    y_true, probabilities, _ = classified(2)
    column = probabilities[:, 1:]
    a = plotting._probabilities_figure(y_true, column, ["n", "y"], title=None, target=None)
    b = plotting._probabilities_figure(y_true, probabilities, ["n", "y"], title=None, target=None)
    assert a.axes[0].get_title() == b.axes[0].get_title()
    path = plotting.plot_class_probabilities(y_true, column.ravel(), ["n", "y"], tmp_path / "s.png")
    assert_png(path)


def test_plot_class_probabilities_five_classes_box_each_true_class(tmp_path: Path) -> None:
    y_true, probabilities, _ = classified(5)
    y_true[y_true == 3] = 4  # class 3 has no row: no box, a note instead
    fig = plotting._probabilities_figure(
        y_true, probabilities, labels(5), title="Confidence", target="species"
    )
    ax = fig.axes[0]
    sizes = np.bincount(y_true, minlength=5)
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == [f"class {i} ({sizes[i]})" for i in range(5)]
    assert drawn_texts(fig) == ["no rows"]
    own = probabilities[np.arange(len(y_true)), y_true]
    medians = sorted(
        line.get_ydata()[0] for line in ax.get_lines() if line.get_color() == plotting._ORANGE
    )
    expected = sorted(np.median(own[y_true == c]) for c in (0, 1, 2, 4))
    np.testing.assert_allclose(medians, expected)
    assert ax.get_title().startswith("Confidence\nmedian p(true class) = ")
    path = tmp_path / "p5.png"
    assert_png(plotting.plot_class_probabilities(y_true, probabilities, labels(5), path))


@pytest.mark.parametrize("k", [3, 20, 30])
def test_plot_class_probabilities_many_classes_do_not_crash(tmp_path: Path, k: int) -> None:
    y_true, probabilities, _ = classified(k, n=600)
    path = tmp_path / f"p{k}.png"
    assert_png(plotting.plot_class_probabilities(y_true, probabilities, labels(k), path))


def test_plot_class_probabilities_leaves_out_non_finite_rows(tmp_path: Path) -> None:
    y_true, probabilities, _ = classified(3, n=50)
    probabilities[:4] = np.nan
    fig = plotting._probabilities_figure(y_true, probabilities, labels(3), title=None, target=None)
    assert "n = 46    (4 non-finite left out)" in fig.axes[0].get_title()
    probabilities[:] = np.nan
    with pytest.raises(RunError, match="no finite row"):
        plotting.plot_class_probabilities(y_true, probabilities, labels(3), tmp_path / "p.png")


@pytest.mark.parametrize(
    ("y_true", "probabilities", "classes", "match"),
    [
        ([0, 1], np.full((2, 3), 1 / 3), labels(2), r"shape \(n, 2\).*\(2, 3\)"),
        ([0, 1], np.full((3, 2), 0.5), labels(2), "same number of rows. Received: 2 and 3"),
        ([0, 3], np.full((2, 3), 1 / 3), labels(3), r"codes 0\.\.2"),
        ([0, 1], np.full(2, 0.5), labels(3), r"shape \(n, 3\)"),
        ([0, 1], [[2.0, -1.0], [0.5, 0.5]], labels(2), r"in \[0, 1\].*logits"),
        ([0, 1], np.full((2, 1), 0.5), ["one"], "at least 2 classes"),
    ],
)
def test_plot_class_probabilities_rejects_shapes_that_do_not_fit(
    tmp_path: Path, y_true, probabilities, classes, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        plotting.plot_class_probabilities(y_true, probabilities, classes, tmp_path / "p.png")
    assert list(tmp_path.iterdir()) == []


def test_plot_class_probabilities_without_rows_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no test rows to plot"):
        plotting.plot_class_probabilities([], np.zeros((0, 3)), labels(3), tmp_path / "p.png")


def test_plot_class_probabilities_never_refuses_an_existing_file(tmp_path: Path) -> None:
    y_true, probabilities, _ = classified(3, n=30)
    path = tmp_path / "p.png"
    path.write_bytes(b"earlier")
    with pytest.raises(RunError, match="already exists"):
        plotting.plot_class_probabilities(y_true, probabilities, labels(3), path, overwrite="never")
    assert path.read_bytes() == b"earlier"
    assert_png(plotting.plot_class_probabilities(y_true, probabilities, labels(3), path))
