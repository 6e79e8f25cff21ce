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
import pytest
import yaml
from typer.testing import CliRunner

from builder.cli import app
from tests.conftest import PROCESS_TIMEOUT

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
