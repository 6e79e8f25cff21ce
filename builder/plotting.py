"""PNG plots of a run: training curves, predictions, class confusion, activations, the network.

Every function here is pure: it takes numpy/pandas data, writes one PNG and returns its
:class:`~pathlib.Path`. Nothing is printed and no global matplotlib state is touched: figures are
built with :class:`matplotlib.figure.Figure` on an Agg canvas, never through ``pyplot``. matplotlib
is imported inside the functions, so importing this module stays cheap (it imports numpy only).

Each PNG is written atomically: rendered to a temporary file next to the target, then moved over
it with :func:`os.replace`, so a reader never sees a half-written image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from builder.errors import BuilderError, DataError, RunError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "ACTIVATION_FORMULAS",
    "activation_curves",
    "confusion_counts",
    "plot_activations",
    "plot_class_probabilities",
    "plot_compare",
    "plot_confusion",
    "plot_history",
    "plot_network",
    "plot_predictions",
]

#: Colours shared by every plot: train/positive is blue, validation/negative is red.
_BLUE = "#1f77b4"
_RED = "#d62728"
_ORANGE = "#ff7f0e"
_DPI = 120

#: Title and formula (matplotlib mathtext) of each activation function, in the article's order.
ACTIVATION_FORMULAS: dict[str, tuple[str, str]] = {
    "threshold": ("Threshold (TLU)", r"$f(x) = 1$ if $x \geq \theta$, else $0$"),
    "sigmoid": ("Sigmoid", r"$\sigma(x) = \dfrac{1}{1 + e^{-x}}$"),
    "relu": ("ReLU", r"$f(x) = \max(0,\ x)$"),
    "tanh": ("Tanh", r"$\tanh(x) = \dfrac{e^{x} - e^{-x}}{e^{x} + e^{-x}}$"),
}


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _new_figure(figsize: tuple[float, float], layout: str | None = "constrained") -> Figure:
    """Returns a Figure on its own Agg canvas, outside pyplot's global registry.

    Args:
        figsize: Width and height in inches.
        layout: The figure's layout engine, or None.

    Returns:
        A new figure; it is freed by the garbage collector, no ``plt.close`` needed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=_DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(
    fig: Figure, path: str | os.PathLike[str], *, overwrite: str = "file", **savefig_kwargs: Any
) -> Path:
    """Writes ``fig`` to ``path`` as a PNG, atomically, and releases the figure.

    Args:
        fig: The figure to render.
        path: Where the PNG goes; missing parent directories are created. The file is a PNG
            whatever its suffix.
        overwrite: What may be replaced at ``path``: ``"file"`` (a regular file only, never a
            link or a device) or ``"never"`` (nothing: an existing path is refused).
        **savefig_kwargs: Extra arguments of :meth:`Figure.savefig` (e.g. ``bbox_inches``).

    Returns:
        ``path`` as a Path.

    Raises:
        RunError: The file or its directory cannot be written, or ``overwrite`` refuses it.
    """
    from builder.runs import atomic_write

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(
            f"cannot write the plot {str(path)!r}: its folder cannot be made "
            f"({exc.strerror or exc}). Received: path={str(path)!r}"
        ) from None
    try:
        # By default a plot replaces an earlier one, but only a regular file (never a link or a
        # device); the temporary name may not end in .png, so the format is given explicitly.
        atomic_write(
            path,
            lambda tmp: fig.savefig(tmp, format="png", dpi=_DPI, **savefig_kwargs),
            overwrite=overwrite,
            what="plot",
        )
    finally:
        fig.clear()
    return path


def _text(value: object) -> str:
    """Returns ``str(value)`` safe to draw: a ``$`` would otherwise start mathtext."""
    return str(value).replace("$", r"\$")


def _short(value: object, limit: int = 28) -> str:
    """Returns a drawable label of at most ``limit`` characters, elided in the middle."""
    text = str(value)
    if len(text) > limit:
        head = (limit - 1) // 2
        text = text[:head] + "…" + text[len(text) - (limit - 1 - head) :]
    return _text(text)


# --------------------------------------------------------------------------------------------
# Training history
# --------------------------------------------------------------------------------------------


def _history_metrics(history: pd.DataFrame) -> list[tuple[str, str | None, str | None]]:
    """Groups the metric columns of a history by base name, ``loss`` first.

    Args:
        history: One row per epoch; ``val_<name>`` columns are the validation side of ``<name>``.

    Returns:
        ``(base name, train column or None, validation column or None)`` for each metric.
    """
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    order: list[str] = []
    pairs: dict[str, list[str | None]] = {}
    for column in history.columns:
        name = str(column)
        if name == "epoch":
            continue
        series = history[column]
        if not is_numeric_dtype(series) or is_bool_dtype(series):
            continue
        is_val = name.startswith("val_") and len(name) > len("val_")
        base = name[len("val_") :] if is_val else name
        if base not in pairs:
            pairs[base] = [None, None]
            order.append(base)
        pairs[base][1 if is_val else 0] = column
    order.sort(key=lambda base: base != "loss")  # stable: loss first, then the columns' order
    return [(base, pairs[base][0], pairs[base][1]) for base in order]


def plot_history(
    history: pd.DataFrame, path: str | os.PathLike[str], *, restored_epoch: int | None = None
) -> Path:
    """Plots training curves: one panel per metric, train and validation lines.

    Args:
        history: One row per epoch, as Keras' ``History.history`` or a CSVLogger file: an
            optional ``epoch`` column (else epochs are numbered from 1) and numeric metric columns
            such as ``loss``, ``val_loss``, ``mae``, ``val_mae``. Other columns are ignored.
        path: Where the PNG goes.
        restored_epoch: The epoch (as numbered in the plot) whose weights the model holds, when
            early stopping restored its best weights (``builder.runs.early_stopping``); None
            when the last epoch's weights were kept.

    Returns:
        The written path.

    Raises:
        RunError: The history has no rows or no numeric metric column, or ``path`` cannot be
            written.

    The loss panel uses a log-scale y axis when every loss value is positive, and marks the epoch
    of the model that was kept: ``restored_epoch``, or else the last epoch.
    """
    metrics = _history_metrics(history)
    if len(history) == 0 or not metrics:
        raise RunError(
            "history must have at least one row and one numeric metric column (e.g. loss). "
            f"Received: {len(history)} rows, columns {[str(c) for c in history.columns]}"
        )
    if "epoch" in history.columns:
        epochs = history["epoch"].to_numpy(dtype=float, na_value=np.nan)
    else:
        epochs = np.arange(1, len(history) + 1, dtype=float)
    markers = len(history) <= 40

    ncols = min(len(metrics), 3)
    nrows = math.ceil(len(metrics) / ncols)
    fig = _new_figure((4.8 * ncols + 0.4, 3.6 * nrows + 0.5))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)

    for ax, (base, train_col, val_col) in zip(axes.flat, metrics, strict=False):
        values: list[np.ndarray] = []
        for column, label, color in ((train_col, "train", _BLUE), (val_col, "validation", _RED)):
            if column is None:
                continue
            y = history[column].to_numpy(dtype=float, na_value=np.nan)
            values.append(y)
            ax.plot(
                epochs,
                y,
                color=color,
                label=f"{label} ({_text(column)})",
                marker="o" if markers else None,
                markersize=3,
                linewidth=1.6,
            )
        finite = np.concatenate(values)
        finite = finite[np.isfinite(finite)]
        log = base == "loss" and finite.size > 0 and bool(np.all(finite > 0))
        if log:
            ax.set_yscale("log")
            _log_ticks(ax, finite)
        if base == "loss":
            _mark_kept(ax, epochs, history, val_col or train_col, restored_epoch)
        ax.set_title(_text(base) + (" (log scale)" if log else ""))
        ax.set_xlabel("epoch")
        ax.set_ylabel(_text(base))
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize="small")
    n = len(history)
    fig.suptitle(f"Training history ({n} epoch{'s' if n != 1 else ''})")
    return _save(fig, path)


def _log_ticks(ax: Axes, values: np.ndarray) -> None:
    """Labels a log axis at more than the powers of ten when it spans few decades.

    Matplotlib's default labels only the powers of ten: a loss going from 4e7 to 2e8 gets one
    or two labels. Within about a decade every digit is labelled (4e7, 5e7 ... 2e8), within four
    1, 2 and 5 of each decade; over more decades the powers of ten are enough.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    decades = math.log10(float(values.max()) / float(values.min()))
    if decades > 4:
        return
    subs = tuple(range(1, 10)) if decades <= 1.2 else (1, 2, 5)
    ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=[float(s) for s in subs]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _mark_kept(
    ax: Axes,
    epochs: np.ndarray,
    history: pd.DataFrame,
    column: str | None,
    restored_epoch: int | None,
) -> None:
    """Draws a dotted vertical line at the epoch whose weights the model holds.

    That is ``restored_epoch`` when early stopping restored it, else the last epoch.
    """
    if column is None:
        return
    y = history[column].to_numpy(dtype=float, na_value=np.nan)
    row = len(history) - 1
    if restored_epoch is not None:
        matches = np.flatnonzero(epochs == restored_epoch)
        if matches.size == 0 and not 1 <= restored_epoch <= len(history):
            raise RunError(
                f"restored_epoch must be one of the history's epochs. "
                f"Received: restored_epoch={restored_epoch}, {len(history)} epochs"
            )
        row = int(matches[0]) if matches.size else restored_epoch - 1
    epoch = epochs[row]
    if not np.isfinite(epoch):
        epoch = float(row + 1)
    what = "restored weights: epoch" if restored_epoch is not None else "kept weights: last epoch,"
    value = f" ({_text(column)} = {y[row]:.4g})" if np.isfinite(y[row]) else ""
    ax.axvline(epoch, color="grey", linestyle=":", linewidth=1.2, label=f"{what} {epoch:g}{value}")


# --------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------


def _as_column(values: Any, name: str) -> np.ndarray:
    """Returns ``values`` as a 1-D float array; a single column (n, 1) is accepted."""
    array = np.asarray(values, dtype=float)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D or a single column; call plot_predictions once per output. "
            f"Received: shape {array.shape}"
        )
    return array


def plot_predictions(
    y_true: Any, y_pred: Any, path: str | os.PathLike[str], target: str = "target"
) -> Path:
    """Plots predicted against actual values, with the y = x line and R² in the title.

    Args:
        y_true: Actual values, shape (n,) or (n, 1).
        y_pred: Predicted values, same length as ``y_true``.
        path: Where the PNG goes.
        target: Name of the target column, used in the labels and title.

    Returns:
        The written path.

    Raises:
        ValueError: The arrays are empty, not one column, or of different lengths.
        RunError: No pair of values is finite (a diverged model predicts NaN), or ``path``
            cannot be written.

    Pairs with a NaN or infinite value are left out of the plot and of R²; the title counts them.
    """
    actual = _as_column(y_true, "y_true")
    predicted = _as_column(y_pred, "y_pred")
    if actual.shape != predicted.shape or actual.size == 0:
        raise ValueError(
            "y_true and y_pred must be non-empty and of the same length. "
            f"Received: {actual.size} and {predicted.size} values"
        )
    finite = np.isfinite(actual) & np.isfinite(predicted)
    skipped = int(actual.size - finite.sum())
    if not finite.any():
        raise RunError(
            f"predictions of {target!r} contain no finite value, so there is nothing to plot; "
            "the model has probably diverged (try a lower learning rate). "
            f"Received: {actual.size} pairs, all with NaN or infinity"
        )
    actual, predicted = actual[finite], predicted[finite]
    n = actual.size
    from builder.data.scoring import regression_metrics

    r2 = regression_metrics(actual, predicted)["r2"]  # NaN for a constant target

    fig = _new_figure((6.0, 6.0))
    ax = fig.add_subplot()
    size, alpha = (22, 0.8) if n <= 500 else (8, 0.5) if n <= 5000 else (3, 0.3)
    ax.scatter(actual, predicted, s=size, alpha=alpha, color=_BLUE, edgecolors="none",
               label="samples", rasterized=n > 5000)  # fmt: skip
    low = float(min(actual.min(), predicted.min()))
    high = float(max(actual.max(), predicted.max()))
    pad = (high - low) * 0.05 if high > low else max(abs(high) * 0.05, 1.0)
    low, high = low - pad, high + pad
    ax.plot([low, high], [low, high], color=_RED, linestyle="--", linewidth=1.3,
            label="y = x (perfect prediction)")  # fmt: skip
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    name = _short(target, 40)
    ax.set_xlabel(f"actual {name}")
    ax.set_ylabel(f"predicted {name}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    r2_text = "R² = undefined (constant target)" if math.isnan(r2) else f"R² = {r2:.4f}"
    details = f"{r2_text}    n = {n}"
    if skipped:
        details += f"    ({skipped} non-finite left out)"
    ax.set_title(f"{name}: predicted vs actual\n{details}")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Activation functions
# --------------------------------------------------------------------------------------------


def activation_curves(x: Any = None, *, threshold: float = 0.0) -> dict[str, np.ndarray]:
    """Computes the article's four activation functions with numpy.

    Args:
        x: Input values (any array-like); None means 1201 points evenly spaced over [-6, 6].
        threshold: θ of the threshold function (TLU).

    Returns:
        ``{"x": x, "threshold": ..., "sigmoid": ..., "relu": ..., "tanh": ...}``, float arrays of
        the shape of ``x``: threshold is 1.0 where ``x >= threshold`` else 0.0, sigmoid is
        ``1 / (1 + e^-x)``, relu is ``max(0, x)``, tanh is ``tanh(x)``.
    """
    values = np.linspace(-6.0, 6.0, 1201) if x is None else np.asarray(x, dtype=float)
    return {
        "x": values,
        "threshold": np.where(values >= threshold, 1.0, 0.0),
        # 1 / (1 + e^-x) written through tanh: identical, and no overflow for very negative x.
        "sigmoid": 0.5 * (1.0 + np.tanh(0.5 * values)),
        "relu": np.maximum(values, 0.0),
        "tanh": np.tanh(values),
    }


def plot_activations(path: str | os.PathLike[str], threshold: float = 0.0) -> Path:
    """Draws the four activation functions in a 2 x 2 grid, each titled with its formula.

    Args:
        path: Where the PNG goes.
        threshold: θ of the threshold function (TLU); the other three do not use it.

    Returns:
        The written path.

    Raises:
        BuilderError: ``threshold`` is NaN or infinite.
        RunError: ``path`` cannot be written.
    """
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise BuilderError(f"threshold must be a finite number. Received: threshold={threshold}")
    curves = activation_curves()
    fig = _new_figure((9.0, 7.6))
    axes = fig.subplots(2, 2)
    for ax, (key, (title, formula)) in zip(axes.flat, ACTIVATION_FORMULAS.items(), strict=True):
        if key == "threshold":
            _draw_step(ax, threshold)
            formula = formula.replace(r"\theta", f"{threshold:g}")
        else:
            ax.plot(curves["x"], curves[key], color=_BLUE, linewidth=2)
            ax.set_xlim(curves["x"][0], curves["x"][-1])
        ax.axhline(0.0, color="black", linewidth=0.7)
        ax.axvline(0.0, color="black", linewidth=0.7)
        ax.set_title(f"{title}\n{formula}", fontsize=11)
        ax.set_xlabel("x (weighted sum of inputs)")
        ax.set_ylabel("f(x)")
        ax.grid(True, alpha=0.3)
    axes[0, 0].set_ylim(-0.15, 1.15)
    axes[0, 1].set_ylim(-0.15, 1.15)
    axes[1, 1].set_ylim(-1.2, 1.2)
    fig.suptitle("Activation functions", fontsize=14)
    return _save(fig, path)


def _draw_step(ax: Axes, threshold: float) -> None:
    """Draws the threshold function as a step: 0 left of ``threshold``, 1 from it on."""
    low, high = min(-6.0, threshold - 3.0), max(6.0, threshold + 3.0)
    ax.plot([low, threshold], [0.0, 0.0], color=_BLUE, linewidth=2)
    ax.plot([threshold, high], [1.0, 1.0], color=_BLUE, linewidth=2)
    ax.plot([threshold, threshold], [0.0, 1.0], color=_BLUE, linewidth=1, linestyle=":")
    # Filled dot: f(threshold) = 1; open dot: the 0 branch stops just before it.
    ax.plot([threshold], [1.0], "o", color=_BLUE, markersize=7, zorder=3)
    ax.plot([threshold], [0.0], "o", markerfacecolor="white", markeredgecolor=_BLUE,
            markersize=7, zorder=3)  # fmt: skip
    ax.set_xlim(low, high)


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------


def _bias_text(bias: float) -> str:
    """Returns a bias short enough to fit in a neuron: ``0.03``, ``-12``, ``-1e+03``."""
    if abs(bias) < 10:
        return f"{bias:.2f}"
    return f"{bias:.0f}" if abs(bias) < 1000 else f"{bias:.0e}"


def _check_layers(
    layers: Sequence[tuple[np.ndarray, np.ndarray | None]],
    input_names: Sequence[str],
    output_names: Sequence[str],
) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Returns the kernels and biases as float arrays after checking that their shapes chain.

    Raises:
        ValueError: A shape does not fit (a programming error, not a user's).
    """
    if len(layers) == 0:
        raise ValueError("layers must hold at least one (kernel, bias) pair. Received: []")
    kernels: list[np.ndarray] = []
    biases: list[np.ndarray | None] = []
    for index, (kernel, bias) in enumerate(layers):
        k = np.asarray(kernel, dtype=float)
        if k.ndim != 2:
            raise ValueError(
                f"layers[{index}] kernel must be 2-D (n_in, n_out). Received: shape {k.shape}"
            )
        if kernels and k.shape[0] != kernels[-1].shape[1]:
            raise ValueError(
                f"layers[{index}] kernel must have {kernels[-1].shape[1]} rows, the units of "
                f"layers[{index - 1}]. Received: shape {k.shape}"
            )
        b = None if bias is None else np.asarray(bias, dtype=float)
        if b is not None and b.shape != (k.shape[1],):
            raise ValueError(
                f"layers[{index}] bias must have shape ({k.shape[1]},). Received: shape {b.shape}"
            )
        kernels.append(k)
        biases.append(b)
    if len(input_names) != kernels[0].shape[0]:
        raise ValueError(
            f"input_names must name the {kernels[0].shape[0]} inputs. "
            f"Received: {len(input_names)} names"
        )
    if len(output_names) != kernels[-1].shape[1]:
        raise ValueError(
            f"output_names must name the {kernels[-1].shape[1]} outputs. "
            f"Received: {len(output_names)} names"
        )
    return kernels, biases


#: Above this many weights, ``plot_network`` leaves out the smallest ones ...
MANY_WEIGHTS = 600
#: ... those under this fraction of the largest weight.
HIDDEN_BELOW = 0.02


def plot_network(
    layers: list[tuple[np.ndarray, np.ndarray | None]],
    path: str | os.PathLike[str],
    input_names: list[str],
    output_names: list[str],
    max_neurons: int = 32,
    standardized_inputs: bool = False,
) -> Path:
    """Draws the network as columns of neurons joined by one line per weight (synapse).

    Line width and opacity grow with ``|weight|`` (the largest weight of the plot gets the widest
    line) and colour shows the sign: blue positive, red negative. With more than
    ``MANY_WEIGHTS`` lines, weights under ``HIDDEN_BELOW`` of the largest are not drawn, and the
    legend says how many. Input neurons are labelled with the feature names, output neurons with
    the output names; when no layer has more than 10 neurons, each neuron also shows its bias.

    Args:
        layers: ``(kernel, bias)`` of each Dense layer, in order; kernel shape (n_in, n_out), bias
            shape (n_out,) or None.
        path: Where the PNG goes.
        input_names: One name per input (the rows of the first kernel).
        output_names: One name per output (the columns of the last kernel).
        max_neurons: Largest layer (inputs included) this function agrees to draw.
        standardized_inputs: the first layer's weights act on standardized inputs (builder's
            normalization), so the legend says they are per standard deviation of each feature.

    Returns:
        The written path.

    Raises:
        ValueError: The shapes do not chain, or the names do not match them.
        RunError: A layer has more than ``max_neurons`` neurons, a weight is NaN or infinite, or
            ``path`` cannot be written.
    """
    if isinstance(max_neurons, bool) or not isinstance(max_neurons, int) or max_neurons < 1:
        raise ValueError(f"max_neurons must be a positive integer. Received: {max_neurons!r}")
    kernels, biases = _check_layers(layers, input_names, output_names)
    sizes = [kernels[0].shape[0], *(k.shape[1] for k in kernels)]
    largest = max(sizes)
    if largest > max_neurons:
        raise RunError(
            f"network has a layer of {largest} neurons; plot --network draws networks of at most "
            f"{max_neurons} neurons per layer. Received: layer sizes {sizes}"
        )
    for index, (k, b) in enumerate(zip(kernels, biases, strict=True)):
        if not np.all(np.isfinite(k)) or (b is not None and not np.all(np.isfinite(b))):
            raise RunError(
                f"layers[{index}] has NaN or infinite weights, so the network cannot be drawn; "
                "the model has probably diverged (try a lower learning rate). "
                f"Received: layer sizes {sizes}"
            )

    from matplotlib.collections import LineCollection
    from matplotlib.colors import to_rgba
    from matplotlib.lines import Line2D

    n_columns = len(sizes)
    ys = [(n - 1) / 2.0 - np.arange(n, dtype=float) for n in sizes]
    # Up to 10 neurons a column, neurons are big enough to hold their bias; beyond, they shrink.
    show_bias = largest <= 10
    per_neuron = 0.62 if show_bias else 0.32
    height = min(max(per_neuron * largest + 2.2, 4.2), 13.0)
    width = max(2.4 * (n_columns - 1) + 4.0, 7.0)
    fig = _new_figure((width, height))
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_xlim(-0.15, n_columns - 1 + 0.15)
    ax.set_ylim(-largest / 2.0, largest / 2.0)

    # Neuron size in points: about 60 % of the vertical gap between two neurons, capped.
    axes_height_pt = (height - 1.9) * 72.0
    gap_pt = axes_height_pt / max(largest, 1)
    diameter = min(0.6 * gap_pt, 34.0 if show_bias else 24.0)

    # Synapses: one segment per weight, thin and pale ones drawn first.
    segments, weights = [], []
    for index, k in enumerate(kernels):
        y_in, y_out = np.meshgrid(ys[index], ys[index + 1], indexing="ij")
        seg = np.stack(
            [
                np.stack([np.full_like(y_in, index), y_in], axis=-1),
                np.stack([np.full_like(y_out, index + 1), y_out], axis=-1),
            ],
            axis=-2,
        )
        segments.append(seg.reshape(-1, 2, 2))
        weights.append(k.reshape(-1))
    all_segments = np.concatenate(segments)
    all_weights = np.concatenate(weights)
    magnitude = np.abs(all_weights)
    scale = float(magnitude.max()) or 1.0
    relative = magnitude / scale
    n_lines = all_weights.size
    max_width = 5.0 if n_lines <= 100 else 3.5 if n_lines <= 600 else 2.5
    order = np.argsort(relative, kind="stable")
    colors = np.array([to_rgba(_BLUE), to_rgba(_RED)])[(all_weights < 0).astype(int)]
    colors[:, 3] = 0.25 + 0.75 * relative
    hidden = 0
    if n_lines > MANY_WEIGHTS:  # hundreds of faint lines hide the few strong ones
        order = order[relative[order] >= HIDDEN_BELOW]
        hidden = n_lines - len(order)
    lines = LineCollection(
        all_segments[order],
        linewidths=0.3 + (max_width - 0.3) * relative[order],
        colors=colors[order],
        capstyle="round",
        zorder=1,
    )
    ax.add_collection(lines)

    # Neurons.
    faces = ["#e8e8e8"] + ["white"] * (n_columns - 2) + ["#fff2cc"]
    for column, (y, face) in enumerate(zip(ys, faces, strict=True)):
        ax.scatter(np.full_like(y, column), y, s=diameter**2, color=face, edgecolors="black",
                   linewidths=1.0, zorder=3)  # fmt: skip
        bias = biases[column - 1] if column > 0 else None
        if show_bias and bias is not None:
            for y_value, b in zip(y, bias, strict=True):
                text = _bias_text(b)
                ax.text(column, y_value, text, ha="center", va="center",
                        fontsize=6.5 if len(text) <= 5 else 5.5, zorder=4)  # fmt: skip

    label_offset = diameter / 2.0 + 4.0
    label_size = 9 if largest <= 16 else 7
    for y_value, name in zip(ys[0], input_names, strict=True):
        ax.annotate(_short(name), (0, y_value), xytext=(-label_offset, 0),
                    textcoords="offset points", ha="right", va="center",
                    fontsize=label_size)  # fmt: skip
    for y_value, name in zip(ys[-1], output_names, strict=True):
        ax.annotate(_short(name), (n_columns - 1, y_value), xytext=(label_offset, 0),
                    textcoords="offset points", ha="left", va="center",
                    fontsize=label_size)  # fmt: skip

    # Column headers under the columns.
    from matplotlib.transforms import blended_transform_factory

    below = blended_transform_factory(ax.transData, ax.transAxes)
    for column, n in enumerate(sizes):
        if column == 0:
            name = "input"
        elif column == n_columns - 1:
            name = "output"
        else:
            name = f"hidden {column}"
        ax.text(column, -0.01, f"{name}\n({n})", transform=below, ha="center", va="top",
                fontsize=9)  # fmt: skip

    handles = [
        Line2D([], [], color=_BLUE, linewidth=3, label="positive weight"),
        Line2D([], [], color=_RED, linewidth=3, label="negative weight"),
    ]
    legend_title = f"line width ∝ |weight| (widest = {scale:.3g})"
    if standardized_inputs:
        legend_title += "\ninput weights are per standard deviation of each feature"
    if hidden:
        legend_title += (
            f"\n{hidden} of {n_lines} weights under {HIDDEN_BELOW:.0%} of the widest not drawn"
        )
    if show_bias and any(b is not None for b in biases):
        legend_title += "\nnumber in a neuron = its bias"
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8,
               title=legend_title, title_fontsize=8, frameon=False)  # fmt: skip
    ax.set_title("Network " + " → ".join(str(n) for n in sizes))
    return _save(fig, path, bbox_inches="tight", pad_inches=0.15)


def plot_compare(
    histories: Sequence[pd.DataFrame | None],
    labels: Sequence[str],
    path: str | os.PathLike[str],
) -> Path:
    """Draws the validation loss of several runs per epoch, on one figure (``builder compare``).

    A run without a validation split is drawn with its training loss (dashed, and so labelled);
    one without a history (a tune run) is left out and named in the title.

    Args:
        histories: Each run's ``history.csv`` as a frame, or None.
        labels: One label per run.
        path: Where the PNG goes.

    Returns:
        The written path.

    Raises:
        RunError: No run has a history, or ``path`` cannot be written.
    """
    if len(histories) != len(labels):
        raise ValueError(
            f"labels must name the {len(histories)} runs. Received: {len(labels)} labels"
        )
    fig = _new_figure((8.0, 4.8))
    ax = fig.add_subplot()
    drawn, missing = 0, []
    values = []
    for history, label in zip(histories, labels, strict=True):
        column = None
        if history is not None:
            column = "val_loss" if "val_loss" in history.columns else "loss"
        if history is None or column not in history.columns or len(history) == 0:
            missing.append(label)
            continue
        epochs = history["epoch"] if "epoch" in history.columns else np.arange(1, len(history) + 1)
        y = history[column].to_numpy(dtype=float)
        values.append(y[np.isfinite(y)])
        style = "-" if column == "val_loss" else "--"
        shown = label if column == "val_loss" else f"{label} (training loss)"
        ax.plot(epochs, y, style, linewidth=1.6, label=_short(shown, 60))
        drawn += 1
    if not drawn:
        raise RunError("compare --plot needs a run with a history.csv. Received: none has one")
    finite = np.concatenate(values) if values else np.array([])
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 30:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss")
    title = "Validation loss per epoch"
    if missing:
        title += f"\n(no history: {', '.join(_short(m, 40) for m in missing)})"
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------

#: What a classification plot may replace at its path (see ``builder.runs.OVERWRITE``).
_PLOT_OVERWRITE = ("file", "never")


def _check_overwrite(overwrite: str) -> None:
    """Raises ValueError for an ``overwrite`` a plot does not take."""
    if overwrite not in _PLOT_OVERWRITE:
        raise ValueError(f"overwrite must be one of {_PLOT_OVERWRITE}. Received: {overwrite!r}")


def _check_classes(classes: Sequence[str], minimum: int = 2) -> list[str]:
    """Returns the class labels as strings, checking there are at least ``minimum``."""
    if isinstance(classes, str | bytes) or not isinstance(classes, Sequence):
        raise ValueError(
            f"classes must be a list of class labels. Received: {type(classes).__name__}"
        )
    if len(classes) < minimum:
        raise ValueError(
            f"classes must name at least {minimum} classes. Received: {len(classes)} labels"
        )
    return [str(label) for label in classes]


def _class_codes(values: Any, name: str, k: int) -> np.ndarray:
    """Returns ``values`` as a 1-D int64 array of class codes in ``0..k-1``.

    A single column (n, 1) is accepted, and so are floats holding whole numbers (a model's
    ``argmax`` stored in a float frame).

    Raises:
        ValueError: The array is not 1-D, not integral, or a code is out of range.
    """
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D class codes. Received: shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must hold integer class codes 0..{k - 1}, not labels; encode them first. "
            f"Received: dtype {array.dtype}"
        )
    if array.dtype.kind == "f":
        whole = np.isfinite(array) & (array == np.round(array))
        if not whole.all():
            bad = array[~whole][0]
            raise ValueError(
                f"{name} must hold integer class codes 0..{k - 1}. Received: {float(bad)!r}"
            )
    codes = array.astype(np.int64)
    outside = (codes < 0) | (codes >= k)
    if outside.any():
        raise ValueError(
            f"{name} must hold class codes 0..{k - 1}, one per label of classes. "
            f"Received: {int(codes[outside][0])} ({int(outside.sum())} codes out of range)"
        )
    return codes


def _require_rows(n: int) -> None:
    """Raises DataError when there is no row to plot."""
    if n == 0:
        raise DataError("no test rows to plot. Received: 0 rows")


def confusion_counts(y_true: Any, y_pred: Any, k: int) -> np.ndarray:
    """Counts the rows of each (true class, predicted class) pair.

    Args:
        y_true: True class codes, ``0..k-1``, shape (n,) or (n, 1).
        y_pred: Predicted class codes, same length.
        k: The number of classes.

    Returns:
        An int64 array of shape (k, k): ``counts[i, j]`` rows of true class ``i`` were predicted
        as class ``j``. Rows of the matrix sum to each class's row count, the diagonal to the
        correct predictions. All zeros when there is no row.

    Raises:
        ValueError: ``k`` is not a positive integer, the arrays are not 1-D codes in range, or
            they differ in length.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer. Received: {k!r}")
    k = int(k)
    actual = _class_codes(y_true, "y_true", k)
    predicted = _class_codes(y_pred, "y_pred", k)
    if actual.shape != predicted.shape:
        raise ValueError(
            "y_true and y_pred must be of the same length. "
            f"Received: {actual.size} and {predicted.size} codes"
        )
    # One bincount over the flattened (true, predicted) pair: linear in n, no Python loop.
    return np.bincount(actual * k + predicted, minlength=k * k).reshape(k, k)


def _confusion_figure(
    y_true: Any,
    y_pred: Any,
    classes: Sequence[str],
    *,
    title: str | None,
    target: str | None,
) -> Figure:
    """Builds the figure of :func:`plot_confusion` (separate so tests can read what it draws)."""
    labels = _check_classes(classes)
    k = len(labels)
    counts = confusion_counts(y_true, y_pred, k)
    n = int(counts.sum())
    _require_rows(n)
    row_totals = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # A class with no true row has no share: NaN, drawn in the colour map's "bad" grey.
        share = counts / row_totals[:, None]
    correct = int(np.trace(counts))

    import matplotlib

    side = min(max(0.55 * k, 4.0), 13.0)  # the matrix, in inches; labels and colour bar beside
    fig = _new_figure((side + 3.0, side + 2.4))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#eeeeee")
    image = ax.imshow(
        np.ma.masked_invalid(share), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest"
    )
    colorbar = fig.colorbar(image, ax=ax, shrink=0.8)
    colorbar.set_label("share of the true class's rows")

    # The cells' size in points decides what fits: count and share, the count alone, or nothing.
    cell = side * 72.0 / k
    digits = len(str(int(counts.max())))
    both = k <= 20
    font = min(cell * (0.26 if both else 0.36), 10.0, cell * 0.85 / (0.62 * max(digits, 3)))
    annotate = font >= 4.5
    if annotate:
        for i in range(k):
            for j in range(k):
                value = share[i, j]
                text = str(counts[i, j])
                if both and np.isfinite(value):
                    text += f"\n{value:.0%}"
                dark = np.isfinite(value) and value >= 0.6
                ax.text(j, i, text, ha="center", va="center", fontsize=font,
                        color="white" if dark else "black")  # fmt: skip

    ticks = np.arange(k)
    step = max(1, math.ceil(7.0 / cell))  # below ~7 points a cell, labels would overlap
    shown = ticks[::step]
    tick_font = 9 if k <= 10 else 8 if k <= 20 else 6
    names = [_short(labels[i], 24) for i in shown]
    ax.set_xticks(shown, names, fontsize=tick_font)
    ax.set_yticks(shown, names, fontsize=tick_font)
    if k > 4 or max(len(label) for label in labels) > 6:
        for tick in ax.get_xticklabels():
            tick.set_rotation(45)
            tick.set_ha("right")
            tick.set_rotation_mode("anchor")
    ax.set_xlabel("predicted")
    ax.set_ylabel(f"true {_short(target, 40)}" if target else "true class")

    heading = _text(title) if title else f"{_short(target or 'class', 40)}: confusion matrix"
    details = f"accuracy = {correct / n:.4f} ({correct} of {n} rows correct)"
    if not annotate:
        details += f"\n{k} classes: too many to print counts; colour = share of the true class"
    ax.set_title(f"{heading}\n{details}", fontsize=10)
    return fig


def plot_confusion(
    y_true: Any,
    y_pred: Any,
    classes: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    target: str | None = None,
    overwrite: str = "file",
) -> Path:
    """Draws the confusion matrix: true classes down, predicted classes across.

    Each cell shows its row count and its share of the true class's rows (``41`` over ``82%``)
    and is coloured by that share, so a class's recall is its diagonal cell whatever its size.
    Above 20 classes cells show the count alone, and nothing when too small to read; tick
    labels are thinned out when they would overlap. The title gives the accuracy.

    Args:
        y_true: True class codes ``0..K-1``, shape (n,) or (n, 1).
        y_pred: Predicted class codes, same length.
        classes: The K class labels, in code order.
        path: Where the PNG goes.
        title: First line of the title; None for ``"<target>: confusion matrix"``.
        target: Name of the target column, used in the row axis label (``true <target>``).
        overwrite: ``"file"`` replaces a regular file at ``path``; ``"never"`` refuses any.

    Returns:
        The written path.

    Raises:
        ValueError: Fewer than 2 classes, codes out of range or not integral, arrays not 1-D or
            of different lengths, or an unknown ``overwrite``.
        DataError: There is no row.
        RunError: ``path`` exists under ``overwrite="never"``, or cannot be written.
    """
    _check_overwrite(overwrite)
    fig = _confusion_figure(y_true, y_pred, classes, title=title, target=target)
    return _save(fig, path, overwrite=overwrite)


def _as_probabilities(probabilities: Any, k: int) -> np.ndarray:
    """Returns ``probabilities`` as a float (n, k) array.

    For two classes a single column (n,) or (n, 1) is read as p(class 1), a sigmoid output.

    Raises:
        ValueError: The shape does not fit ``k`` or a finite value is outside [0, 1].
    """
    array = np.asarray(probabilities, dtype=float)
    if k == 2 and (array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1)):
        positive = array.reshape(-1)
        array = np.stack([1.0 - positive, positive], axis=1)
    if array.ndim != 2 or array.shape[1] != k:
        raise ValueError(
            f"probabilities must have shape (n, {k}), one column per label of classes. "
            f"Received: shape {array.shape}"
        )
    finite = array[np.isfinite(array)]
    # Softmax in float32 can land a hair outside [0, 1]; logits land far outside.
    if finite.size and (finite.min() < -1e-6 or finite.max() > 1 + 1e-6):
        raise ValueError(
            "probabilities must be in [0, 1] (softmax or sigmoid outputs, not logits). "
            f"Received: values from {finite.min():.4g} to {finite.max():.4g}"
        )
    return np.clip(array, 0.0, 1.0)


def _probabilities_figure(
    y_true: Any,
    probabilities: Any,
    classes: Sequence[str],
    *,
    title: str | None,
    target: str | None,
) -> Figure:
    """Builds the figure of :func:`plot_class_probabilities`."""
    labels = _check_classes(classes)
    k = len(labels)
    actual = _class_codes(y_true, "y_true", k)
    probs = _as_probabilities(probabilities, k)
    if probs.shape[0] != actual.size:
        raise ValueError(
            "y_true and probabilities must have the same number of rows. "
            f"Received: {actual.size} and {probs.shape[0]} rows"
        )
    _require_rows(actual.size)
    finite = np.isfinite(probs).all(axis=1)
    skipped = int(actual.size - finite.sum())
    if not finite.any():
        raise RunError(
            "probabilities contain no finite row, so there is nothing to plot; the model has "
            "probably diverged (try a lower learning rate). "
            f"Received: {actual.size} rows, all with NaN or infinity"
        )
    actual, probs = actual[finite], probs[finite]
    n = actual.size
    name = _short(target or "class", 40)
    true_axis = f"true {_short(target, 40)}" if target else "true class"

    if k == 2:
        fig = _new_figure((7.0, 4.8))
        ax = fig.add_subplot()
        positive = probs[:, 1]
        bins = np.linspace(0.0, 1.0, 21)
        for code, color in ((0, _RED), (1, _BLUE)):
            rows = positive[actual == code]
            if rows.size == 0:
                continue
            # Shares, not counts: a rare class would otherwise be a flat line under the other.
            ax.hist(rows, bins=bins, weights=np.full(rows.size, 1.0 / rows.size), color=color,
                    alpha=0.45, edgecolor=color, linewidth=1.2, histtype="stepfilled",
                    label=f"true {_short(labels[code])} (n = {rows.size})")  # fmt: skip
        ax.axvline(0.5, color="black", linestyle="--", linewidth=1.2, label="threshold 0.5")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel(f"predicted p({_short(labels[1])})")
        ax.set_ylabel("share of the true class's rows")
        ax.legend(fontsize="small")
        correct = int(np.sum((positive >= 0.5) == (actual == 1)))
        heading = _text(title) if title else f"{name}: predicted probability by true class"
        details = f"accuracy at 0.5 = {correct / n:.4f}    n = {n}"
    else:
        width = min(max(0.5 * k + 2.5, 6.5), 14.0)
        fig = _new_figure((width, 5.2))
        ax = fig.add_subplot()
        own = probs[np.arange(n), actual]  # each row's probability of its true class
        present = [code for code in range(k) if np.any(actual == code)]
        groups = [own[actual == code] for code in present]
        ax.boxplot(groups, positions=present, widths=0.6, showfliers=False,
                   medianprops={"color": _ORANGE, "linewidth": 2})  # fmt: skip
        # Up to 200 points a class, jittered, show where the rows lie inside each box.
        rng = np.random.default_rng(0)
        for code, values in zip(present, groups, strict=True):
            sample = values if values.size <= 200 else rng.choice(values, 200, replace=False)
            x = code + rng.uniform(-0.22, 0.22, size=sample.size)
            ax.scatter(x, sample, s=6, alpha=0.35, color=_BLUE, edgecolors="none", zorder=1)
        for code in sorted(set(range(k)) - set(present)):
            ax.text(code, 0.5, "no rows", ha="center", va="center", rotation=90,
                    fontsize=8, color="grey")  # fmt: skip
        ax.axhline(1.0 / k, color="grey", linestyle=":", linewidth=1.2,
                   label=f"chance (1/{k} = {1.0 / k:.3g})")  # fmt: skip
        sizes = np.bincount(actual, minlength=k)
        tick_font = 9 if k <= 10 else 7
        ax.set_xticks(
            np.arange(k),
            [f"{_short(label, 20)} ({size})" for label, size in zip(labels, sizes, strict=True)],
            fontsize=tick_font,
        )
        if k > 4:
            for tick in ax.get_xticklabels():
                tick.set_rotation(45)
                tick.set_ha("right")
                tick.set_rotation_mode("anchor")
        ax.set_xlim(-0.6, k - 0.4)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(f"{true_axis} (rows)")
        ax.set_ylabel("predicted probability of the true class")
        ax.legend(loc="lower right", fontsize="small")
        heading = _text(title) if title else f"{name}: confidence in the true class"
        details = f"median p(true class) = {float(np.median(own)):.3f}    n = {n}"
    ax.grid(True, axis="y", alpha=0.3)
    if skipped:
        details += f"    ({skipped} non-finite left out)"
    ax.set_title(f"{heading}\n{details}", fontsize=10)
    return fig


def plot_class_probabilities(
    y_true: Any,
    probabilities: Any,
    classes: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    target: str | None = None,
    overwrite: str = "file",
) -> Path:
    """Draws how confident the model is on the rows of each true class.

    With two classes: overlaid histograms of p(class 1), one per true class, each as shares of
    that class's rows (so a rare class stays visible), with the 0.5 threshold marked. With more:
    one box per true class of the probability the model gave that class on its rows, with up to
    200 of the rows as points, and the chance level 1/K marked.

    Args:
        y_true: True class codes ``0..K-1``, shape (n,) or (n, 1).
        probabilities: The model's class probabilities, shape (n, K); for two classes a single
            column of p(class 1) (a sigmoid output) is accepted too.
        classes: The K class labels, in code order.
        path: Where the PNG goes.
        title: First line of the title; None for a default naming ``target``.
        target: Name of the target column, used in the labels.
        overwrite: ``"file"`` replaces a regular file at ``path``; ``"never"`` refuses any.

    Returns:
        The written path.

    Raises:
        ValueError: Fewer than 2 classes, a shape that does not fit, codes out of range,
            probabilities outside [0, 1], or an unknown ``overwrite``.
        DataError: There is no row.
        RunError: No row has finite probabilities (a diverged model), ``path`` exists under
            ``overwrite="never"``, or it cannot be written.

    Rows with a NaN or infinite probability are left out; the title counts them.
    """
    _check_overwrite(overwrite)
    fig = _probabilities_figure(y_true, probabilities, classes, title=title, target=target)
    return _save(fig, path, overwrite=overwrite)
