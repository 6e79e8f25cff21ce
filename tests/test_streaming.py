"""Streamed tables (builder.data.Table, streamed=True): the hash split, the statistics pass,
batches, errors (the bad-CSV corpus gets the in-memory path's messages), and training results
against the in-memory path.

Tolerances (README, "Streaming and big CSVs"): on the same rows, the streaming statistics equal
numpy's within 1e-9 relative (normalization, target, least-squares coefficients: float64 sums,
merged chunk by chunk); the streamed model's Normalization layer holds them within float32
rounding (1e-6); a trained run lands within 1% of its own split's least-squares test MSE on
either path, and the two paths' ratios agree within 1%.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import builder
from builder import data as streaming
from builder.data import TEST, TRAIN, VALIDATION, Table, split_codes
from builder.data import scoring as metrics_mod
from builder.data import table as table_mod
from builder.data.columns import Column
from builder.data.tfdata import dataset
from builder.errors import DataError
from builder.predict import holdout_predictions
from builder.runs import load_run
from tests.conftest import FEATURES, TARGET, config_dict, make_linear_frame, run_python, write_yaml
from tests.test_bad_csvs import ACCEPTED as GOOD_CSVS
from tests.test_bad_csvs import FOLDER as CORPUS
from tests.test_bad_csvs import REJECTED as BAD_CSVS
from tests.test_bad_csvs import options as corpus_options

FRACTIONS = {"validation": 0.15, "test": 0.15, "seed": 42}


def _streamed(*args, **kwargs) -> Table:
    return Table(*args, streamed=True, **kwargs)


def _stream(path, **kwargs) -> Table:
    options = {**FRACTIONS, **kwargs}
    return _streamed(path, FEATURES, TARGET, **options)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_linear_frame(rows=3000, seed=4, noise=2.0)


@pytest.fixture(scope="module")
def csv(tmp_path_factory, frame):
    # Target first, features out of order, a text column between: names, not positions, count.
    path = tmp_path_factory.mktemp("stream") / "shuffled columns.csv"
    frame[[TARGET, "Big Number", "comment", "x.dot", "Age (years)"]].to_csv(path, index=False)
    return path


def _parts(frame: pd.DataFrame) -> np.ndarray:
    return split_codes(np.arange(len(frame)), 0.15, 0.15, 42)


# ---- the split


def test_split_is_deterministic_disjoint_and_near_its_fractions():
    rows = np.arange(200_000)
    codes = split_codes(rows, 0.15, 0.15, 42)
    np.testing.assert_array_equal(codes, split_codes(rows, 0.15, 0.15, 42))
    shares = np.bincount(codes, minlength=3) / len(rows)
    # Binomial noise at 200,000 rows: a standard deviation of 0.0008.
    np.testing.assert_allclose(shares, [0.70, 0.15, 0.15], atol=0.004)
    # Another seed is another split; a row's part depends only on its number and the seed.
    assert (codes != split_codes(rows, 0.15, 0.15, 43)).mean() > 0.3
    np.testing.assert_array_equal(codes[1000:2000], split_codes(rows[1000:2000], 0.15, 0.15, 42))


def test_chunks_cover_every_row_once_whatever_the_chunk_size(csv, frame):
    seen = {}
    for chunk_rows in (7, 1000, 100_000):
        rows, parts = [], []
        for chunk in _stream(csv, chunk_rows=chunk_rows).chunks():
            rows.append(chunk.rows)
            parts.append(chunk.part)
        seen[chunk_rows] = (np.concatenate(rows), np.concatenate(parts))
    rows, parts = seen[7]
    np.testing.assert_array_equal(rows, np.arange(len(frame)))
    for other_rows, other_parts in seen.values():
        np.testing.assert_array_equal(other_rows, rows)
        np.testing.assert_array_equal(other_parts, parts)
    assert set(np.unique(parts)) == {TRAIN, VALIDATION, TEST}


# ---- the statistics pass


def test_statistics_match_numpy_on_the_same_rows(csv, frame):
    stats = _stream(csv, chunk_rows=251).scan()
    parts = _parts(frame)
    x = frame[FEATURES].to_numpy(np.float64)
    y = frame[TARGET].to_numpy(np.float64)
    train = parts == TRAIN
    assert stats.rows == {
        "train": int(train.sum()),
        "validation": int((parts == VALIDATION).sum()),
        "test": int((parts == TEST).sum()),
    }
    np.testing.assert_allclose(stats.feature_mean, x[train].mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(stats.feature_variance, x[train].var(axis=0), rtol=1e-9)
    assert stats.target_mean == pytest.approx(y[train].mean(), rel=1e-9)
    assert stats.target_std == pytest.approx(y[train].std(), rel=1e-9)
    design = np.hstack([x[train], np.ones((train.sum(), 1))])
    reference, *_ = np.linalg.lstsq(design, y[train], rcond=None)
    np.testing.assert_allclose(stats.coefficients, reference[:-1], rtol=1e-9)
    assert stats.intercept == pytest.approx(reference[-1], rel=1e-9)


def test_column_order_and_extra_columns_do_not_matter(csv, frame, tmp_path):
    plain = tmp_path / "plain.csv"
    frame[[*FEATURES, TARGET]].to_csv(plain, index=False)
    a, b = _stream(csv).scan(), _stream(plain).scan()
    np.testing.assert_array_equal(a.coefficients, b.coefficients)
    np.testing.assert_array_equal(a.feature_mean, b.feature_mean)
    assert a.rows == b.rows and a.sha256 != b.sha256


def test_missing_cells_dropped_or_filled_like_in_memory(frame, tmp_path):
    holes = frame.copy()
    holes.loc[[5, 400, 2999], "x.dot"] = np.nan
    holes.loc[[17], TARGET] = np.nan
    path = tmp_path / "holes.csv"
    holes.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"column 'x.dot' must have no empty .* on lines 7, 402"):
        _stream(path, chunk_rows=1000).scan()

    dropped = _stream(path, missing="drop", chunk_rows=1000).scan()
    assert dropped.dropped_rows == 4 and sum(dropped.rows.values()) == len(frame) - 4

    filled = _stream(path, missing="mean", chunk_rows=1000).scan()
    assert filled.dropped_rows == 1 and filled.filled_cells == 3
    parts = _parts(frame)
    keep = holes[TARGET].notna().to_numpy()
    x = holes[FEATURES].to_numpy(np.float64)
    train = (parts == TRAIN) & keep
    means = np.nanmean(x[train], axis=0)
    np.testing.assert_allclose(filled.fill, means, rtol=1e-9)
    x = np.where(np.isnan(x), means, x)
    y = holes[TARGET].to_numpy(np.float64)
    np.testing.assert_allclose(filled.feature_variance, x[train].var(axis=0), rtol=1e-9)
    design = np.hstack([x[train], np.ones((train.sum(), 1))])
    reference, *_ = np.linalg.lstsq(design, y[train], rcond=None)
    np.testing.assert_allclose(filled.coefficients, reference[:-1], rtol=1e-9)


# ---- batches


def test_dataset_holds_each_training_row_once_reshuffled_each_epoch(csv, frame):
    stream = _stream(csv, chunk_rows=300, shuffle_rows=700)
    train_y = np.sort(frame[TARGET].to_numpy()[_parts(frame) == TRAIN].astype(np.float32))
    data = dataset(stream, "train", 64, shuffle_seed=5)
    first, second = list(data.as_numpy_iterator()), list(data.as_numpy_iterator())  # epochs 0, 1
    again = list(dataset(stream, "train", 64, shuffle_seed=5).as_numpy_iterator())  # epoch 0
    # Full batches across window boundaries (windows hold 700+ rows, not a multiple of 64).
    assert all(len(y) == 64 for _, y in first[:-1]) and 0 < len(first[-1][1]) <= 64
    assert first[0][0].shape == (64, 3) and first[0][1].shape == (64, 1)
    for batches in (first, second):
        np.testing.assert_array_equal(
            np.sort(np.concatenate([y for _, y in batches])[:, 0]), train_y
        )
    np.testing.assert_array_equal(first[0][1], again[0][1])
    assert not np.array_equal(first[0][1], second[0][1])
    in_order = np.concatenate([y for _, y in dataset(stream, "test", 64).as_numpy_iterator()])
    expected = frame[TARGET].to_numpy()[_parts(frame) == TEST].astype(np.float32)
    np.testing.assert_array_equal(in_order[:, 0], expected)


def test_numpy_batches_are_tf_datas_batches_with_a_flat_target(csv, frame):
    # JAX and PyTorch train from builder.data.batches: the same batches as tf.data's streamed
    # dataset, pass by pass, with y flat (as Keras hands an array's y to a step).
    from builder.data.batches import batches

    stream = _stream(csv, chunk_rows=300, shuffle_rows=700)
    data = dataset(stream, "train", 64, shuffle_seed=5)
    passes = [list(data.as_numpy_iterator()) for _ in range(2)]  # passes 0, 1
    numpy = batches(stream, "train", 64, shuffle_seed=5, steps=len(passes[0]) + 3)
    got = [numpy[i] for i in range(len(numpy))]
    assert numpy[0][1].shape == (64,) and numpy[0][1].dtype == np.float32
    np.testing.assert_array_equal(numpy[0][1], got[0][1])  # an index read again (Keras peeks)
    for (x, y), (tf_x, tf_y) in zip(got, passes[0] + passes[1][:3], strict=True):
        np.testing.assert_array_equal(x, tf_x)
        np.testing.assert_array_equal(y, tf_y[:, 0])
    numpy.on_epoch_end()  # the next epoch goes on within pass 1
    np.testing.assert_array_equal(numpy[0][1], passes[1][3][1][:, 0])


def test_numpy_batches_in_memory_hold_each_row_once_reshuffled_each_pass(frame, tmp_path):
    from builder.data.batches import batches

    path = tmp_path / "memory.csv"
    frame.to_csv(path, index=False)
    table = Table(path, FEATURES, TARGET, **FRACTIONS)
    train_y = np.sort(table.float32("train")[1])
    data = batches(table, "train", 64, shuffle_seed=5)
    first = [data[i] for i in range(len(data))]
    data.on_epoch_end()
    second = [data[i] for i in range(len(data))]
    assert all(len(y) == 64 for _, y in first[:-1]) and 0 < len(first[-1][1]) <= 64
    for one_pass in (first, second):
        np.testing.assert_array_equal(np.sort(np.concatenate([y for _, y in one_pass])), train_y)
    assert not np.array_equal(first[0][1], second[0][1])
    again = batches(table, "train", 64, shuffle_seed=5)
    np.testing.assert_array_equal(again[0][1], first[0][1])


def test_shuffled_windows_are_consecutive_rows(csv, frame):
    stream = _stream(csv, chunk_rows=300, shuffle_rows=700)
    train_y = frame[TARGET].to_numpy()[_parts(frame) == TRAIN].astype(np.float32)
    windows = [y[:, 0] for _, y in stream.windows("train", shuffle_seed=5)]
    assert all(len(w) >= 700 for w in windows[:-1]) and len(windows) > 1
    start = 0
    for window in windows:  # each window: the next rows of the part, in another order
        np.testing.assert_array_equal(
            np.sort(window), np.sort(train_y[start : start + len(window)])
        )
        start += len(window)
    assert start == len(train_y)


def test_dataset_knows_its_size(csv):
    stream = _stream(csv)
    data = dataset(stream, "validation", 100)
    assert int(data.cardinality()) == -(-stream.stats.rows["validation"] // 100)
    assert sum(len(y) for _, y in data) == stream.stats.rows["validation"]


# ---- scoring


def test_evaluate_matches_numpy_metrics(csv, frame):
    stream = _stream(csv, chunk_rows=500)
    stats = stream.scan()
    test = _parts(frame) == TEST
    x = frame[FEATURES].to_numpy(np.float64)[test]
    y = frame[TARGET].to_numpy(np.float64)[test]
    predict = lambda features: features.astype(np.float64) @ [2.9, -2.1, 0.05] + 99.0  # noqa: E731
    scores, baselines, details = stream.evaluate(predict, "regression")
    assert details is None
    expected = metrics_mod.regression_metrics(y, predict(x.astype(np.float32)))
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, rel=1e-9), key
    lsq = metrics_mod.regression_metrics(y, x @ stats.coefficients + stats.intercept)
    assert baselines["least_squares"]["mse"] == pytest.approx(lsq["mse"], rel=1e-9)
    assert set(baselines["least_squares"]["coefficients"]) == set(FEATURES)
    # The mean predictor predicts the training split's mean, scored on the test rows.
    train_mean = frame[TARGET].to_numpy(np.float64)[_parts(frame) == TRAIN].mean()
    assert baselines["mean_predictor"]["value"] == pytest.approx(train_mean, rel=1e-9)
    mean_scores = metrics_mod.regression_metrics(y, np.full(len(y), train_mean))
    for key, value in mean_scores.items():
        assert baselines["mean_predictor"][key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_classification_scores_exact_below_the_sample_and_sampled_above(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 3))
    y = (x @ [1.0, -1.0, 0.5] + rng.normal(size=4000) > 0).astype(int)
    frame = pd.DataFrame(x, columns=FEATURES).assign(**{TARGET: y})
    path = tmp_path / "labels.csv"
    frame.to_csv(path, index=False)
    score = 1 / (1 + np.exp(-(x @ [1.0, -1.0, 0.5])))
    test = _parts(frame) == TEST

    def predict(features):
        p = 1 / (1 + np.exp(-(features.astype(np.float64) @ [1.0, -1.0, 0.5])))
        return np.stack([1 - p, p], axis=1)

    stream = _stream(path, classification=True, chunk_rows=300)
    exact, baselines, details = stream.evaluate(predict, "classification")
    from sklearn.metrics import accuracy_score, roc_auc_score

    assert exact["accuracy"] == pytest.approx(accuracy_score(y[test], score[test] >= 0.5), rel=1e-9)
    assert exact["auc"] == pytest.approx(roc_auc_score(y[test], score[test]), rel=1e-9)
    assert np.array(details["confusion_matrix"]).sum() == test.sum()
    assert baselines["majority_class"]["class"] in ("0", "1")
    assert baselines["logistic"]["accuracy"] > baselines["majority_class"]["accuracy"]
    sampler = metrics_mod.scorer("classification", ("0", "1"))
    sampler.sample_rows = 200
    for rows, features, labels in stream.arrays("test"):
        sampler.update(labels, predict(features), streaming.row_uniform(rows, 42, salt=1))
    sampled = sampler.result()
    assert sampled["accuracy"] == pytest.approx(exact["accuracy"], rel=1e-9)
    assert (
        sampled["auc"] == pytest.approx(exact["auc"], abs=0.05) and sampled["auc"] != exact["auc"]
    )


# ---- errors


def test_missing_column_is_a_one_line_data_error(csv):
    stream = _streamed(csv, [*FEATURES[:2], "Age"], TARGET, **FRACTIONS)
    with pytest.raises(DataError) as info:
        stream.scan()
    message = str(info.value)
    assert "must have a column 'Age'" in message and csv.name in message and "\n" not in message


def test_non_numeric_value_in_a_later_chunk_names_its_line(frame, tmp_path):
    bad = frame.astype({"x.dot": object})
    bad.loc[2500, "x.dot"] = "n/a?"
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(
        DataError, match=r"column 'x.dot' must be numeric. Received: 'n/a\?' on line 2502"
    ):
        declared = [Column(name, "numeric") for name in FEATURES]
        _streamed(path, declared, TARGET, **FRACTIONS, chunk_rows=1000).scan()


def test_too_few_rows_and_non_binary_labels(tmp_path, frame):
    tiny = tmp_path / "tiny.csv"
    frame.head(3).to_csv(tiny, index=False)
    with pytest.raises(DataError, match="must have enough rows for the splits"):
        _stream(tiny).scan()
    path = tmp_path / "labels.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match="must hold at most 1,000 classes for classification"):
        _stream(path, classification=True).scan()


def test_auto_streams_only_above_the_size_limit(csv, monkeypatch):
    assert not streaming.use_streaming("auto", csv)
    assert streaming.use_streaming(True, csv) and not streaming.use_streaming(False, csv)
    monkeypatch.setattr(table_mod, "AUTO_STREAMING_BYTES", csv.stat().st_size - 1)
    assert streaming.use_streaming("auto", csv)
    assert not streaming.use_streaming("auto", csv.with_name("absent.csv"))


# ---- training


def test_streamed_training_matches_the_in_memory_path(tmp_path):
    frame = make_linear_frame(rows=4000, seed=8, noise=3.0)
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    ratios, runs = {}, {}
    for mode in (False, True):
        raw = config_dict(
            str(path),
            epochs=20,
            optimizer={"learning_rate": 0.1},
            early_stopping=None,
        )
        raw["data"]["streaming"] = mode
        config = write_yaml(tmp_path / f"c{int(mode)}.yaml", raw)
        run = builder.train(config, runs_dir=tmp_path / "runs")
        lsq = run.metrics["baselines"]["least_squares"]
        ratios[mode], runs[mode] = run.metrics["test"]["mse"] / lsq["mse"], run
    assert ratios[False] == pytest.approx(1.0, abs=0.01)
    assert ratios[True] == pytest.approx(1.0, abs=0.01)
    assert ratios[True] == pytest.approx(ratios[False], abs=0.01)

    streamed = runs[True]
    manifest = json.loads((streamed.path / "manifest.json").read_text())
    assert manifest["data"]["streaming"] is True and manifest["status"] == "complete"
    assert sum(manifest["data"]["rows"].values()) == len(frame)
    on_disk = json.loads((streamed.path / "metrics.json").read_text())
    in_memory = runs[False].metrics
    assert set(on_disk) == set(in_memory)
    assert set(on_disk["baselines"]["least_squares"]) == set(
        in_memory["baselines"]["least_squares"]
    )
    assert set(on_disk["test"]) == set(in_memory["test"])

    stats = _stream(path).scan()
    layer = streamed.model.get_layer("normalization")
    mean, variance = (np.asarray(w).ravel() for w in layer.get_weights()[:2])
    np.testing.assert_allclose(mean, stats.feature_mean, rtol=1e-6)
    np.testing.assert_allclose(variance, stats.feature_variance, rtol=1e-6)
    coefficients = on_disk["baselines"]["least_squares"]["coefficients"]
    np.testing.assert_allclose([coefficients[f] for f in FEATURES], stats.coefficients, rtol=1e-12)

    # `builder plot RUN` re-reads the run's test split: the hash-split rows, not a permutation's.
    y_true, y_pred = holdout_predictions(load_run(streamed.path))
    assert len(y_true) == manifest["data"]["rows"]["test"]
    assert np.mean((y_pred - y_true) ** 2) == pytest.approx(on_disk["test"]["mse"], rel=1e-6)


@pytest.mark.parametrize("name", sorted(BAD_CSVS))
def test_bad_csv_corpus_gets_the_in_memory_messages(name):
    stream = Table(CORPUS / name, **corpus_options(name, streamed=True))
    with pytest.raises(DataError) as info:
        stream.scan()
    message = str(info.value)
    assert "\n" not in message and name in message, message
    for fragment in BAD_CSVS[name]:
        assert fragment in message, message


@pytest.mark.parametrize("name", sorted(GOOD_CSVS))
def test_unusual_but_valid_csvs_stream_every_row(name):
    stream = Table(CORPUS / name, **corpus_options(name, streamed=True))
    assert sum(stream.scan().rows.values()) == GOOD_CSVS[name]


def test_the_data_path_hands_out_numpy_without_tensorflow(csv):
    # JAX and PyTorch backends take numpy batches: only builder.data.tfdata imports TensorFlow.
    code = f"""
import sys
from builder.data import Table
for streamed in (False, True):
    table = Table({str(csv)!r}, {FEATURES!r}, {TARGET!r}, validation=0.15, test=0.15, seed=42,
                  streamed=streamed, chunk_rows=700 if streamed else None, shuffle_rows=700)
    x, y = next(table.windows("train", shuffle_seed=1))
    scores, _, _ = table.evaluate(lambda x: x[:, 0], "regression")
    assert x.dtype.name == "float32" and y.shape == (len(x), 1) and scores["mse"] > 0
    print(streamed, len(x), table.counts()["train"])
assert "tensorflow" not in sys.modules and "keras" not in sys.modules, "imported"
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    # In memory, the whole training part is one window; streamed, windows of consecutive chunks.
    assert lines[1] == lines[2] and lines[3] == "True" and int(lines[4]) < int(lines[5])
