"""builder report: one self-contained page, checked in headless Chromium.

Chromium is Debian's ``chromium`` package; ``.ci/run`` installs it when it is missing. Without
it the browser test fails (it is not skipped): a report nobody opened is not tested.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from builder.cli import app
from tests.conftest import PROCESS_TIMEOUT, write_yaml

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")


# Chromium's own background traffic (updates, sync, spell-check dictionaries) is turned off; a
# request the page makes is told apart by its network isolation key, the page's site (file://).
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
    "--disable-features=Translate,OptimizationHints,MediaRouter,SpellCheck",
    "--enable-logging=stderr", "--v=0",
]  # fmt: skip


def open_page(page, tmp_path, *extra):
    """Load ``page`` in headless Chromium: (stdout, console messages, page requests)."""
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    net_log = profile.with_suffix(".netlog.json")
    done = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--log-net-log={net_log}",
         *extra, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=PROCESS_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requests = [
        event["params"]["url"]
        for event in log["events"]
        if event["type"] == start
        and "file://" in event["params"].get("network_isolation_key", "")
        and not event["params"]["url"].startswith(("file:", "data:"))
    ]
    return done.stdout, console, requests


@pytest.mark.slow
def test_report_in_a_real_browser(trained_run, tmp_path):
    from PIL import Image

    page = tmp_path / "report.html"
    result = invoke("report", trained_run.path, "--output", page)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(page)

    # The harness sees what it must: a console error and a request out, on a control page.
    control = tmp_path / "control.html"
    control.write_text(
        '<script>console.error("boom")</script><img src="https://example.com/x.png">'
    )
    _, console, requests = open_page(control, tmp_path, "--dump-dom")
    assert any("boom" in line for line in console) and requests == ["https://example.com/x.png"]

    dom, console, requests = open_page(page, tmp_path, "--dump-dom")
    assert console == [] and requests == []
    assert "<h1>linear_test</h1>" in dom
    # Every metric of metrics.json is on the page, exactly.
    shown = dict(re.findall(r'data-key="([^"]+)" data-value="([^"]+)"', dom))
    metrics = trained_run.metrics
    expected = {f"test.{k}": v for k, v in metrics["test"].items()}
    for base in ("mean_predictor", "least_squares"):
        for name in metrics["test"]:
            expected[f"baselines.{base}.{name}"] = metrics["baselines"][base][name]
    assert len(expected) == 12 and set(expected) <= set(shown)
    for key, value in expected.items():
        assert float(shown[key]) == value, key
    for section in ("metrics", "curves", "predictions", "network", "equation", "importance",
                    "explain", "config"):  # fmt: skip
        assert f'<section id="{section}">' in dom
    assert "Not shown" not in dom

    shot = tmp_path / "shot.png"
    _, console, requests = open_page(
        page, tmp_path, f"--screenshot={shot}", "--window-size=1280,900"
    )
    assert console == [] and requests == []
    pixels = np.asarray(Image.open(shot).convert("L"), np.float64)
    assert pixels.shape == (900, 1280)
    assert pixels.std() > 10 and (pixels < 200).mean() > 0.01  # text and tables, not blank


def test_report_is_self_contained_and_readable(trained_run, tmp_path):
    from builder.report import write_report

    page = write_report(trained_run.path, tmp_path / "r.html").read_text()
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # nothing loaded from elsewhere
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    assert page.count('src="data:image/png;base64,') == 3  # curves, predictions, network
    assert "per standard deviation of each feature" in page  # normalized model's weights
    assert "@media print" in page
    equation = trained_run.metrics["baselines"]["least_squares"]
    assert "Least squares (exact, training split)" in page and equation["coefficients"]


def test_report_default_path_and_a_missing_data_file(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run.path, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["path"] = str(tmp_path / "gone.csv")
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    result = invoke("report", run)
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text()
    # The parts that need the data say why they are missing; the others are there.
    assert page.count("Not shown: the run&#x27;s data file") == 2  # predictions, importance
    assert 'data-key="test.mse"' in page and "Learned (raw units)" in page


def test_tune_run_report_shows_the_trials(trained_run, tmp_path):
    tune = tmp_path / "salary_tune" / "run"
    tune.mkdir(parents=True)
    shutil.copy(trained_run.path / "config.yaml", tune / "config.yaml")
    shutil.copy(trained_run.path / "config.yaml", tune / "best.yaml")
    manifest = {
        "kind": "tune",
        "name": "salary_tune",
        "tuner": "random",
        "objective": "val_loss",
        "trials_run": 2,
        "best": {"trial": "1", "score": 0.5},
        "status": "complete",
    }
    (tune / "manifest.json").write_text(json.dumps(manifest))
    (tune / "results.csv").write_text("trial,status,val_loss\n0,COMPLETED,0.75\n1,COMPLETED,0.5\n")
    result = invoke("report", tune)
    assert result.exit_code == 0, result.output
    page = (tune / "report.html").read_text()
    assert "<th>val_loss</th>" in page and "<td>0.75</td>" in page
    assert "best trial" in page and "Best trial&#x27;s config (best.yaml)" in page


def test_report_of_a_missing_run_is_one_line(tmp_path):
    result = invoke("report", tmp_path / "nope")
    assert result.exit_code == 2
    assert result.output.startswith("error: report takes a run directory.")


# --------------------------------------------------------------------------------------------
# Classifiers: `builder plot` and the report draw classes, not predicted against actual
# --------------------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n"


def class_config(tmp_path, *, binary: bool) -> dict:
    """A small classifier: 3 text classes (with a text feature), or 0/1 from numbers only."""
    rng = np.random.default_rng(5)
    rows = 240
    frame = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows)})
    if binary:
        frame["won"] = (frame["a"] - frame["b"] > 0).astype(int)
        features, target = ["a", "b"], "won"
    else:
        frame["shade"] = rng.choice(["red", "green", "blue"], rows)
        score = frame["a"] + (frame["shade"] == "red")
        frame["grade"] = np.where(score > 0.7, "high", np.where(score < -0.3, "low", "mid"))
        features, target = ["a", "b", "shade"], "grade"
    csv = tmp_path / "classes.csv"
    frame.to_csv(csv, index=False)
    return {
        "name": "binary_test" if binary else "grades_test",
        "task": "classification",
        "data": {"path": str(csv), "features": features, "target": target},
        "model": {"layers": [{"type": "dense", "units": 4, "activation": "tanh"}]},
        "training": {"epochs": 4, "seed": 3, "optimizer": {"learning_rate": 0.05}},
    }


@pytest.fixture(scope="module", params=["three_classes", "binary"])
def class_run(request, tmp_path_factory):
    """One short classifier run of each kind, shared by the plot and report tests."""
    import builder

    tmp = tmp_path_factory.mktemp(request.param)
    raw = class_config(tmp, binary=request.param == "binary")
    return builder.train(write_yaml(tmp / "c.yaml", raw), runs_dir=tmp / "runs")


def test_plot_of_a_classifier_draws_its_confusion_and_probabilities(
    class_run, tmp_path, monkeypatch
):
    from builder import plotting

    def no_scatter(*args, **kwargs):
        raise AssertionError("a classifier has no predicted-vs-actual scatter")

    drawn = {}
    confusion = plotting.plot_confusion

    def spy(y_true, y_pred, classes, path, **kwargs):
        drawn.update(y_true=y_true, y_pred=y_pred, classes=classes)
        return confusion(y_true, y_pred, classes, path, **kwargs)

    monkeypatch.setattr(plotting, "plot_predictions", no_scatter)
    monkeypatch.setattr(plotting, "plot_confusion", spy)
    out = tmp_path / "plots"
    result = invoke("plot", class_run.path, "--output-dir", out)
    assert result.exit_code == 0, result.output
    names = ("history.png", "confusion.png", "probabilities.png")
    assert result.output.split() == [str(out / name) for name in names]
    for name in names:
        assert (out / name).read_bytes().startswith(PNG), name
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no predictions.png
    # The test split, labels and codes line up with what training scored on it.
    recorded = class_run.metrics["classes"]
    assert drawn["classes"] == recorded["classes"]
    counts = plotting.confusion_counts(drawn["y_true"], drawn["y_pred"], len(drawn["classes"]))
    assert counts.tolist() == recorded["confusion_matrix"]

    # Drawn again, each file is replaced, and the network has a unit per class (or one).
    assert invoke("plot", class_run.path, "--output-dir", out).exit_code == 0
    result = invoke("plot", class_run.path, "--network", "--output-dir", out)
    assert result.exit_code == 0, result.output
    assert (out / "network.png").read_bytes().startswith(PNG)


def sections(page: str) -> dict[str, str]:
    found = re.findall(r'<section id="([^"]+)">(.*?)</section>', page, re.S)
    return dict(found)


def test_report_of_a_classifier_shows_its_classes(class_run, tmp_path):
    from builder.report import write_report

    page = write_report(class_run.path, tmp_path / "r.html").read_text()
    metrics = class_run.metrics
    classes = metrics["classes"]["classes"]
    parts = sections(page)
    assert list(parts)[:5] == ["metrics", "classes", "curves", "predictions", "probabilities"]
    for name in ("metrics", "classes", "curves", "predictions", "probabilities", "network"):
        assert "Not shown" not in parts[name], (name, parts[name][:500])
    for name in ("predictions", "probabilities", "network"):
        assert parts[name].count('src="data:image/png;base64,') == 1, name
    assert not re.search(r'(src|href)="(?!data:|#)', page) and "<script" not in page
    assert "R²" not in page and "<th>r2</th>" not in page and "Predicted vs actual" not in page
    assert "Confusion matrix" in page and "Class probabilities" in page

    # The metrics table lists the classifier's baselines, exactly as recorded.
    shown = dict(re.findall(r'data-key="([^"]+)" data-value="([^"]+)"', page))
    for name, value in metrics["test"].items():
        assert float(shown[f"test.{name}"]) == value, name
        for base in ("majority_class", "logistic"):
            assert float(shown[f"baselines.{base}.{name}"]) == metrics["baselines"][base][name]
    assert not any(key.startswith(("baselines.mean_predictor", "baselines.least_squares"))
                   for key in shown)  # fmt: skip
    majority = metrics["baselines"]["majority_class"]["class"]
    assert f"majority class (always {majority})" in parts["metrics"]
    assert "logistic regression" in parts["metrics"]

    # The per-class table and the confusion counts are those of metrics.json.
    for label, scores in metrics["classes"]["per_class"].items():
        assert f"<td>{label}</td>" in parts["classes"]
        for column in ("precision", "recall", "f1", "support"):
            key = f"classes.per_class.{label}.{column}"
            assert float(shown[key]) == scores[column], key
    for i, row in enumerate(metrics["classes"]["confusion_matrix"]):
        for j, count in enumerate(row):
            assert int(shown[f"confusion.{i}.{j}"]) == count
    assert [f"<th>{label}</th>" in parts["predictions"] for label in classes] == [True] * len(
        classes
    )
    assert ("0.5 or more predicts it" in parts["probabilities"]) == (len(classes) == 2)
    assert "</strong> logistic regression's (both on the same test rows" in parts["metrics"]


def test_the_drawn_network_names_a_classifier_s_inputs_and_classes(class_run):
    from builder.report import network_names

    inputs, outputs = network_names(class_run)
    if class_run.config.data.target == "won":
        assert inputs == ["a", "b"] and outputs == ["p(1)"]  # one sigmoid unit
    else:
        # One input per category, as the encoding layer orders them (most frequent first).
        assert inputs[:2] == ["a", "b"]
        assert sorted(inputs[2:]) == ["shade=blue", "shade=green", "shade=red"]
        assert outputs == ["p(high)", "p(low)", "p(mid)"]


def test_a_part_that_fails_unexpectedly_is_a_note_and_the_page_is_written(
    trained_run, tmp_path, monkeypatch
):
    import builder.importance
    from builder.report import write_report

    def broken(run):
        raise ValueError("boom\nsecond line")

    monkeypatch.setattr(builder.importance, "permutation_importance", broken)
    parts = sections(write_report(trained_run.path, tmp_path / "r.html").read_text())
    assert (
        "Not shown: this part failed with ValueError: boom (a bug in builder)"
        in (parts["importance"])
    )
    assert "second line" not in parts["importance"]
    assert "Not shown" not in parts["explain"] and "Not shown" not in parts["network"]
