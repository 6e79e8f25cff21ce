"""Tests of builder.plotting: each function writes a real PNG, atomically, from numpy data."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from builder import plotting
from builder.data.scoring import regression_metrics
from builder.errors import BuilderError, RunError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    """Checks that ``path`` is a readable PNG and that no temporary file is left beside it."""
    import matplotlib.image

    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 0 and image.shape[1] > 0
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def history_frame(epochs: int = 12, validation: bool = True) -> pd.DataFrame:
    epoch = np.arange(epochs)
    data = {"epoch": epoch, "loss": np.exp(-epoch / 4) + 0.1, "mae": np.exp(-epoch / 5) + 0.2}
    if validation:
        data["val_loss"] = np.exp(-epoch / 4) + 0.15
        data["val_mae"] = np.exp(-epoch / 5) + 0.25
    return pd.DataFrame(data)


def dense_layers(sizes: list[int], seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(a, b)), rng.normal(size=b)) for a, b in itertools.pairwise(sizes)]


# --------------------------------------------------------------------------------------------
# Module import
# --------------------------------------------------------------------------------------------


def test_import_does_not_load_matplotlib_or_tensorflow() -> None:
    code = (
        "import sys, builder.plotting; "
        "print(sorted(m for m in ('matplotlib', 'tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# plot_history
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("validation", [True, False])
def test_plot_history_writes_png(tmp_path: Path, validation: bool) -> None:
    path = tmp_path / "history.png"
    result = plotting.plot_history(history_frame(validation=validation), path)
    assert result == path
    assert_png(path)


def test_plot_history_without_epoch_column_and_nonpositive_loss(tmp_path: Path) -> None:
    history = pd.DataFrame({"loss": [1.0, 0.0, -0.5], "val_loss": [np.nan, 0.3, 0.2]})
    assert_png(plotting.plot_history(history, str(tmp_path / "h.png")))


def test_plot_history_groups_metrics_loss_first() -> None:
    history = pd.DataFrame(
        {"epoch": [0], "mae": [1.0], "val_mae": [1.0], "val_loss": [1.0], "loss": [1.0]}
    )
    assert plotting._history_metrics(history) == [
        ("loss", "loss", "val_loss"),
        ("mae", "mae", "val_mae"),
    ]


def test_plot_history_rejects_empty_history(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="at least one row"):
        plotting.plot_history(pd.DataFrame({"epoch": [], "loss": []}), tmp_path / "h.png")
    with pytest.raises(RunError, match="numeric metric"):
        plotting.plot_history(pd.DataFrame({"epoch": [0, 1]}), tmp_path / "h.png")
    assert list(tmp_path.iterdir()) == []


def test_plot_overwrites_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "plots" / "deep" / "history.png"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"stale")
    plotting.plot_history(history_frame(epochs=1), path)
    assert_png(path)
    assert [p.name for p in path.parent.iterdir()] == ["history.png"]


def test_unwritable_path_raises_run_error_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "a_directory.png"
    target.mkdir()
    with pytest.raises(RunError, match="plot .* must name a file. Received: a directory"):
        plotting.plot_history(history_frame(), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_directory.png"]


def test_a_file_where_the_plot_folder_goes_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("a file\n")
    with pytest.raises(RunError, match="cannot write the plot .*: its folder cannot be made"):
        plotting.plot_activations(tmp_path / "f" / "activations.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


# --------------------------------------------------------------------------------------------
# plot_predictions
# --------------------------------------------------------------------------------------------


def test_plot_predictions_writes_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y_true = rng.normal(size=200)
    y_pred = (y_true + rng.normal(scale=0.2, size=200)).reshape(-1, 1)
    target = tmp_path / "missing" / "dir" / "pred.png"  # parent directories are created
    path = plotting.plot_predictions(y_true, y_pred, target, target="price")
    assert path == target
    assert_png(path)


def test_plot_predictions_handles_constant_and_nonfinite_values(tmp_path: Path) -> None:
    y_true = np.array([2.0, 2.0, 2.0, np.nan])
    y_pred = np.array([2.0, 2.5, np.inf, 1.0])
    assert_png(plotting.plot_predictions(y_true, y_pred, tmp_path / "p.png", target="$cost"))


def test_plot_predictions_all_nan_raises_run_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no finite value"):
        plotting.plot_predictions([1.0, 2.0], [np.nan, np.nan], tmp_path / "p.png")


def test_plot_predictions_rejects_mismatched_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="same length"):
        plotting.plot_predictions([1.0, 2.0], [1.0], tmp_path / "p.png")
    with pytest.raises(ValueError, match="once per output"):
        plotting.plot_predictions(np.zeros((3, 2)), np.zeros((3, 2)), tmp_path / "p.png")


def test_r_squared_matches_definition() -> None:
    rng = np.random.default_rng(2)
    y_true = rng.normal(size=50)
    y_pred = y_true + rng.normal(scale=0.5, size=50)
    expected = 1 - np.sum((y_true - y_pred) ** 2) / np.sum((y_true - y_true.mean()) ** 2)
    assert regression_metrics(y_true, y_pred)["r2"] == pytest.approx(expected)
    assert regression_metrics(y_true, y_true)["r2"] == 1.0
    assert np.isnan(regression_metrics(np.ones(3), np.zeros(3))["r2"])


# --------------------------------------------------------------------------------------------
# Activation functions
# --------------------------------------------------------------------------------------------


def test_activation_curves_match_numpy_references() -> None:
    x = np.array([-800.0, -3.0, -0.5, 0.0, 0.5, 3.0, 800.0])
    with np.errstate(over="ignore"):
        sigmoid_reference = 1.0 / (1.0 + np.exp(-x))
    curves = plotting.activation_curves(x)
    assert list(curves) == ["x", "threshold", "sigmoid", "relu", "tanh"]
    np.testing.assert_array_equal(curves["x"], x)
    np.testing.assert_array_equal(curves["threshold"], [0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_allclose(curves["sigmoid"], sigmoid_reference, rtol=1e-12, atol=1e-300)
    np.testing.assert_array_equal(curves["relu"], np.maximum(x, 0.0))
    np.testing.assert_allclose(curves["tanh"], np.tanh(x))
    assert curves["sigmoid"][3] == 0.5


def test_activation_threshold_at_threshold_is_one() -> None:
    curves = plotting.activation_curves([0.99, 1.0, 1.01], threshold=1.0)
    np.testing.assert_array_equal(curves["threshold"], [0.0, 1.0, 1.0])


def test_activation_curves_default_grid() -> None:
    curves = plotting.activation_curves()
    assert curves["x"][0] == -6.0 and curves["x"][-1] == 6.0
    assert all(values.shape == curves["x"].shape for values in curves.values())
    assert set(plotting.ACTIVATION_FORMULAS) == {"threshold", "sigmoid", "relu", "tanh"}


def test_plot_activations_writes_png(tmp_path: Path) -> None:
    # A threshold away from 0 also exercises the widened x range of the step panel.
    path = plotting.plot_activations(tmp_path / "activations.png", threshold=7.5)
    assert path == tmp_path / "activations.png"
    assert_png(path)


def test_plot_activations_rejects_non_finite_threshold(tmp_path: Path) -> None:
    with pytest.raises(BuilderError, match="finite"):
        plotting.plot_activations(tmp_path / "a.png", threshold=float("nan"))


# --------------------------------------------------------------------------------------------
# plot_network
# --------------------------------------------------------------------------------------------


def test_plot_network_writes_png(tmp_path: Path) -> None:
    layers = dense_layers([4, 5, 3, 1])
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    path = plotting.plot_network(layers, tmp_path / "net.png", names, ["species"])
    assert path == tmp_path / "net.png"
    assert_png(path)


def test_plot_network_at_the_limit_without_biases(tmp_path: Path) -> None:
    layers = [(kernel, None) for kernel, _ in dense_layers([3, 32, 2])]
    layers[0][0][:] = 0.0  # an all-zero layer must not divide by zero
    path = plotting.plot_network(layers, tmp_path / "net.png", ["a", "b", "$c"], ["y1", "y2"])
    assert_png(path)


def test_plot_network_single_layer(tmp_path: Path) -> None:
    layers = [(np.array([[0.5], [-1.0]]), np.array([0.1]))]
    assert_png(plotting.plot_network(layers, tmp_path / "n.png", ["x1", "x2"], ["y"]))


def test_plot_network_too_large_raises_run_error(tmp_path: Path) -> None:
    layers = dense_layers([4, 64, 1])
    with pytest.raises(RunError) as info:
        plotting.plot_network(layers, tmp_path / "net.png", list("abcd"), ["y"])
    message = str(info.value)
    assert "64 neurons" in message
    assert "at most 32" in message
    assert "[4, 64, 1]" in message
    assert list(tmp_path.iterdir()) == []


def test_plot_network_limit_applies_to_inputs_and_is_configurable(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"at most 4 neurons.*\[5, 2, 1\]"):
        plotting.plot_network(
            dense_layers([5, 2, 1]), tmp_path / "n.png", list("abcde"), ["y"], max_neurons=4
        )


def test_plot_network_nan_weights_raise_run_error(tmp_path: Path) -> None:
    layers = dense_layers([2, 3, 1])
    layers[1][0][0, 0] = np.nan
    with pytest.raises(RunError, match="NaN"):
        plotting.plot_network(layers, tmp_path / "n.png", ["a", "b"], ["y"])


@pytest.mark.parametrize(
    ("layers", "inputs", "outputs", "match"),
    [
        ([], ["a"], ["y"], "at least one"),
        ([(np.zeros(3), None)], ["a"], ["y"], "2-D"),
        ([(np.zeros((2, 3)), None), (np.zeros((4, 1)), None)], ["a", "b"], ["y"], "3 rows"),
        ([(np.zeros((2, 3)), np.zeros(2))], ["a", "b"], ["y", "z", "w"], "bias"),
        ([(np.zeros((2, 1)), None)], ["a"], ["y"], "input_names"),
        ([(np.zeros((2, 1)), None)], ["a", "b"], ["y", "z"], "output_names"),
    ],
)
def test_plot_network_rejects_shapes_that_do_not_chain(
    tmp_path: Path, layers: list, inputs: list[str], outputs: list[str], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        plotting.plot_network(layers, tmp_path / "n.png", inputs, outputs)


# --------------------------------------------------------------------------------------------
# The kept epoch and the log axis's labels (issue 10)
# --------------------------------------------------------------------------------------------


def drawn_history(monkeypatch, history: pd.DataFrame, path: Path, **kwargs) -> dict:
    """Plots ``history`` and returns what its loss panel shows: legend and y tick labels."""
    seen: dict = {}
    save = plotting._save

    def capture(fig, target, **save_kwargs):
        fig.canvas.draw()
        loss = fig.axes[0]
        low, high = loss.get_ylim()
        seen["legend"] = [t.get_text() for t in loss.get_legend().get_texts()]
        seen["yticks"] = [
            t.get_text()
            for t, value in zip(loss.get_yticklabels(), loss.get_yticks(), strict=True)
            if t.get_text() and low <= value <= high
        ]
        return save(fig, target, **save_kwargs)

    monkeypatch.setattr(plotting, "_save", capture)
    assert_png(plotting.plot_history(history, path, **kwargs))
    return seen


def test_plot_history_marks_the_restored_epoch(monkeypatch, tmp_path: Path) -> None:
    frame = history_frame(epochs=12)  # epochs numbered 0..11 in the frame
    seen = drawn_history(monkeypatch, frame, tmp_path / "h.png", restored_epoch=7)
    marks = [label for label in seen["legend"] if "weights" in label]
    assert marks == [f"restored weights: epoch 7 (val_loss = {frame['val_loss'][7]:.4g})"]


def test_plot_history_marks_the_last_epoch_when_no_weights_were_restored(
    monkeypatch, tmp_path: Path
) -> None:
    frame = history_frame(epochs=12)
    frame.loc[5, "val_loss"] = 0.01  # the lowest val_loss, but its weights were not kept
    seen = drawn_history(monkeypatch, frame, tmp_path / "h.png")
    marks = [label for label in seen["legend"] if "weights" in label or "best" in label]
    assert marks == [f"kept weights: last epoch, 11 (val_loss = {frame['val_loss'][11]:.4g})"]


def test_plot_history_rejects_a_restored_epoch_it_does_not_have(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="restored_epoch must be one of the history's epochs"):
        plotting.plot_history(history_frame(epochs=5), tmp_path / "h.png", restored_epoch=40)


def test_plot_history_log_axis_has_readable_labels(monkeypatch, tmp_path: Path) -> None:
    # A salary network's mse: 2.4e8 down to 4.2e7, less than a decade.
    loss = np.geomspace(2.4e8, 4.2e7, 71)
    frame = pd.DataFrame({"epoch": np.arange(1, 72), "loss": loss, "val_loss": loss * 1.05})
    seen = drawn_history(monkeypatch, frame, tmp_path / "h.png")
    assert len(seen["yticks"]) >= 4, seen["yticks"]
    assert {"5e+07", "1e+08", "2e+08"} <= set(seen["yticks"])


def test_a_large_network_leaves_out_its_smallest_weights_and_says_so(tmp_path, monkeypatch):
    """Above MANY_WEIGHTS lines, weights under HIDDEN_BELOW of the largest are not drawn, and
    the legend counts them; the input weights' scale is stated."""
    from matplotlib.collections import LineCollection

    rng = np.random.default_rng(0)
    first = rng.uniform(-1.0, 1.0, size=(30, 30))
    first[0, :5] = 100.0  # five wide lines; every other weight is under 2% of them
    layers = [(first, np.zeros(30)), (rng.uniform(-1.0, 1.0, size=(30, 1)), np.zeros(1))]
    drawn = {}
    real = LineCollection.__init__

    def spy(self, segments, *args, **kwargs):
        drawn["lines"] = len(segments)
        real(self, segments, *args, **kwargs)

    monkeypatch.setattr(LineCollection, "__init__", spy)
    titles = []
    monkeypatch.setattr(
        "matplotlib.figure.Figure.legend",
        lambda self, *a, **k: titles.append(k.get("title", "")),
    )
    inputs = [f"x{i}" for i in range(30)]
    plotting.plot_network(layers, tmp_path / "n.png", inputs, ["y"], standardized_inputs=True)
    assert drawn["lines"] == 5
    assert "925 of 930 weights under 2% of the widest not drawn" in titles[0]
    assert "per standard deviation of each feature" in titles[0]
