"""Tests of the salary generator and of the shipped ``data/salaries.csv``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from builder import salary_data
from builder.salary_data import (
    COLUMNS,
    NOISE_VARIANCE,
    SENIORITY_THRESHOLD_YEARS,
    experience_effect,
    generate_salaries,
    iter_salary_chunks,
    main,
    seniority_step,
    write_salaries,
)

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "salaries.csv"
FEATURES = ["age", "years_worked", "past_salary", "years_in_industry"]


@pytest.fixture(scope="module")
def shipped() -> pd.DataFrame:
    return pd.read_csv(SHIPPED)


def _lstsq_mse(features: np.ndarray, target: np.ndarray, train_rows: int | None = None) -> float:
    """Fits least squares with an intercept and returns the MSE on the rows after ``train_rows``."""
    design = np.column_stack([np.ones(len(target)), features])
    train = slice(None, train_rows)
    test = slice(train_rows, None) if train_rows is not None else slice(None)
    coef, *_ = np.linalg.lstsq(design[train], target[train], rcond=None)
    residual = target[test] - design[test] @ coef
    return float(np.mean(residual**2))


def test_defaults_reproduce_shipped_file_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "salaries.csv"
    write_salaries(out)
    assert out.read_bytes() == SHIPPED.read_bytes()


def test_cli_reproduces_shipped_file(tmp_path: Path) -> None:
    out = tmp_path / "cli.csv"
    assert main(["--output", str(out)]) == 0
    assert out.read_bytes() == SHIPPED.read_bytes()


def test_cli_rejects_negative_rows(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--rows", "-1", "--output", str(tmp_path / "x.csv")])


def test_shipped_file_shape_and_columns(shipped: pd.DataFrame) -> None:
    assert list(shipped.columns) == list(COLUMNS)
    assert len(shipped) == 10_000
    assert not shipped.isna().any().any()
    assert all(dtype == np.int64 for dtype in shipped.dtypes)


def test_shipped_file_constraints(shipped: pd.DataFrame) -> None:
    assert shipped["age"].between(22, 65).all()
    assert (shipped["years_worked"] >= 0).all()
    assert (shipped["years_worked"] <= shipped["age"] - 18).all()
    assert (shipped["years_in_industry"] >= 0).all()
    assert (shipped["years_in_industry"] <= shipped["years_worked"]).all()
    assert (shipped["past_salary"] > 0).all()
    assert (shipped["salary"] > 0).all()
    # Dollar-like magnitudes, not standardized or thousands.
    assert shipped["salary"].between(20_000, 300_000).all()
    assert 60_000 < shipped["salary"].mean() < 160_000


def test_shipped_file_covers_both_sides_of_the_step(shipped: pd.DataFrame) -> None:
    senior = shipped["years_in_industry"] >= SENIORITY_THRESHOLD_YEARS
    assert 0.2 < senior.mean() < 0.8


def test_past_salary_grows_with_experience(shipped: pd.DataFrame) -> None:
    assert shipped["past_salary"].corr(shipped["years_worked"]) > 0.5


def test_same_seed_same_frame_different_seed_different() -> None:
    first = generate_salaries(rows=500, seed=3)
    pd.testing.assert_frame_equal(first, generate_salaries(rows=500, seed=3))
    assert not first.equals(generate_salaries(rows=500, seed=4))


def test_fewer_rows_is_a_prefix() -> None:
    pd.testing.assert_frame_equal(generate_salaries(rows=100), generate_salaries().iloc[:100])


def test_chunks_total_rows_index_and_determinism() -> None:
    blocks = list(iter_salary_chunks(rows=2_345, seed=7, chunk_rows=1_000))
    assert [len(block) for block in blocks] == [1_000, 1_000, 345]
    whole = pd.concat(blocks)
    pd.testing.assert_index_equal(whole.index, pd.RangeIndex(2_345))
    again = pd.concat(iter_salary_chunks(rows=2_345, seed=7, chunk_rows=1_000))
    pd.testing.assert_frame_equal(whole, again)
    # Blocks come from distinct streams, not one stream repeated.
    assert not blocks[0].iloc[:345].reset_index(drop=True).equals(blocks[2].reset_index(drop=True))
    # A shorter last block is the start of the full block it would otherwise be.
    longer = pd.concat(iter_salary_chunks(rows=3_000, seed=7, chunk_rows=1_000))
    pd.testing.assert_frame_equal(whole, longer.iloc[:2_345])


def test_chunked_write_matches_generate(tmp_path: Path) -> None:
    out = tmp_path / "chunked.csv"
    write_salaries(out, rows=2_500, seed=11, chunk_rows=1_000)
    frame = pd.read_csv(out)
    expected = pd.concat(iter_salary_chunks(rows=2_500, seed=11, chunk_rows=1_000))
    pd.testing.assert_frame_equal(frame, expected.reset_index(drop=True))


def test_generate_is_one_default_chunk() -> None:
    (only,) = iter_salary_chunks(rows=1_000, seed=5)
    pd.testing.assert_frame_equal(generate_salaries(rows=1_000, seed=5), only)


def test_zero_rows(tmp_path: Path) -> None:
    assert list(generate_salaries(rows=0).columns) == list(COLUMNS)
    out = tmp_path / "empty.csv"
    write_salaries(out, rows=0)
    assert out.read_text() == ",".join(COLUMNS) + "\n"


@pytest.mark.parametrize(
    "kwargs", [{"rows": -1}, {"seed": -1}, {"chunk_rows": 0}], ids=["rows", "seed", "chunk_rows"]
)
def test_invalid_arguments_raise_before_writing(tmp_path: Path, kwargs: dict[str, int]) -> None:
    out = tmp_path / "bad.csv"
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        write_salaries(out, **kwargs)
    assert not out.exists()


def test_noise_variance_is_the_clipped_normal_variance() -> None:
    draws = np.random.default_rng(0).standard_normal(1_000_000)
    clip = salary_data.NOISE_CLIP_SIGMAS
    sampled = np.var(salary_data.NOISE_SIGMA * np.clip(draws, -clip, clip))
    assert sampled == pytest.approx(NOISE_VARIANCE, rel=0.01)


def test_least_squares_is_clearly_above_the_noise_floor(shipped: pd.DataFrame) -> None:
    features = shipped[FEATURES].to_numpy(float)
    target = shipped["salary"].to_numpy(float)
    train_rows = 7_000
    linear_mse = _lstsq_mse(features, target, train_rows)
    r_squared = 1 - linear_mse / np.var(target[train_rows:])
    true_features = np.column_stack(
        [features, experience_effect(features[:, 1]), seniority_step(features[:, 3])]
    )
    true_mse = _lstsq_mse(true_features, target, train_rows)

    assert linear_mse > 1.5 * NOISE_VARIANCE
    assert 0.7 < r_squared < 0.95
    # The true nonlinear terms bring least squares down to the irreducible error.
    assert true_mse < 1.1 * NOISE_VARIANCE


def test_seniority_step_is_visible_in_least_squares_residuals(shipped: pd.DataFrame) -> None:
    features = shipped[FEATURES].to_numpy(float)
    target = shipped["salary"].to_numpy(float)
    design = np.column_stack([np.ones(len(target)), features])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = target - design @ coef
    years = shipped["years_in_industry"].to_numpy()
    below = residual[(years >= SENIORITY_THRESHOLD_YEARS - 2) & (years < SENIORITY_THRESHOLD_YEARS)]
    above = residual[(years >= SENIORITY_THRESHOLD_YEARS) & (years < SENIORITY_THRESHOLD_YEARS + 2)]
    assert above.mean() - below.mean() > 5_000

    with_step = np.column_stack([features, years >= SENIORITY_THRESHOLD_YEARS])
    assert _lstsq_mse(with_step, target) < 0.9 * _lstsq_mse(features, target)


def test_linear_coefficients_are_not_near_zero(shipped: pd.DataFrame) -> None:
    features = shipped[FEATURES].to_numpy(float)
    target = shipped["salary"].to_numpy(float)
    design = np.column_stack([np.ones(len(target)), features])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    # Each feature's effect over one standard deviation, as a share of the salary's spread.
    effect = np.abs(coef[1:]) * features.std(axis=0) / target.std()
    assert (effect > 0.02).sum() >= 3


# --- The jobs table with text columns (data/jobs.csv) ---------------------------------------

JOBS_SHIPPED = SHIPPED.parent / "jobs.csv"
JOBS_COMMAND = ["--jobs", "--rows", "3000"]
"""The regeneration command of data/README.md, less ``--output``."""
JOBS_NUMERIC = ["age", "years_worked"]
JOBS_TEXT = ["job_title", "region", "remote"]


@pytest.fixture(scope="module")
def jobs() -> pd.DataFrame:
    return pd.read_csv(JOBS_SHIPPED)


def _dummy_coded(frame: pd.DataFrame) -> np.ndarray:
    """Numeric columns plus one 0/1 column per text value, the first value of each dropped."""
    columns = [frame[JOBS_NUMERIC].to_numpy(float)]
    for name in JOBS_TEXT:
        values = sorted(frame[name].unique())
        columns.append(np.column_stack([frame[name] == value for value in values[1:]]))
    return np.column_stack(columns).astype(float)


def test_jobs_cli_reproduces_shipped_file(tmp_path: Path) -> None:
    out = tmp_path / "jobs.csv"
    assert main([*JOBS_COMMAND, "--output", str(out)]) == 0
    assert out.read_bytes() == JOBS_SHIPPED.read_bytes()
    again = tmp_path / "write_jobs.csv"
    salary_data.write_jobs(again)
    assert again.read_bytes() == JOBS_SHIPPED.read_bytes()


def test_jobs_cli_passes_rows_and_seed(tmp_path: Path) -> None:
    out = tmp_path / "small.csv"
    assert main(["--jobs", "--rows", "50", "--seed", "5", "--output", str(out)]) == 0
    expected = salary_data.generate_jobs(rows=50, seed=5)
    pd.testing.assert_frame_equal(pd.read_csv(out), expected, check_dtype=False)


def test_jobs_cli_refuses_two_tables_at_once(tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    with pytest.raises(SystemExit):
        main(["--jobs", "--seniority", "--output", str(out)])
    assert not out.exists()


def test_jobs_deterministic_prefix_and_seeded() -> None:
    first = salary_data.generate_jobs(rows=400, seed=3)
    pd.testing.assert_frame_equal(first, salary_data.generate_jobs(rows=400, seed=3))
    assert not first.equals(salary_data.generate_jobs(rows=400, seed=4))
    pd.testing.assert_frame_equal(salary_data.generate_jobs(rows=100, seed=3), first.iloc[:100])
    # Not the salary table's stream: the ages differ although the age formula is the same.
    assert not np.array_equal(first["age"], generate_salaries(rows=400, seed=3)["age"])


def test_jobs_zero_rows_and_invalid_arguments(tmp_path: Path) -> None:
    assert list(salary_data.generate_jobs(rows=0).columns) == list(salary_data.JOBS_COLUMNS)
    for kwargs in ({"rows": -1}, {"seed": -1}):
        out = tmp_path / "bad.csv"
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            salary_data.write_jobs(out, **kwargs)
        assert not out.exists()


def test_jobs_shipped_columns_and_values(jobs: pd.DataFrame) -> None:
    assert list(jobs.columns) == list(salary_data.JOBS_COLUMNS)
    assert len(jobs) == 3_000
    assert not jobs.isna().any().any()
    for name in ("age", "years_worked", "salary"):
        assert jobs[name].dtype == np.int64
    assert set(jobs["job_title"]) == set(salary_data.JOB_TITLES)
    assert set(jobs["region"]) == set(salary_data.REGIONS)
    assert set(jobs["remote"]) == {"yes", "no"}
    assert set(jobs["level"]) == set(salary_data.LEVELS)
    assert jobs["age"].between(22, 65).all()
    assert (jobs["years_worked"] >= 0).all()
    assert (jobs["years_worked"] <= jobs["age"] - 18).all()
    assert jobs["salary"].between(20_000, 300_000).all()
    # Text stays unquoted: no value needs it, so a reader never sees a quote.
    assert '"' not in JOBS_SHIPPED.read_text(encoding="ascii")


def test_jobs_shares_as_documented(jobs: pd.DataFrame) -> None:
    # The counts in data/README.md's tables.
    assert jobs["level"].value_counts().to_dict() == {
        "junior": 677,
        "mid": 1_098,
        "senior": 826,
        "lead": 399,
    }
    assert (jobs["remote"] == "yes").sum() == 909
    titles = jobs["job_title"].value_counts()
    assert [titles[name] for name in salary_data.JOB_TITLES] == [
        529, 488, 423, 384, 368, 320, 267, 221,
    ]  # fmt: skip
    regions = jobs["region"].value_counts()
    assert [regions[name] for name in salary_data.REGIONS] == [734, 644, 637, 538, 447]
    # Unbalanced classes, each at least 8% of the rows.
    shares = jobs["level"].value_counts(normalize=True)
    assert shares.min() >= 0.08
    assert shares.max() > 1.5 * shares.min()
    # Weights sum to 100, the percent the generator draws with.
    assert sum(salary_data.JOB_TITLE_WEIGHTS) == sum(salary_data.REGION_WEIGHTS) == 100


def test_jobs_salary_is_the_documented_formula_plus_noise(jobs: pd.DataFrame) -> None:
    mean = salary_data.jobs_salary_mean(
        jobs["age"], jobs["years_worked"], jobs["job_title"], jobs["region"], jobs["remote"]
    )
    residual = jobs["salary"].to_numpy(float) - mean
    # Clipped noise plus the rounding to whole dollars.
    limit = salary_data.NOISE_CLIP_SIGMAS * salary_data.JOBS_NOISE_SIGMA + 0.5
    assert np.abs(residual).max() <= limit
    assert abs(residual.mean()) < 400
    assert np.var(residual) == pytest.approx(salary_data.JOBS_NOISE_VARIANCE, rel=0.1)
    # One row checked by hand against the formula in data/README.md.
    row = jobs.iloc[3]
    assert (row["job_title"], row["region"], row["remote"]) == ("software engineer", "north", "no")
    by_hand = 1.25 * 95_000 * (1 + 0.8 * (1 - np.exp(-row["years_worked"] / 8)))
    by_hand += 150 * row["age"] + 300 * row["years_worked"]
    assert mean[3] == pytest.approx(by_hand)


def test_jobs_salary_mean_rejects_unknown_text() -> None:
    with pytest.raises(ValueError, match="job_title"):
        salary_data.jobs_salary_mean([30], [5], ["astronaut"], ["north"], ["no"])
    with pytest.raises(ValueError, match="remote"):
        salary_data.jobs_salary_mean([30], [5], ["nurse"], ["north"], ["maybe"])


def test_jobs_linear_explains_most_but_misses_the_nonlinearity(jobs: pd.DataFrame) -> None:
    features = _dummy_coded(jobs)
    target = jobs["salary"].to_numpy(float)
    train_rows = 2_100
    linear_mse = _lstsq_mse(features, target, train_rows)
    r_squared = 1 - linear_mse / np.var(target[train_rows:])
    mean = salary_data.jobs_salary_mean(
        jobs["age"], jobs["years_worked"], jobs["job_title"], jobs["region"], jobs["remote"]
    )
    true_mse = _lstsq_mse(np.column_stack([features, mean]), target, train_rows)

    assert 0.85 < r_squared < 0.97
    # Room for a nonlinear model: least squares stays far above the noise floor, which the true
    # noise-free salary reaches.
    assert linear_mse > 2.0 * salary_data.JOBS_NOISE_VARIANCE
    assert true_mse < 1.15 * salary_data.JOBS_NOISE_VARIANCE


def test_jobs_level_follows_experience_and_title(jobs: pd.DataFrame) -> None:
    rank = jobs["level"].map({name: i for i, name in enumerate(salary_data.LEVELS)})
    mean_years = jobs.groupby(rank)["years_worked"].mean().to_numpy()
    assert (np.diff(mean_years) > 5).all()
    # At the same experience, sales managers rank higher than teachers (level offset +4 vs -3).
    mid_career = jobs["years_worked"].between(10, 25)
    by_title = rank[mid_career].groupby(jobs["job_title"][mid_career]).mean()
    assert by_title["sales manager"] > by_title["teacher"] + 0.5
