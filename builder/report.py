"""One self-contained HTML page about a run: ``builder report``.

The page needs nothing but itself: no scripts, no web fonts, no links out; its images are PNGs
inlined as base64 (drawn by ``builder.plotting``). It shows the config, the test metrics next to
the baselines the run recorded, the learning curves, predicted against actual values (for a
classifier: the per-class scores, the confusion matrix and the class probabilities), the
network with its weights, the learned equation of a no-hidden-layer model, permutation
importance and one explained row; a tune run's page shows its trials. Every number from
``metrics.json`` is also in a ``data-value`` attribute, exactly as recorded, so a test can read
it back. A part that cannot be made (the data file has gone, a network too wide to draw) says
why in its place; the rest of the page is still written.
"""

from __future__ import annotations

import base64
import html
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from builder.errors import BuilderError, RunError
from builder.runs import Run

STYLE = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b;
  background: #fff; margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 32px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 1.05em; margin: 18px 0 6px; }
.meta, .note { color: #555; font-size: 0.92em; }
.warning { background: #fff4e5; border-left: 4px solid #e67e00; padding: 6px 10px; }
nav { font-size: 0.92em; margin: 10px 0 0; }
nav a { margin-right: 12px; color: #1f5fa8; }
table { border-collapse: collapse; margin: 6px 0 10px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d6d6d6; padding: 3px 8px; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f5f8; }
td.text { text-align: left; }
pre { background: #f6f8fa; padding: 10px 12px; overflow-x: auto; font-size: 0.85em;
  border: 1px solid #e1e4e8; }
code { font-size: 0.92em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.bar { display: inline-block; height: 0.8em; background: #1f77b4; vertical-align: middle; }
.wide { overflow-x: auto; }
@media print {
  main { max-width: none; padding: 0; }
  nav { display: none; }
  section { break-inside: avoid-page; }
  pre { white-space: pre-wrap; }
}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def number(value: Any) -> str:
    """A number as the page shows it: six significant digits, thousands separated."""
    if value is None:
        return "nan"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if value != value:
        return "nan"
    if abs(value) >= 1e5:
        return f"{value:,.0f}"
    if abs(value) >= 1000:
        return f"{value:,.2f}"
    return f"{value:.6g}"


def _cell(value: Any, key: str | None = None) -> str:
    data = "" if key is None else f' data-key="{_e(key)}" data-value="{_e(repr(value))}"'
    return f"<td{data}>{_e(number(value))}</td>"


def _png(draw: Callable[[Path], Path], alt: str) -> str:
    """An ``<img>`` of the PNG that ``draw(path)`` writes, inlined as base64."""
    with tempfile.TemporaryDirectory(prefix="builder-report-") as folder:
        path = draw(Path(folder) / "figure.png")
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _section(anchor: str, title: str, body: Callable[[], str]) -> tuple[str, str, str]:
    """A section's anchor, title and HTML; a BuilderError becomes a note in its place."""
    try:
        content = body()
    except BuilderError as error:
        content = f'<p class="note">Not shown: {_e(error)}</p>'
    except Exception as error:  # noqa: BLE001
        # A bug in one part (not a refusal builder explains) still leaves the rest of the
        # page; the note names it so that it is reported, not mistaken for a missing file.
        message = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        content = (
            f'<p class="warning">Not shown: this part failed with {_e(type(error).__name__)}'
            f"{': ' + _e(message) if message else ''} (a bug in builder).</p>"
        )
    return anchor, title, content


def _page(title: str, header: str, sections: list[tuple[str, str, str]]) -> str:
    nav = " ".join(f'<a href="#{a}">{_e(t)}</a>' for a, t, _ in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # No icon request: the page loads nothing but itself.
        '<link rel="icon" href="data:,">',
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>",
        f"<body><main>{header}<nav>{nav}</nav>",
    ]
    for anchor, name, content in sections:
        parts.append(f'<section id="{_e(anchor)}"><h2>{_e(name)}</h2>{content}</section>')
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def _header(name: str, path: Path | None, manifest: dict[str, Any]) -> str:
    data = manifest.get("data") or {}
    bits = [f"run <code>{_e(path)}</code>"]
    for key in ("status", "started", "finished"):
        if manifest.get(key):
            bits.append(f"{key} {_e(manifest[key])}")
    if data.get("sha256"):
        bits.append(f"data SHA-256 <code>{_e(str(data['sha256'])[:12])}</code>")
    made = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (
        f'<h1>{_e(name)}</h1><p class="meta">{" · ".join(bits)}</p>'
        f'<p class="meta">report written {made} by builder report</p>'
    )


def _config_html(config: Any) -> str:
    import yaml

    from builder.runs import resolved_config

    text = yaml.safe_dump(resolved_config(config), sort_keys=False)
    return f"<pre>{_e(text)}</pre>"


#: How the metrics table names each baseline ``metrics.json`` may hold; another is named by its key.
BASELINE_NAMES = {
    "mean_predictor": "mean predictor",
    "least_squares": "least squares",
    "majority_class": "majority class",
    "logistic": "logistic regression",
}


def _baseline_label(key: str, baseline: dict[str, Any]) -> str:
    label = BASELINE_NAMES.get(key, key.replace("_", " "))
    if key == "majority_class" and baseline.get("class") is not None:
        label += f" (always {baseline['class']})"
    return label


def _metrics_html(metrics: dict[str, Any]) -> str:
    from builder.compare import baseline_ratio

    test = metrics.get("test") or {}
    if not test:
        raise RunError("the run has no test metrics (metrics.json is missing or empty).")
    base = metrics.get("baselines") or {}
    names = list(test)
    rows = ["<table><tr><th>model</th>" + "".join(f"<th>{_e(n)}</th>" for n in names) + "</tr>"]
    rows.append(
        "<tr><td>network</td>" + "".join(_cell(test[n], f"test.{n}") for n in names) + "</tr>"
    )
    # Whichever baselines the run recorded: a regression run has the mean predictor and least
    # squares, a classifier the majority class and logistic regression; the trivial one first.
    known = [key for key in BASELINE_NAMES if key in base]
    for key in known + sorted(set(base) - set(known)):
        baseline = base[key]
        if not isinstance(baseline, dict):
            continue
        cells = "".join(
            _cell(baseline[n], f"baselines.{key}.{n}") if n in baseline else "<td></td>"
            for n in names
        )
        rows.append(f"<tr><td>{_e(_baseline_label(key, baseline))}</td>{cells}</tr>")
    rows.append("</table>")
    ratio = baseline_ratio(metrics)
    if ratio is not None:
        if ratio["baseline"] == "logistic":
            how = (
                "logistic regression is fitted on the training split: about the best a network "
                "with no hidden layer can do"
            )
        else:
            how = (
                "least squares is fitted exactly on the training split: the best a network with "
                "no hidden layer can do"
            )
        rows.append(
            f"<p>test {_e(ratio['metric'])} is <strong>{ratio['ratio']:.4g}x</strong> "
            f"{_e(BASELINE_NAMES.get(ratio['baseline'], ratio['baseline']))}'s (both on the "
            f"same test rows; {how}).</p>"
        )
    for warning in metrics.get("warnings") or []:
        rows.append(f'<p class="warning">{_e(warning)}</p>')
    return "".join(rows)


def _per_class_html(metrics: dict[str, Any]) -> str:
    details = metrics.get("classes") or {}
    per_class = details.get("per_class") or {}
    if not per_class:
        raise RunError("the run's metrics.json has no per-class scores.")
    columns = ("precision", "recall", "f1", "support")
    rows = ["<table><tr><th>class</th>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"]
    for label, scores in per_class.items():
        cells = "".join(
            _cell(scores[c], f"classes.per_class.{label}.{c}") if c in scores else "<td></td>"
            for c in columns
        )
        rows.append(f"<tr><td>{_e(label)}</td>{cells}</tr>")
    rows.append("</table>")
    rows.append(
        f'<p class="note">On the test rows: precision is the share of the rows predicted as a '
        "class that are of it, recall the share of a class's rows predicted as it, F1 their "
        "harmonic mean, support the class's row count. Macro F1 (above) is the mean of the "
        f"{len(per_class)} F1 scores.</p>"
    )
    return "".join(rows)


def _curves_html(run: Run) -> str:
    from builder import plotting
    from builder.runs import early_stopping

    if run.history is None or len(run.history) == 0:
        raise RunError("the run has no history.csv.")
    stopping = early_stopping(run) or {}
    restored = stopping.get("restored_epoch")
    image = _png(
        lambda path: plotting.plot_history(run.history, path, restored_epoch=restored),
        "learning curves",
    )
    notes = []
    if stopping.get("stopped_epoch") is not None:
        notes.append(
            f"Early stopping ended the training at epoch {stopping['stopped_epoch']} (no "
            f"{_e(stopping['monitor'])} improvement for {stopping['patience']} epochs)."
        )
    if restored is not None:
        notes.append(f"The model holds the weights of epoch {restored} (marked).")
    if not notes:
        notes.append(f"Every one of the {len(run.history)} epochs ran; no early stop.")
    return image + f'<p class="note">{" ".join(notes)}</p>'


def _predictions_html(run: Run) -> str:
    from builder import plotting
    from builder.predict import holdout_predictions

    y_true, y_pred = holdout_predictions(run)
    target = run.config.data.target
    image = _png(
        lambda path: plotting.plot_predictions(y_true, y_pred, path, target=target),
        "predicted against actual",
    )
    return image + (
        f'<p class="note">Predicted against actual {_e(target)} on the {len(y_true)} test rows; '
        "the diagonal is a perfect prediction.</p>"
    )


#: Above this many classes the confusion matrix is only drawn, not also tabled.
MAX_CONFUSION_TABLE = 20


class _Holdout:
    """A classifier's test split, scored once for the sections that need it: true codes,
    class probabilities and the labels."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.found: tuple[np.ndarray, np.ndarray, list[str]] | None = None

    def get(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        if self.found is None:
            from builder.predict import class_labels, holdout_split
            from builder.training import predict_probabilities

            x, y = holdout_split(self.run, "report")
            probabilities = predict_probabilities(self.run.model, x)
            self.found = (
                y.astype(np.int64),
                probabilities,
                list(class_labels(self.run).classes),
            )
        return self.found


def _confusion_html(run: Run, holdout: _Holdout) -> str:
    from builder import plotting
    from builder.data.classes import predicted_class

    y_true, probabilities, classes = holdout.get()
    y_pred = predicted_class(probabilities)
    target = run.config.data.target
    image = _png(
        lambda path: plotting.plot_confusion(y_true, y_pred, classes, path, target=target),
        "confusion matrix",
    )
    parts = [image]
    k = len(classes)
    if k <= MAX_CONFUSION_TABLE:
        counts = plotting.confusion_counts(y_true, y_pred, k)
        parts.append('<div class="wide"><table><tr><th>true \\ predicted</th>')
        parts.extend(f"<th>{_e(label)}</th>" for label in classes)
        parts.append("</tr>")
        for i, label in enumerate(classes):
            cells = "".join(
                f'<td data-key="confusion.{i}.{j}" data-value="{int(c)}">{int(c)}</td>'
                for j, c in enumerate(counts[i])
            )
            parts.append(f"<tr><td>{_e(label)}</td>{cells}</tr>")
        parts.append("</table></div>")
    parts.append(
        f'<p class="note">The {len(y_true)} test rows: true {_e(target)} down, predicted '
        "across; the predicted class is the most probable one. The colour is the share of the "
        "true class's rows, so the diagonal is each class's recall.</p>"
    )
    return "".join(parts)


def _probabilities_html(run: Run, holdout: _Holdout) -> str:
    from builder import plotting

    y_true, probabilities, classes = holdout.get()
    target = run.config.data.target
    image = _png(
        lambda path: plotting.plot_class_probabilities(
            y_true, probabilities, classes, path, target=target
        ),
        "class probabilities",
    )
    if len(classes) == 2:
        note = (
            f"The predicted probability of {_e(classes[1])} on the test rows of each true class "
            "(as shares of that class's rows); 0.5 or more predicts it."
        )
    else:
        note = (
            "The probability the network gave each test row's true class, one box per class; "
            "the dotted line is chance."
        )
    return image + f'<p class="note">{note}</p>'


def network_names(run: Run) -> tuple[list[str], list[str]]:
    """The names of the drawn network's inputs and outputs.

    Inputs are the features, or with categorical ones the encoded columns the first Dense layer
    reads (``feature=value`` for one-hot, ``feature[i]`` for an embedding). Outputs are the
    target; for a softmax classifier, one class label per unit.
    """
    from builder.inspection import first_layer_inputs

    inputs = first_layer_inputs(run)
    target = run.config.data.target
    outputs = [target]
    units = int(run.model.outputs[0].shape[-1])
    if run.config.task == "classification":
        from builder.predict import class_labels

        classes = list(class_labels(run).classes)
        if units == len(classes) and units > 1:
            outputs = [f"p({label})" for label in classes]
        elif units == 1:
            outputs = [f"p({classes[-1]})"]
    if len(outputs) != units:
        outputs = [f"{target}[{j}]" for j in range(units)]
    return inputs, outputs


def _network_html(run: Run) -> str:
    from builder import plotting
    from builder.inspection import network_weights

    inputs, outputs = network_names(run)
    image = _png(
        lambda path: plotting.plot_network(
            network_weights(run),
            path,
            input_names=inputs,
            output_names=outputs,
            standardized_inputs=run.config.data.normalize == "zscore",
        ),
        "the network and its weights",
    )
    notes = [
        "Line width and opacity grow with |weight|: small weights are drawn thin and faded "
        "(in a large network the smallest are left out, as the legend says); blue is positive, "
        "red negative."
    ]
    if run.config.data.normalize == "zscore":
        notes.append(
            "The model standardizes its inputs (normalize: zscore), so the first layer's weights "
            "are per standard deviation of each feature, not per raw unit."
        )
    if run.config.task == "regression" and run.config.training.target_scaling == "zscore":
        notes.append(
            "The network outputs a standardized target; target scaling then multiplies it by "
            "the training standard deviation and adds the mean."
        )
    return image + f'<p class="note">{" ".join(notes)}</p>'


def _equation_html(run: Run) -> str:
    from builder.inspection import inspect_run

    equation = inspect_run(run)["equation"]
    if equation is None:
        return '<p class="note">The network has hidden layers: no single equation.</p>'
    parts = [f"<p>Learned (raw units):</p><pre>{_e(equation['text'])}</pre>"]
    lsq = equation["least_squares"]
    if lsq:
        parts.append(f"<p>Least squares (exact, training split):</p><pre>{_e(lsq['text'])}</pre>")
    return "".join(parts)


def _importance_html(run: Run) -> str:
    from builder.importance import permutation_importance

    result = permutation_importance(run)
    top = max((item["mean"] for item in result["features"]), default=0.0)
    rows = [
        "<table><tr><th>feature</th><th>mean increase</th><th>std</th><th>of the loss</th>"
        "<th></th></tr>"
    ]
    for item in result["features"]:
        width = 0 if top <= 0 else max(0.0, item["mean"] / top) * 160
        rows.append(
            f"<tr><td>{_e(item['name'])}</td>{_cell(item['mean'])}{_cell(item['std'])}"
            f"<td>{item['relative']:.1%}</td>"
            f'<td class="text"><span class="bar" style="width:{width:.0f}px"></span></td></tr>'
        )
    rows.append("</table>")
    rows.append(
        f'<p class="note">The increase in test {_e(result["loss"])} (from '
        f"{_e(number(result['test_loss']))}) when one feature's values are shuffled among the "
        f"{result['rows']} test rows, {result['repeats']} times from seed {result['seed']}: "
        "mean and standard deviation.</p>"
    )
    return "".join(rows)


def _explain_html(run: Run) -> str:
    from builder.explain import MAX_NEURONS_SHOWN, MAX_TERMS_SHOWN, explain, top_indices

    path = run.config.data_path()
    if path is None:
        raise RunError("the run records no data file.")
    result = explain(run, path, 0)
    parts = [f'<p class="note">Row 0 of <code>{_e(path)}</code>, followed through the network.</p>']
    parts.append("<table><tr><th>input</th><th>raw</th><th>normalized</th></tr>")
    for item in result["inputs"]:
        parts.append(
            f"<tr><td>{_e(item['name'])}</td>{_cell(item['raw'])}"
            f"{_cell(item['value']) if item['scale'] is not None else '<td></td>'}</tr>"
        )
    parts.append("</table>")
    for layer in result["layers"]:
        neurons = layer["neurons"]
        keep, left = top_indices([n["influence"] for n in neurons], MAX_NEURONS_SHOWN)
        title = f"{layer['name']} ({layer['type']}, {layer['activation']}): {len(neurons)} neurons"
        if left:
            title += f"; the {len(keep)} that move the next layer most ({left} left out)"
        parts.append(f'<h3>{_e(title)}</h3><div class="wide"><table>')
        parts.append(
            "<tr><th>neuron</th><th>weight x input</th><th>bias</th><th>weighted sum</th>"
            "<th>activation</th><th>output</th></tr>"
        )
        for j in keep:
            neuron = neurons[j]
            pairs = zip(neuron["weights"], neuron["inputs"], strict=True)
            terms = [w * item["value"] for w, item in pairs]
            shown, hidden = top_indices(terms, MAX_TERMS_SHOWN)
            text = "<br>".join(
                f"{_e(number(neuron['weights'][i]))} x {_e(number(neuron['inputs'][i]['value']))}"
                f" ({_e(neuron['inputs'][i]['name'])})"
                for i in shown
            )
            if hidden:
                rest = sum(t for i, t in enumerate(terms) if i not in set(shown))
                text += f"<br>{_e(number(rest))} ({hidden} more inputs)"
            activation = neuron["activation"]
            if activation == "threshold":
                activation = f"threshold {number(neuron['threshold'])}"
            parts.append(
                f'<tr><td>{_e(neuron["name"])}</td><td class="text">{text}</td>'
                f"{_cell(neuron['bias'])}{_cell(neuron['weighted_sum'])}"
                f'<td class="text">{_e(activation)}</td>{_cell(neuron["output"])}</tr>'
            )
        parts.append("</table></div>")
    target = result["target"]
    if result["target_scaling"] is not None:
        scaling = result["target_scaling"]
        parts.append(
            f"<p>Target scaling: {_e(number(result['network_output'][0]))} x "
            f"{_e(number(scaling['scale']))} + {_e(number(scaling['offset']))} = "
            f"{_e(number(result['output'][0]))}</p>"
        )
    if result["task"] == "classification":
        probabilities = ", ".join(
            f"{_e(k)}: {_e(number(v))}" for k, v in result["probabilities"].items()
        )
        parts.append(
            f"<p>Logit {_e(', '.join(number(v) for v in result['logits']))}; class "
            f"probabilities {probabilities}.</p>"
        )
    actual = "" if result["actual"] is None else f" (actual {_e(number(result['actual']))})"
    parts.append(
        f"<p><strong>Prediction: {_e(target)} = {_e(number(result['prediction']))}</strong>"
        f"{actual}</p>"
    )
    if result.get("contributions"):
        parts.append("<table><tr><th>term</th><th>coefficient</th><th>value</th>"
                     "<th>contribution</th></tr>")  # fmt: skip
        raw = {item["name"]: item["raw"] for item in result["inputs"]}
        for name, value in sorted(result["contributions"].items(), key=lambda kv: -abs(kv[1])):
            parts.append(
                f"<tr><td>{_e(name)}</td>{_cell(result['coefficients'][name])}"
                f"{_cell(raw[name])}{_cell(value)}</tr>"
            )
        total = sum(result["contributions"].values()) + result["intercept"]
        parts.append(
            f"<tr><td>intercept</td><td></td><td></td>{_cell(result['intercept'])}</tr>"
            f"<tr><th>sum = prediction</th><th></th><th></th><th>{_e(number(total))}</th></tr>"
            "</table>"
        )
    return "".join(parts)


def run_report(run: Run) -> str:
    """The HTML page of a training run."""
    name = run.config.name
    sections = [
        _section("metrics", "Test metrics and baselines", lambda: _metrics_html(run.metrics)),
    ]
    if run.config.task == "classification":
        # Both plots draw the same scored test split: it is read and predicted once.
        holdout = _Holdout(run)
        sections += [
            _section("classes", "Per-class scores", lambda: _per_class_html(run.metrics)),
            _section("curves", "Learning curves", lambda: _curves_html(run)),
            _section("predictions", "Confusion matrix", lambda: _confusion_html(run, holdout)),
            _section(
                "probabilities",
                "Class probabilities",
                lambda: _probabilities_html(run, holdout),
            ),
        ]
    else:
        sections += [
            _section("curves", "Learning curves", lambda: _curves_html(run)),
            _section("predictions", "Predicted vs actual", lambda: _predictions_html(run)),
        ]
    sections += [
        _section("network", "The network and its weights", lambda: _network_html(run)),
        _section("equation", "Learned equation", lambda: _equation_html(run)),
        _section("importance", "Permutation importance", lambda: _importance_html(run)),
        _section("explain", "One row through the network", lambda: _explain_html(run)),
        _section("config", "Config", lambda: _config_html(run.config)),
    ]
    return _page(f"builder report: {name}", _header(name, run.path, run.manifest), sections)


def tune_report(path: Path) -> str:
    """The HTML page of a tune run: the search, its trials table and the best trial's config."""
    import csv

    from builder.runs import read_json

    manifest = read_json(path / "manifest.json")
    name = manifest.get("name", path.parent.name)
    objective = manifest.get("objective")

    def search() -> str:
        best = manifest.get("best") or {}
        rows = [
            f"<tr><td>{_e(label)}</td><td class=\"text\">{_e(manifest.get(key))}</td></tr>"
            for label, key in (("tuner", "tuner"), ("objective", "objective"),
                               ("direction", "direction"), ("trials run", "trials_run"),
                               ("max trials", "max_trials"))
        ]  # fmt: skip
        if best:
            rows.append(
                f'<tr><td>best trial</td><td class="text">{_e(best.get("trial"))} '
                f"({_e(objective)} {_e(number(best.get('score')))})</td></tr>"
            )
        return "<table>" + "".join(rows) + "</table>"

    def trials() -> str:
        results = path / "results.csv"
        if not results.exists():
            raise RunError(f"{results} does not exist (no trial has finished).")
        with open(results, encoding="utf-8", newline="") as handle:
            table = list(csv.reader(handle))
        header, body = table[0], table[1:]
        rows = ['<div class="wide"><table><tr>' + "".join(f"<th>{_e(h)}</th>" for h in header)]
        rows.append("</tr>")
        for row in body:
            rows.append("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>")
        rows.append("</table></div>")
        return "".join(rows)

    def best_config() -> str:
        best = path / "best.yaml"
        if not best.exists():
            raise RunError(f"{best} does not exist (the search has not finished).")
        return f"<pre>{_e(best.read_text(encoding='utf-8'))}</pre>"

    def search_config() -> str:
        return f"<pre>{_e((path / 'config.yaml').read_text(encoding='utf-8'))}</pre>"

    sections = [
        _section("search", "The search", search),
        _section("trials", "Trials", trials),
        _section("best", "Best trial's config (best.yaml)", best_config),
        _section("config", "Search config", search_config),
    ]
    return _page(f"builder report: {name} (tune)", _header(name, path, manifest), sections)


def write_report(path: str | Path, output: str | Path | None = None) -> Path:
    """Write the report of a run directory (default ``RUN/report.html``), whole.

    Args:
        path: a run directory written by ``builder train`` or ``builder tune``.
        output: where the HTML goes.

    Returns:
        The written path.

    Raises:
        RunError: the path is not a run directory, or the output cannot be written.
    """
    from builder.runs import load_run, read_json, write_text

    path = Path(path)
    if not path.is_dir():
        raise RunError(f"report takes a run directory. Received: {path} (not a directory)")
    manifest_path = path / "manifest.json"
    manifest = read_json(manifest_path) if manifest_path.exists() else {}
    page = tune_report(path) if manifest.get("kind") == "tune" else run_report(load_run(path))
    target = Path(output) if output is not None else path / "report.html"
    try:
        write_text(target, page)
    except OSError as err:
        raise RunError(f"report --output {target} must be writable. Received: {err}") from None
    return target
