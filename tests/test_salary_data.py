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
