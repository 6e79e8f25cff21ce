"""A training that diverges stops at once with one line, and its run is marked failed."""

from __future__ import annotations

import json

import pytest

import builder
from builder.config import validate_config
from builder.training import Diverged
from tests.conftest import config_dict


def _diverging(csv, **training):
    # Plain SGD at a huge rate on an unscaled target: the loss overflows within an epoch or two.
    return config_dict(
        str(csv),
        epochs=30,
        optimizer={"name": "sgd", "learning_rate": 10.0, "schedule": "constant"},
        target_scaling="none",
        early_stopping=None,
        **training,
    )


def test_diverging_training_stops_and_marks_the_run_failed(linear_csv, tmp_path):
    with pytest.raises(Diverged, match=r"training diverged at epoch \d+: .*must be finite"):
        builder.train(validate_config(_diverging(linear_csv)), runs_dir=tmp_path)
    (manifest,) = tmp_path.glob("*/*/manifest.json")
    record = json.loads(manifest.read_text())
    assert record["status"] == "failed"
    assert not (manifest.parent / "metrics.json").exists()


def test_cli_reports_divergence_in_one_line(linear_csv, tmp_path):
    from typer.testing import CliRunner

    from builder.cli import app
    from tests.conftest import write_yaml

    config = write_yaml(tmp_path / "c.yaml", _diverging(linear_csv))
    result = CliRunner().invoke(app, ["train", str(config), "--runs-dir", str(tmp_path / "r")])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "training diverged at epoch" in errors[0]
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_a_diverging_trial_is_failed_and_the_search_goes_on(linear_csv, tmp_path):
    from builder.tuning import tune

    raw = _diverging(linear_csv)
    raw["training"]["epochs"] = 3
    raw["training"]["optimizer"]["learning_rate"] = {"search": "choice", "values": [10.0, 0.001]}
    raw["tune"] = {"tuner": "random", "max_trials": 2, "seed": 3}
    result = tune(validate_config(raw), runs_dir=tmp_path)
    statuses = sorted(row["status"] for row in result.rows)
    assert statuses == ["COMPLETED", "FAILED"], result.rows


def test_json_outputs_are_strict(tmp_path):
    import math

    import numpy as np

    from builder.runs import json_text, write_json

    data = {"auc": float("nan"), "r2": -math.inf, "n": np.int64(3), "xs": np.array([1.5, np.nan])}
    write_json(tmp_path / "m.json", data)
    text = (tmp_path / "m.json").read_text()

    def refuse(name):
        raise ValueError(name)

    parsed = json.loads(text, parse_constant=refuse)  # NaN / Infinity would call refuse
    assert parsed == {"auc": None, "n": 3, "r2": None, "xs": [1.5, None]}
    assert json.loads(json_text(data), parse_constant=refuse)["auc"] is None
