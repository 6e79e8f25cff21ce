"""Text (categorical) feature columns and text labels: types, vocabularies, the model's own
encoding, predictions on raw CSV values, unseen values, and many classes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

import builder
from builder.data import Table, problems
from builder.data.columns import Column, Design
from builder.errors import ConfigError, DataError
from builder.salary_data import generate_jobs
from tests.conftest import ROOT, write_yaml

FEATURES = ["age", "years_worked", "job_title", "region", "remote"]
OPTIONS = {"validation": 0.15, "test": 0.15, "seed": 42}


@pytest.fixture(scope="module")
def jobs_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("jobs") / "jobs.csv"
    generate_jobs(rows=900, seed=5).to_csv(path, index=False)
    return path


def _dummies(frame: pd.DataFrame, table: Table) -> np.ndarray:
    # Dummy coding written independently of builder: pandas one-hot, the vocabulary's first
    # (most frequent) value dropped.
    parts = []
    for name in table.features:
        if name in table.vocabularies:
            kept = table.vocabularies[name].values
            for value in kept[1:]:
                parts.append((frame[name].astype(str).str.strip() == value).to_numpy(float))
        else:
            parts.append(frame[name].to_numpy(float))
    return np.column_stack(parts)


def _train_rows(table: Table) -> np.ndarray:
    rows, part = [], []
    for chunk in table.chunks():
        rows.append(chunk.rows)
        part.append(chunk.part)
    return np.concatenate(rows)[np.concatenate(part) == 0]


@pytest.mark.parametrize("streamed", [False, True], ids=["in_memory", "streamed"])
def test_vocabularies_and_dummy_least_squares_match_pandas_and_numpy(jobs_csv, streamed):
    kwargs = {"streamed": True, "chunk_rows": 97} if streamed else {}
    table = Table(jobs_csv, FEATURES, "salary", **OPTIONS, **kwargs)
    stats = table.scan()
    assert table.kinds == {
        "age": "numeric", "years_worked": "numeric", "job_title": "categorical",
        "region": "categorical", "remote": "categorical",
    }  # fmt: skip
    frame = pd.read_csv(jobs_csv)
    train = frame.iloc[_train_rows(table)]
    for name in ("job_title", "region", "remote"):
        counts = train[name].value_counts()
        expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        vocabulary = table.vocabularies[name]
        assert list(zip(vocabulary.values, vocabulary.counts, strict=True)) == expected
    x = np.column_stack([_dummies(train, table), np.ones(len(train))])
    reference, *_ = np.linalg.lstsq(x, train["salary"].to_numpy(float), rcond=None)
    np.testing.assert_allclose(stats.coefficients, reference[:-1], rtol=1e-9)
    assert stats.intercept == pytest.approx(reference[-1], rel=1e-9)
    assert (
        stats.design.column_names()[2] == f"job_title={table.vocabularies['job_title'].values[1]}"
    )


def test_streamed_vocabularies_do_not_depend_on_the_chunk_size(jobs_csv):
    found = []
    for chunk_rows in (7, 250, 100_000):
        table = Table(jobs_csv, FEATURES, "salary", **OPTIONS, streamed=True, chunk_rows=chunk_rows)
        stats = table.scan()
        found.append((table.vocabularies, stats.coefficients))
    for vocabularies, coefficients in found[1:]:
        assert vocabularies == found[0][0]
        np.testing.assert_allclose(coefficients, found[0][1], rtol=1e-9)


def test_a_numeric_column_can_be_declared_categorical_and_text_never_numeric(tmp_path):
    path = tmp_path / "zip.csv"
    rows = [f"{20 + i % 30},{'02139' if i % 3 else '10001'},{1000 + 7 * i}" for i in range(60)]
    path.write_text("age,zip,salary\n" + "\n".join(rows) + "\n")
    table = Table(path, ["age", Column("zip", "categorical")], "salary", **OPTIONS)
    table.scan()
    # Read as text: the leading zero stays.
    assert set(table.vocabularies["zip"].values) == {"02139", "10001"}
    assert Table(path, ["age", "zip"], "salary", **OPTIONS).kinds["zip"] == "numeric"
    jobs = tmp_path / "jobs.csv"
    generate_jobs(rows=60, seed=1).to_csv(jobs, index=False)
    with pytest.raises(DataError, match="column 'job_title' must be numeric. Received: '"):
        Table(jobs, ["age", Column("job_title", "numeric")], "salary", **OPTIONS).scan()


def test_max_categories_and_min_count_keep_the_most_frequent(jobs_csv):
    spec = Column("job_title", None, max_categories=3, min_count=1)
    table = Table(jobs_csv, ["age", spec], "salary", **OPTIONS)
    table.scan()
    vocabulary = table.vocabularies["job_title"]
    assert len(vocabulary) == 3 and vocabulary.seen == 8
    assert list(vocabulary.counts) == sorted(vocabulary.counts, reverse=True)
    rare = Table(
        jobs_csv, ["age", Column("job_title", None, min_count=10_000)], "salary", **OPTIONS
    )
    with pytest.raises(DataError, match="column 'job_title' must have a value in the training"):
        rare.scan()


def test_unseen_values_are_an_error_only_under_unknown_error(tmp_path):
    frame = generate_jobs(rows=300, seed=2)
    path = tmp_path / "unseen.csv"
    frame.to_csv(path, index=False)
    # Rows in neither path's training split (their splits differ: permutation, row hash).
    trained = {*_train_rows(Table(path, FEATURES, "salary", **OPTIONS))}
    trained |= {*_train_rows(Table(path, FEATURES, "salary", **OPTIONS, streamed=True))}
    held_out = [row for row in range(300) if row not in trained][:2]
    frame.loc[held_out, "job_title"] = "astronaut"
    frame.to_csv(path, index=False)
    Table(path, FEATURES, "salary", **OPTIONS).scan()  # average: trains
    message = None
    for streamed in (False, True):
        table = Table(path, FEATURES, "salary", **OPTIONS, unknown="error", streamed=streamed)
        with pytest.raises(DataError) as info:
            table.scan()
        assert "column 'job_title' must hold values seen in training (data.unknown: error)" in (
            str(info.value)
        )
        assert f"Received: 'astronaut' on line {held_out[0] + 2}; training's values: " in (
            str(info.value)
        )
        message = message or str(info.value)
        assert str(info.value) == message  # the same line on both paths


def test_empty_text_cells_follow_data_missing(tmp_path):
    frame = generate_jobs(rows=200, seed=3)
    frame.loc[[4, 9], "region"] = ""
    path = tmp_path / "holes.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match="column 'region' must have no empty.*lines 6, 11"):
        Table(path, FEATURES, "salary", **OPTIONS).scan()
    dropped = Table(path, FEATURES, "salary", **OPTIONS, missing="drop")
    assert sum(dropped.scan().rows.values()) == 198
    filled = Table(path, FEATURES, "salary", **OPTIONS, missing="mean")
    filled.scan()
    window = next(filled.chunks())
    assert window.x[4, FEATURES.index("region")] == 1.0  # the most frequent training value


def test_text_target_classes_in_order_and_codes(jobs_csv):
    table = Table(jobs_csv, ["age", "years_worked", "job_title"], "level", **OPTIONS,
                  classification=True)  # fmt: skip
    stats = table.scan()
    assert table.labels.classes == ("junior", "lead", "mid", "senior")
    assert stats.classes == table.labels.classes and sum(stats.class_counts) == stats.rows["train"]
    frame = pd.read_csv(jobs_csv)
    rows = _train_rows(table)
    window = next(table.chunks())
    codes = window.y[window.part == 0]
    expected = pd.Index(table.labels.classes).get_indexer(frame["level"].iloc[rows])
    np.testing.assert_array_equal(codes, expected)


def test_problems_lists_text_column_rules_like_training(tmp_path):
    frame = generate_jobs(rows=200, seed=4)
    path = tmp_path / "p.csv"
    frame.to_csv(path, index=False)
    trained = set(_train_rows(Table(path, FEATURES, "salary", **OPTIONS)))
    frame.loc[min(set(range(200)) - trained), "job_title"] = "astronaut"
    frame.to_csv(path, index=False)
    assert problems(path, FEATURES, "salary") == []
    found = problems(path, FEATURES, "salary", unknown="error")
    assert len(found) == 1 and "must hold values seen in training" in found[0]


def test_collinear_features_are_named(tmp_path):
    rng = np.random.default_rng(0)
    age = rng.integers(20, 60, 400)
    school = rng.integers(8, 18, 400)
    frame = pd.DataFrame(
        {"age": age, "education": school, "experience": age - school - 6,
         "wage": 2.0 * school + 0.5 * (age - school - 6) + rng.normal(0, 1, 400)}
    )  # fmt: skip
    path = tmp_path / "wages.csv"
    frame.to_csv(path, index=False)
    stats = Table(path, ["age", "education", "experience"], "wage", **OPTIONS).scan()
    assert set(stats.collinear) == {"age", "education", "experience"}
    clean = Table(path, ["age", "education"], "wage", **OPTIONS).scan()
    assert clean.collinear == ()


def test_design_codes_unseen_values_as_the_training_frequencies():
    from builder.data.columns import Vocabulary

    vocabulary = Vocabulary(("a", "b", "c"), (6, 3, 1))
    design = Design(("x", "t"), {"t": vocabulary})
    x = np.array([[1.0, 1.0], [2.0, 3.0], [3.0, 0.0]])
    np.testing.assert_allclose(
        design.expand(x), [[1.0, 0.0, 0.0], [2.0, 0.0, 1.0], [3.0, 0.3, 0.1]]
    )


# ---- training, predicting, reloading


def _config(csv, tmp_path, **extra):
    raw = {
        "name": "jobs",
        "data": {"path": str(csv), "features": FEATURES, "target": "salary"},
        "model": {"layers": []},
        "training": {"epochs": 3, "batch_size": 128, "early_stopping": None},
    }
    for key, value in extra.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return write_yaml(tmp_path / "c.yaml", raw)


@pytest.fixture(scope="module")
def jobs_run(jobs_csv, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    return builder.train(_config(jobs_csv, tmp), runs_dir=tmp / "runs")


def test_the_run_records_types_and_the_model_holds_the_vocabularies(jobs_run):
    resolved = yaml.safe_load((jobs_run.path / "config.yaml").read_text())
    assert resolved["data"]["features"][2] == {"name": "job_title", "type": "categorical"}
    assert resolved["data"]["features"][0] == {"name": "age", "type": "numeric"}
    manifest = json.loads((jobs_run.path / "manifest.json").read_text())
    assert manifest["columns"]["job_title"]["type"] == "categorical"
    assert manifest["columns"]["job_title"]["inferred_from"]["line"] == 2
    layer = jobs_run.model.get_layer("categories")
    assert [c["name"] for c in layer.columns] == FEATURES
    assert (
        "job_title=" + layer.columns[2]["vocabulary"][1]
        in (jobs_run.metrics["baselines"]["least_squares"]["coefficients"])
    )
    assert isinstance(jobs_run.model, __import__("keras").Sequential)


def test_a_fresh_process_predicts_the_raw_csv_identically(
    jobs_run, jobs_csv, tmp_path, fresh_process
):
    frame = pd.read_csv(jobs_csv).head(50)
    frame.loc[frame.index[:3], "job_title"] = "astronaut"  # unseen: still predicted
    rows = tmp_path / "rows.csv"
    frame.drop(columns=["salary", "level"]).to_csv(rows, index=False)
    from builder.predict import Unseen, predict
    from builder.runs import load_run

    unseen = Unseen()
    here = predict(load_run(jobs_run.path), rows, unseen=unseen)
    assert unseen.counts == {"job_title": 3}
    out = tmp_path / "out.csv"
    code = (
        "import builder.cli, sys; sys.argv = ['builder', 'predict', "
        f"{str(jobs_run.path)!r}, '--data', {str(rows)!r}, '--output', {str(out)!r}]; "
        "builder.cli.main()"
    )
    result = fresh_process.run(code)
    assert result.returncode == 0, result.stderr
    assert "values not seen in training" in result.stderr and "3 in 'job_title'" in result.stderr
    there = pd.read_csv(out)
    np.testing.assert_array_equal(
        there["predicted_salary"].to_numpy(np.float32),
        here["predicted_salary"].to_numpy(np.float32),
    )
    # An unseen title is encoded as the average title: between the extreme titles' predictions.
    assert np.isfinite(there["predicted_salary"]).all()


def test_unknown_error_refuses_an_unseen_value_at_predict(jobs_csv, tmp_path):
    run = builder.train(
        _config(jobs_csv, tmp_path, data={"unknown": "error"}), runs_dir=tmp_path / "runs"
    )
    frame = pd.read_csv(jobs_csv).head(10)
    frame.loc[frame.index[6], "region"] = "mars"
    rows = tmp_path / "rows.csv"
    frame.to_csv(rows, index=False)
    from builder.predict import predict

    with pytest.raises(
        DataError, match="column 'region' must hold values seen in training.*'mars' on line 8"
    ):
        predict(run, rows)


@pytest.fixture(scope="module")
def level_run(jobs_csv, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("level")
    raw = {
        "name": "level",
        "task": "classification",
        "data": {"path": str(jobs_csv), "features": ["age", "years_worked", "job_title", "salary"],
                 "target": "level"},
        "model": {"layers": [{"type": "dense", "units": 16, "activation": "tanh"}]},
        "training": {"epochs": 15, "batch_size": 64, "class_weight": "balanced",
                     "optimizer": {"learning_rate": 0.02}},
    }  # fmt: skip
    return builder.train(write_yaml(tmp / "c.yaml", raw), runs_dir=tmp / "runs")


def test_many_text_classes_train_softmax_with_the_output_and_loss_chosen(level_run):
    config = level_run.config
    assert config.model.output.units == 4 and config.model.output.activation == "softmax"
    assert config.training.loss == "sparse_categorical_crossentropy"
    metrics = level_run.metrics
    assert metrics["test"]["accuracy"] > metrics["baselines"]["majority_class"]["accuracy"]
    assert {"accuracy", "macro_f1", "auc", "log_loss"} <= set(metrics["test"])
    assert "logistic" in metrics["baselines"]
    details = metrics["classes"]
    assert details["classes"] == ["junior", "lead", "mid", "senior"]
    matrix = np.array(details["confusion_matrix"])
    assert matrix.shape == (4, 4) and matrix.sum() == sum(
        level_run.manifest["data"]["rows"]["test"] for _ in [0]
    )
    manifest = json.loads((level_run.path / "manifest.json").read_text())
    assert manifest["classes"] == ["junior", "lead", "mid", "senior"]


def test_a_classifier_predicts_labels_and_probabilities(level_run, jobs_csv, tmp_path):
    from builder.predict import evaluate, predict

    rows = tmp_path / "rows.csv"
    pd.read_csv(jobs_csv).head(40).to_csv(rows, index=False)
    out = predict(level_run, rows)
    assert set(out["predicted_level"]) <= {"junior", "lead", "mid", "senior"}
    probabilities = out[[f"probability_{c}" for c in ("junior", "lead", "mid", "senior")]]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    best = probabilities.to_numpy().argmax(axis=1)
    assert list(out["predicted_level"]) == [("junior", "lead", "mid", "senior")[i] for i in best]
    scored = evaluate(level_run, rows)
    assert scored["rows"] == 40 and np.array(scored["classes"]["confusion_matrix"]).sum() == 40


def test_an_output_that_does_not_fit_the_classes_is_one_line_before_training(jobs_csv, tmp_path):
    raw = {
        "name": "bad",
        "task": "classification",
        "data": {"path": str(jobs_csv), "features": ["age", "years_worked"], "target": "level"},
        "model": {"output": {"units": 1, "activation": "sigmoid"}},
    }
    with pytest.raises(ConfigError) as info:
        builder.train(write_yaml(tmp_path / "c.yaml", raw), runs_dir=tmp_path / "runs")
    message = str(info.value)
    assert "model.output.units must be 4" in message and "junior, lead, mid, senior" in message
    assert "\n" not in message and not (tmp_path / "runs").exists()


def test_class_weight_names_a_class_the_target_lacks(jobs_csv, tmp_path):
    raw = {
        "name": "bad",
        "task": "classification",
        "data": {"path": str(jobs_csv), "features": ["age"], "target": "level"},
        "training": {"class_weight": {"intern": 2.0}, "epochs": 1},
    }
    with pytest.raises(DataError, match="class 'intern'"):
        builder.train(write_yaml(tmp_path / "c.yaml", raw), runs_dir=tmp_path / "runs")


# ---- the shipped text-column recipes (README's claims)


@pytest.fixture(scope="module")
def shipped_jobs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("shipped")
    names = ("jobs_linear", "jobs_mlp", "jobs_level")
    return {name: builder.train(ROOT / "configs" / f"{name}.yaml", runs_dir=runs) for name in names}


@pytest.mark.slow
def test_shipped_linear_text_config_reaches_least_squares_with_dummies(shipped_jobs):
    from builder.inspection import raw_equation

    run = shipped_jobs["jobs_linear"]
    lsq = run.metrics["baselines"]["least_squares"]
    assert run.metrics["test"]["mse"] <= 1.01 * lsq["mse"]
    coefficients, _ = raw_equation(run.model, run.config.data.feature_names)
    assert set(coefficients) == set(lsq["coefficients"])  # the same dummy coding
    for name, reference in lsq["coefficients"].items():
        assert coefficients[name] == pytest.approx(reference, rel=0.03), name


@pytest.mark.slow
def test_shipped_mlp_beats_least_squares_with_dummies(shipped_jobs):
    run = shipped_jobs["jobs_mlp"]
    lsq = run.metrics["baselines"]["least_squares"]["mse"]
    assert run.metrics["test"]["mse"] < 0.8 * lsq


@pytest.mark.slow
def test_shipped_classifier_beats_the_majority_class_next_to_logistic(shipped_jobs):
    run = shipped_jobs["jobs_level"]
    test, baselines = run.metrics["test"], run.metrics["baselines"]
    assert test["accuracy"] > baselines["majority_class"]["accuracy"] + 0.3
    assert baselines["logistic"]["accuracy"] > baselines["majority_class"]["accuracy"]
    assert test["accuracy"] >= baselines["logistic"]["accuracy"] - 0.03
    assert run.metrics["warnings"] == []


def test_validate_shows_what_training_will_infer(jobs_csv, tmp_path, capsys):
    from builder.cli_common import validate

    path = _config(jobs_csv, tmp_path)
    assert validate([path]) == 0
    out = capsys.readouterr().out
    assert "job_title categorical (8 values)" in out and "remote categorical (2 values)" in out
    raw = yaml.safe_load(path.read_text())
    raw.update(task="classification", model={"output": {"units": 3, "activation": "softmax"}})
    raw["data"].update(target="level", features=["age", "job_title"])
    bad = write_yaml(tmp_path / "bad.yaml", raw)
    assert validate([bad]) == 2
    err = capsys.readouterr().err
    assert "model.output.units must be 4 for the 4 classes of target column 'level'" in err


def test_a_bare_model_file_names_its_columns_and_predicts_text(jobs_run, jobs_csv, tmp_path):
    from builder.predict import predict
    from builder.runs import load_run

    bare = tmp_path / "jobs.keras"
    bare.write_bytes((jobs_run.path / "model.keras").read_bytes())
    run = load_run(bare)
    assert run.config.data.feature_names == FEATURES
    assert run.config.data.categorical == ["job_title", "region", "remote"]
    rows = tmp_path / "rows.csv"
    pd.read_csv(jobs_csv).head(20).to_csv(rows, index=False)
    np.testing.assert_array_equal(
        predict(run, rows)["predicted_y"].to_numpy(), predict(jobs_run, rows)["predicted_salary"]
    )


def test_streamed_text_columns_train_and_predict(jobs_csv, tmp_path):
    run = builder.train(
        _config(jobs_csv, tmp_path, data={"streaming": True}), runs_dir=tmp_path / "runs"
    )
    assert run.manifest["data"]["streaming"] is True
    layer = run.model.get_layer("categories")
    table = Table(jobs_csv, FEATURES, "salary", **OPTIONS, streamed=True)
    assert layer.columns[2]["vocabulary"] == list(table.vocabularies["job_title"].values)
    lsq = run.metrics["baselines"]["least_squares"]
    assert set(lsq["coefficients"]) >= {
        f"job_title={v}" for v in layer.columns[2]["vocabulary"][1:]
    }
