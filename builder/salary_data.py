"""Deterministic generator of the synthetic salary dataset shipped as ``data/salaries.csv``.

Every row is one person. The target ``salary`` is mostly linear in the four features, plus two
nonlinear effects that a linear model cannot represent: diminishing returns to ``years_worked``
and a seniority step once ``years_in_industry`` reaches 10. ``data/README.md`` states the formula
with every constant and the measured gap between least squares and the noise floor.

Reproducibility: rows are generated in blocks of ``chunk_rows`` (100,000 by default); block ``i``
draws from ``numpy.random.default_rng(numpy.random.SeedSequence(seed, spawn_key=(i,)))``, the same
stream as ``SeedSequence(seed).spawn(i + 1)[i]``. Each block draws one ``(n, 6)`` matrix of
uniforms with ``Generator.random`` and derives everything from it (normals by Box-Muller), so a
block of ``n`` rows is a prefix of a longer block and ``rows=N`` is a prefix of ``rows=M > N``
for the same seed. Every CSV column is an integer, so the text does not depend on float
formatting. Regenerate the shipped file with::

    python -m builder.salary_data --output data/salaries.csv

A second, smaller table, ``data/jobs.csv``, has text columns (``job_title``, ``region``,
``remote`` and the text label ``level``); ``generate_jobs`` makes it from one
``default_rng(SeedSequence(seed))`` stream, and ``data/README.md`` states its formula too::

    python -m builder.salary_data --jobs --rows 3000 --output data/jobs.csv
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

COLUMNS: tuple[str, ...] = ("age", "years_worked", "past_salary", "years_in_industry", "salary")
"""Column names, in the order of the CSV."""

DEFAULT_ROWS = 10_000
DEFAULT_SEED = 42
DEFAULT_CHUNK_ROWS = 100_000

AGE_MIN, AGE_MAX = 22, 65
START_AGE_MIN, START_AGE_MAX = 18, 24

PAST_BASE = 30_000.0
PAST_PER_YEAR_WORKED = 1_800.0
PAST_PER_YEAR_IN_INDUSTRY = 600.0
PAST_LOG_SIGMA = 0.15

SALARY_INTERCEPT = 25_000.0
SALARY_PER_PAST_DOLLAR = 0.5
SALARY_PER_YEAR_OF_AGE = 400.0
SALARY_PER_YEAR_IN_INDUSTRY = 800.0
EXPERIENCE_PLATEAU = 35_000.0
"""Dollars that ``years_worked`` adds at most; reached with diminishing returns."""
EXPERIENCE_SCALE_YEARS = 7.0
SENIORITY_THRESHOLD_YEARS = 10
SENIORITY_STEP = 12_000.0
NOISE_SIGMA = 6_500.0
NOISE_CLIP_SIGMAS = 4.0
"""The salary noise is clipped at this many standard deviations so salaries stay positive."""

NOISE_VARIANCE = NOISE_SIGMA**2 * (
    1.0
    - 2.0 * NOISE_CLIP_SIGMAS * math.exp(-(NOISE_CLIP_SIGMAS**2) / 2.0) / math.sqrt(2.0 * math.pi)
    - math.erfc(NOISE_CLIP_SIGMAS / math.sqrt(2.0))
    + NOISE_CLIP_SIGMAS**2 * math.erfc(NOISE_CLIP_SIGMAS / math.sqrt(2.0))
)
"""Exact variance of the clipped salary noise (the irreducible error), in squared dollars."""

_UNIFORMS_PER_ROW = 6


def experience_effect(years_worked: np.ndarray) -> np.ndarray:
    """Returns the concave (diminishing-returns) salary effect of ``years_worked``, in dollars.

    Args:
        years_worked: Years of work experience.

    Returns:
        ``EXPERIENCE_PLATEAU * (1 - exp(-years_worked / EXPERIENCE_SCALE_YEARS))``.
    """
    return EXPERIENCE_PLATEAU * -np.expm1(-np.asarray(years_worked, float) / EXPERIENCE_SCALE_YEARS)


def seniority_step(years_in_industry: np.ndarray) -> np.ndarray:
    """Returns the seniority step of salary, in dollars.

    Args:
        years_in_industry: Years worked in the current industry.

    Returns:
        ``SENIORITY_STEP`` where ``years_in_industry >= SENIORITY_THRESHOLD_YEARS``, else 0.
    """
    senior = np.asarray(years_in_industry) >= SENIORITY_THRESHOLD_YEARS
    return SENIORITY_STEP * senior.astype(float)


def _generate_block(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    # One uniform matrix drawn row by row keeps a block's first n rows independent of its length.
    u = rng.random((rows, _UNIFORMS_PER_ROW))

    # Integers come from floor(u * k), not Generator.integers, so they depend on nothing but the
    # bit stream and exact float arithmetic.
    age = AGE_MIN + np.floor(u[:, 0] * (AGE_MAX - AGE_MIN + 1)).astype(np.int64)
    start_age = START_AGE_MIN + np.floor(u[:, 1] * (START_AGE_MAX - START_AGE_MIN + 1))
    max_years = np.maximum(age - start_age.astype(np.int64), 0)
    # The power skews careers toward full length while leaving room for gaps and late starts.
    years_worked = np.floor(u[:, 2] ** 0.35 * (max_years + 1)).astype(np.int64)
    years_in_industry = np.floor(u[:, 3] * (years_worked + 1)).astype(np.int64)

    # Box-Muller turns the last two uniforms into two independent standard normals.
    radius = np.sqrt(-2.0 * np.log1p(-u[:, 4]))
    angle = 2.0 * np.pi * u[:, 5]
    z_past = radius * np.cos(angle)
    z_salary = radius * np.sin(angle)

    # Multiplicative noise keeps the previous salary positive and its spread proportional.
    past_salary = np.rint(
        (
            PAST_BASE
            + PAST_PER_YEAR_WORKED * years_worked
            + PAST_PER_YEAR_IN_INDUSTRY * years_in_industry
        )
        * np.exp(PAST_LOG_SIGMA * z_past)
    )
    noise = NOISE_SIGMA * np.clip(z_salary, -NOISE_CLIP_SIGMAS, NOISE_CLIP_SIGMAS)
    salary = np.rint(
        SALARY_INTERCEPT
        + SALARY_PER_PAST_DOLLAR * past_salary
        + SALARY_PER_YEAR_OF_AGE * age
        + SALARY_PER_YEAR_IN_INDUSTRY * years_in_industry
        + experience_effect(years_worked)
        + seniority_step(years_in_industry)
        + noise
    )
    return pd.DataFrame(
        {
            "age": age,
            "years_worked": years_worked,
            "past_salary": past_salary.astype(np.int64),
            "years_in_industry": years_in_industry,
            "salary": salary.astype(np.int64),
        },
        columns=list(COLUMNS),
    )


def iter_salary_chunks(
    rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Returns the dataset as an iterator of blocks, so millions of rows never sit in memory.

    Block ``i`` holds rows ``i * chunk_rows`` onward and draws from
    ``SeedSequence(seed, spawn_key=(i,))``; the data therefore depends on ``chunk_rows``, and the
    shipped file uses the default.

    Args:
        rows: Total number of rows, at least 0.
        seed: Non-negative integer seed.
        chunk_rows: Rows per block, at least 1; the last block may be shorter.

    Returns:
        An iterator of DataFrames with the columns of ``COLUMNS`` and a ``RangeIndex`` that
        continues across blocks.

    Raises:
        ValueError: If ``rows``, ``seed`` or ``chunk_rows`` is out of range (raised at the call,
            not at the first ``next``).
    """
    if rows < 0:
        raise ValueError(f"rows must be a non-negative integer. Received: rows={rows}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer. Received: seed={seed}")
    if chunk_rows < 1:
        raise ValueError(
            f"chunk_rows must be a positive integer. Received: chunk_rows={chunk_rows}"
        )
    return _iter_blocks(rows, seed, chunk_rows)


def _iter_blocks(rows: int, seed: int, chunk_rows: int) -> Iterator[pd.DataFrame]:
    for index, start in enumerate(range(0, rows, chunk_rows)):
        seed_seq = np.random.SeedSequence(seed, spawn_key=(index,))
        block = _generate_block(np.random.default_rng(seed_seq), min(chunk_rows, rows - start))
        block.index = pd.RangeIndex(start, start + len(block))
        yield block


def generate_salaries(rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Returns the whole dataset as one DataFrame.

    Args:
        rows: Number of rows, at least 0.
        seed: Non-negative integer seed.

    Returns:
        A DataFrame with the columns of ``COLUMNS`` (all ``int64``), equal to the blocks of
        ``iter_salary_chunks(rows, seed)`` concatenated.

    Raises:
        ValueError: If ``rows`` or ``seed`` is negative.
    """
    blocks = list(iter_salary_chunks(rows, seed))
    if not blocks:
        return _generate_block(np.random.default_rng(0), 0)
    return pd.concat(blocks) if len(blocks) > 1 else blocks[0]


def write_salaries(
    path: str | os.PathLike[str],
    rows: int = DEFAULT_ROWS,
    seed: int = DEFAULT_SEED,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> None:
    """Writes the dataset as CSV, one block at a time, with the same bytes on every machine.

    The file has a header line, ``\\n`` line endings and plain integers in every column.

    Args:
        path: Destination file; its parent folder must exist.
        rows: Number of rows, at least 0.
        seed: Non-negative integer seed.
        chunk_rows: Rows generated and written at a time; changes the data, see
            ``iter_salary_chunks``.

    Raises:
        ValueError: If ``rows``, ``seed`` or ``chunk_rows`` is out of range.
    """
    # Validated before opening, so a bad argument does not leave an empty file behind.
    chunks = iter_salary_chunks(rows, seed, chunk_rows)
    with open(path, "w", encoding="ascii", newline="") as handle:
        handle.write(",".join(COLUMNS) + "\n")
        for block in chunks:
            block.to_csv(handle, header=False, index=False, lineterminator="\n")


SENIORITY_COLUMNS = ("age", "years_worked", "past_salary", "salary", "senior")


def seniority_frame(salaries: pd.DataFrame) -> pd.DataFrame:
    """The binary task of ``configs/senior_classifier.yaml``, derived from the salary data.

    ``senior`` is 1 when ``years_in_industry`` reaches the seniority threshold, the same step the
    salary formula has; the classifier sees age, years worked and both salaries, not the years
    in industry themselves, so it must infer seniority from them.
    """
    frame = salaries[list(SENIORITY_COLUMNS[:-1])].copy()
    senior = salaries["years_in_industry"] >= SENIORITY_THRESHOLD_YEARS
    frame["senior"] = senior.astype("int64")
    return frame


def write_seniority(
    path: str | os.PathLike[str], rows: int = 2_000, seed: int = DEFAULT_SEED
) -> None:
    """Write ``data/seniority.csv``: the first ``rows`` salary rows as the seniority task."""
    seniority_frame(generate_salaries(rows, seed)).to_csv(path, index=False, lineterminator="\n")


JOBS_COLUMNS: tuple[str, ...] = (
    "age",
    "years_worked",
    "job_title",
    "region",
    "remote",
    "salary",
    "level",
)
"""Column names of ``data/jobs.csv``, in the order of the CSV."""

JOBS_DEFAULT_ROWS = 3_000

JOB_TITLES: tuple[str, ...] = (
    "software engineer",
    "teacher",
    "nurse",
    "data analyst",
    "accountant",
    "sales manager",
    "mechanic",
    "designer",
)
JOB_TITLE_WEIGHTS: tuple[int, ...] = (17, 16, 15, 14, 12, 10, 9, 7)
"""Percent of rows with each of ``JOB_TITLES`` (they sum to 100)."""
JOB_TITLE_BASE_PAY: tuple[float, ...] = (
    95_000.0,
    48_000.0,
    62_000.0,
    70_000.0,
    60_000.0,
    78_000.0,
    45_000.0,
    55_000.0,
)
"""Starting pay of each of ``JOB_TITLES`` before the region multiplier, in dollars."""
JOB_TITLE_LEVEL_OFFSET: tuple[float, ...] = (0.0, -3.0, -2.0, 0.0, 0.0, 4.0, -3.0, -1.0)
"""Years added to ``years_worked`` in the level score: sales managers are promoted sooner."""

REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")
REGION_WEIGHTS: tuple[int, ...] = (25, 22, 20, 18, 15)
"""Percent of rows in each of ``REGIONS`` (they sum to 100)."""
REGION_PAY_MULTIPLIER: tuple[float, ...] = (1.25, 0.85, 1.05, 1.15, 0.95)

JOBS_REMOTE_SHARE = 0.3
JOBS_REMOTE_BONUS = 4_000.0
JOBS_PAY_GROWTH = 0.8
"""Fraction of the base pay that experience adds at most; reached with diminishing returns."""
JOBS_GROWTH_SCALE_YEARS = 8.0
JOBS_PER_YEAR_OF_AGE = 150.0
JOBS_PER_YEAR_WORKED = 300.0
JOBS_NOISE_SIGMA = 6_000.0

LEVELS: tuple[str, ...] = ("junior", "mid", "senior", "lead")
LEVEL_THRESHOLDS: tuple[float, ...] = (6.0, 18.0, 30.0)
"""Level score at which ``LEVELS[i + 1]`` starts."""
LEVEL_NOISE_SIGMA = 3.0
"""Standard deviation of the level score's noise, in years; clipped like the salary noise."""

_JOBS_UNIFORMS_PER_ROW = 8


def _clipped_normal_variance(sigma: float, clip: float) -> float:
    tail = math.erfc(clip / math.sqrt(2.0))
    body = 2.0 * clip * math.exp(-(clip**2) / 2.0) / math.sqrt(2.0 * math.pi)
    return sigma**2 * (1.0 - body - tail + clip**2 * tail)


JOBS_NOISE_VARIANCE = _clipped_normal_variance(JOBS_NOISE_SIGMA, NOISE_CLIP_SIGMAS)
"""Exact variance of the clipped jobs salary noise (the irreducible error), in squared dollars."""


def _category(u: np.ndarray, weights: Sequence[int]) -> np.ndarray:
    # Integer weights and floor keep the choice exact: no float cumulative sums at the edges.
    return np.searchsorted(np.cumsum(weights), np.floor(u * sum(weights)), side="right")


def jobs_salary_mean(
    age: np.ndarray,
    years_worked: np.ndarray,
    job_title: Sequence[str] | np.ndarray,
    region: Sequence[str] | np.ndarray,
    remote: Sequence[str] | np.ndarray,
) -> np.ndarray:
    """Returns the noise-free salary of ``data/jobs.csv`` for the given rows, in dollars.

    Args:
        age: Ages in years.
        years_worked: Years of work experience.
        job_title: Entries of ``JOB_TITLES``.
        region: Entries of ``REGIONS``.
        remote: ``"yes"`` or ``"no"``.

    Returns:
        ``multiplier[region] * base_pay[job_title] * (1 + JOBS_PAY_GROWTH * (1 -
        exp(-years_worked / JOBS_GROWTH_SCALE_YEARS))) + JOBS_REMOTE_BONUS * [remote == "yes"]
        + JOBS_PER_YEAR_OF_AGE * age + JOBS_PER_YEAR_WORKED * years_worked``, as floats.

    Raises:
        ValueError: If a title, region or remote value is not one of the documented ones.
    """
    title_index = _lookup(job_title, JOB_TITLES, "job_title")
    region_index = _lookup(region, REGIONS, "region")
    remote_flag = _lookup(remote, ("no", "yes"), "remote")
    years = np.asarray(years_worked, float)
    growth = JOBS_PAY_GROWTH * -np.expm1(-years / JOBS_GROWTH_SCALE_YEARS)
    base = (
        np.asarray(REGION_PAY_MULTIPLIER)[region_index]
        * np.asarray(JOB_TITLE_BASE_PAY)[title_index]
    )
    return (
        base * (1.0 + growth)
        + JOBS_REMOTE_BONUS * remote_flag
        + JOBS_PER_YEAR_OF_AGE * np.asarray(age, float)
        + JOBS_PER_YEAR_WORKED * years
    )


def _lookup(values: Sequence[str] | np.ndarray, names: Sequence[str], column: str) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    try:
        codes = [index[value] for value in np.asarray(values, dtype=object)]
        return np.array(codes, dtype=np.int64)
    except KeyError as error:
        raise ValueError(
            f"{column} must be one of {list(names)}. Received: {error.args[0]!r}"
        ) from None


def generate_jobs(rows: int = JOBS_DEFAULT_ROWS, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Returns the jobs table of ``data/jobs.csv``: numbers, text columns and a text label.

    All rows come from one ``(rows, 8)`` uniform matrix of
    ``default_rng(SeedSequence(seed))``, drawn row by row, so ``rows=N`` is a prefix of
    ``rows=M > N``. The salary mixes additive effects with a region-times-title product and
    saturating growth with experience; ``data/README.md`` states the formula.

    Args:
        rows: Number of rows, at least 0.
        seed: Non-negative integer seed.

    Returns:
        A DataFrame with the columns of ``JOBS_COLUMNS``: ``age``, ``years_worked`` and
        ``salary`` as ``int64``; ``job_title``, ``region``, ``remote`` (``"yes"``/``"no"``) and
        ``level`` (one of ``LEVELS``) as strings.

    Raises:
        ValueError: If ``rows`` or ``seed`` is negative.
    """
    if rows < 0:
        raise ValueError(f"rows must be a non-negative integer. Received: rows={rows}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer. Received: seed={seed}")
    u = np.random.default_rng(np.random.SeedSequence(seed)).random((rows, _JOBS_UNIFORMS_PER_ROW))

    # Age and experience as in the salary table, so the two read alike.
    age = AGE_MIN + np.floor(u[:, 0] * (AGE_MAX - AGE_MIN + 1)).astype(np.int64)
    start_age = START_AGE_MIN + np.floor(u[:, 1] * (START_AGE_MAX - START_AGE_MIN + 1))
    max_years = np.maximum(age - start_age.astype(np.int64), 0)
    years_worked = np.floor(u[:, 2] ** 0.35 * (max_years + 1)).astype(np.int64)
    job_title = np.array(JOB_TITLES, dtype=object)[_category(u[:, 3], JOB_TITLE_WEIGHTS)]
    region = np.array(REGIONS, dtype=object)[_category(u[:, 4], REGION_WEIGHTS)]
    remote = np.where(u[:, 5] < JOBS_REMOTE_SHARE, "yes", "no").astype(object)

    radius = np.sqrt(-2.0 * np.log1p(-u[:, 6]))
    angle = 2.0 * np.pi * u[:, 7]
    z_salary = np.clip(radius * np.cos(angle), -NOISE_CLIP_SIGMAS, NOISE_CLIP_SIGMAS)
    z_level = np.clip(radius * np.sin(angle), -NOISE_CLIP_SIGMAS, NOISE_CLIP_SIGMAS)

    mean = jobs_salary_mean(age, years_worked, job_title, region, remote)
    salary = np.rint(mean + JOBS_NOISE_SIGMA * z_salary).astype(np.int64)
    offset = np.asarray(JOB_TITLE_LEVEL_OFFSET)[_lookup(job_title, JOB_TITLES, "job_title")]
    score = years_worked + offset + LEVEL_NOISE_SIGMA * z_level
    level = np.array(LEVELS, dtype=object)[np.searchsorted(LEVEL_THRESHOLDS, score, side="right")]
    return pd.DataFrame(
        {
            "age": age,
            "years_worked": years_worked,
            "job_title": job_title,
            "region": region,
            "remote": remote,
            "salary": salary,
            "level": level,
        },
        columns=list(JOBS_COLUMNS),
    )


def write_jobs(
    path: str | os.PathLike[str], rows: int = JOBS_DEFAULT_ROWS, seed: int = DEFAULT_SEED
) -> None:
    """Writes ``generate_jobs(rows, seed)`` as an ASCII CSV with ``\\n`` line endings.

    No value holds a comma or a quote, so the text columns are written unquoted.

    Args:
        path: Destination file; its parent folder must exist.
        rows: Number of rows, at least 0.
        seed: Non-negative integer seed.

    Raises:
        ValueError: If ``rows`` or ``seed`` is negative (before the file is opened).
    """
    frame = generate_jobs(rows, seed)
    with open(path, "w", encoding="ascii", newline="") as handle:
        frame.to_csv(handle, index=False, lineterminator="\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: ``python -m builder.salary_data --output data/salaries.csv``.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status, 0.
    """
    parser = argparse.ArgumentParser(
        prog="python -m builder.salary_data",
        description="Write the synthetic salary dataset as CSV (deterministic for a given seed).",
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows to write")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="non-negative seed")
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=DEFAULT_CHUNK_ROWS,
        help="rows generated at a time (part of the data's definition; keep the default)",
    )
    parser.add_argument("--output", required=True, help="destination CSV file")
    parser.add_argument(
        "--seniority",
        action="store_true",
        help="write the binary seniority task (data/seniority.csv) instead of the salaries",
    )
    parser.add_argument(
        "--jobs",
        action="store_true",
        help="write the jobs table with text columns (data/jobs.csv) instead of the salaries",
    )
    args = parser.parse_args(argv)
    if args.rows < 0 or args.seed < 0 or args.chunk_rows < 1:
        parser.error("--rows and --seed must be >= 0 and --chunk-rows >= 1")
    if args.seniority and args.jobs:
        parser.error("--seniority and --jobs write different tables; give one of them")
    if args.jobs:
        write_jobs(args.output, rows=args.rows, seed=args.seed)
        return 0
    if args.seniority:
        write_seniority(args.output, rows=args.rows, seed=args.seed)
        return 0
    write_salaries(args.output, rows=args.rows, seed=args.seed, chunk_rows=args.chunk_rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
