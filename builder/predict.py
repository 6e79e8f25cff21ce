"""Use a trained run on new CSV rows: predictions, and metrics where the target is known."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from builder import data as data_mod
from builder.errors import DataError
from builder.runs import Run


def prediction_column(run: Run) -> str:
    """Name of the column ``predict`` adds: ``predicted_<target>``."""
    return f"predicted_{run.config.data.target}"


def _chunks(
    run: Run, path: Path, *, with_target: bool, chunk_rows: int
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """``(numeric, text)`` chunks of the CSV, checked, with empty cells handled as configured.

    ``text`` (every column as written, for predict's output) is ``None`` with ``with_target``.
    """
    config = run.config
    columns = [*config.data.features, *([config.data.target] if with_target else [])]
    # Predictions keep every row, so "drop" cannot apply; "mean" fills from the training means
    # that the model's normalization layer holds.
    policy = "mean" if config.data.missing == "mean" else "error"
    means = None
    for numeric, text in data_mod.read_column_chunks(
        path, columns, missing=policy, chunk_rows=chunk_rows, text=not with_target
    ):
        if policy == "mean" and numeric.isna().to_numpy().any():
            if means is None:
                from builder.inspection import normalization_stats

                norm = normalization_stats(run.model)
                if norm is None:
                    raise DataError(f"{path}: empty cells need a model with input normalization.")
                means = norm[0]
            for i, name in enumerate(config.data.features):
                numeric[name] = numeric[name].fillna(means[i])
            if with_target:
                numeric = numeric[numeric[config.data.target].notna()]
        yield numeric, text


def predict_chunks(
    run: Run, path: str | Path, *, chunk_rows: int = data_mod.CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """``predict`` chunk by chunk, for CSVs of any size: each chunk's rows with the column added.

    Raises:
        DataError: as ``predict``; a bad value in a later chunk is raised when it is reached.
    """
    from builder.training import predict_array

    path = Path(path)
    column = prediction_column(run)
    features = list(run.config.data.features)
    for numeric, text in _chunks(run, path, with_target=False, chunk_rows=chunk_rows):
        if column in text.columns:  # every chunk has the header's columns; the first one stops
            raise DataError(f"{path} already has a column '{column}'; predict would overwrite it.")
        # The model computes in float32: the column keeps that dtype, so a CSV gets each value's
        # shortest float32 repr (166229.67), not its float64 widening (166229.671875).
        prediction = predict_array(run.model, numeric[features].to_numpy(np.float32))
        text[column] = prediction.astype(np.float32)
        yield text


def predict(run: Run, path: str | Path) -> pd.DataFrame:
    """The CSV's rows, every column and the original order kept, plus a prediction column.

    Only the feature columns are needed; the target may be absent. Columns are found by name, so
    their order in the file does not matter. The whole result is one frame; ``predict_chunks``
    gives it in pieces (``builder predict`` writes those as they come).
    """
    return pd.concat(list(predict_chunks(run, path)), ignore_index=True)


def evaluate(
    run: Run, path: str | Path, *, chunk_rows: int = data_mod.CHUNK_ROWS
) -> dict[str, Any]:
    """Metrics of the run's model on another CSV (which must have the target column).

    The CSV is read in chunks and the metrics are accumulated as training's streamed test scoring
    does (``builder.data.scoring.scorer``): exact, except a classification's AUC, which above
    1,000,000 rows comes from a fixed hash sample of them. The target follows training's rules
    (``builder.data.csv``): numeric and finite as float32, and 0 or 1 for a classifier.

    Raises:
        DataError: the file or a column is missing, a value breaks a rule (named with its
            line), or no row has a target value.
    """
    from builder.data.scoring import scorer
    from builder.data.split import row_uniform
    from builder.training import predict_array

    path = Path(path)
    config = run.config
    features = list(config.data.features)
    task = config.task or "regression"
    score = scorer(task)
    rows = 0
    for numeric, _ in _chunks(run, path, with_target=True, chunk_rows=chunk_rows):
        if len(numeric):
            row_numbers = numeric.index.to_numpy(np.int64)
            y = numeric[config.data.target].to_numpy(np.float64)
            if task == "classification":
                data_mod.check_labels(path, config.data.target, y, row_numbers)
            keys = row_uniform(row_numbers, config.data.split.seed, salt=1)
            prediction = predict_array(run.model, numeric[features].to_numpy(np.float32))
            score.update(y, prediction, keys)
            rows += len(numeric)
    if not rows:
        raise DataError(f"{path} has no row with a target value to score.")
    return {"data": str(path), "rows": rows, "task": task, "metrics": score.result()}


def holdout_split(run: Run, use: str = "this") -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of the run's own test split (float32 features, float64 target), re-read from
    its recorded data file.

    Args:
        run: a loaded run.
        use: what needs the split, for the message about a bare model file (``"plot"``).

    Raises:
        DataError: a bare model file (no run, so no split), or the data file is gone or has
            changed since training (SHA-256 differs).
    """
    from builder.training import open_data

    config = run.config
    path = config.data_path()
    if path is None or run.path is None:
        raise DataError(
            f"a model file outside a run directory has no test split; {use} needs the run "
            "directory builder train wrote (or use evaluate --data CSV)."
        )
    if not path.exists():
        raise DataError(f"the run's data file {path} no longer exists.")
    # A streamed run split its rows by a hash of the row number (builder.data.split), not by
    # the in-memory permutation: its test rows are found the same way, reading the file in chunks.
    streamed = bool(run.manifest.get("data", {}).get("streaming"))
    splits = open_data(config, path, streamed=streamed)
    recorded = run.manifest.get("data", {}).get("sha256")
    if recorded and recorded != splits.sha256:
        raise DataError(
            f"{path} has changed since the run was trained (SHA-256 {splits.sha256[:12]}, "
            f"recorded {recorded[:12]}); its test split is no longer the run's."
        )
    x, y = splits.part_arrays("test")
    return np.asarray(x, np.float32), np.asarray(y, np.float64)


def holdout_predictions(run: Run, use: str = "plot") -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_pred)`` on the run's own test split (``holdout_split``).

    Raises:
        DataError: as ``holdout_split``.
    """
    from builder.training import predict_array

    x, y = holdout_split(run, use)
    return y, predict_array(run.model, x)
