"""Use a trained run on new CSV rows: predictions, and metrics where the target is known."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from builder import data as data_mod
from builder import metrics as metrics_mod
from builder.errors import DataError
from builder.runs import Run


def prediction_column(run: Run) -> str:
    """Name of the column ``predict`` adds: ``predicted_<target>``."""
    return f"predicted_{run.config.data.target}"


def _features(run: Run, path: Path, *, with_target: bool) -> pd.DataFrame:
    config = run.config
    columns = [*config.data.features, *([config.data.target] if with_target else [])]
    # Predictions keep every row, so "drop" cannot apply; "mean" fills from the training means
    # that the model's normalization layer holds.
    policy = "mean" if config.data.missing == "mean" else "error"
    frame = data_mod.read_columns(path, columns, missing=policy)
    if policy == "mean" and frame.isna().to_numpy().any():
        from builder.inspection import _normalization

        norm = _normalization(run.model)
        if norm is None:
            raise DataError(f"{path}: empty cells need a model with input normalization.")
        for i, name in enumerate(config.data.features):
            frame[name] = frame[name].fillna(norm[0][i])
        if with_target and frame[config.data.target].isna().any():
            frame = frame[frame[config.data.target].notna()]
    return frame


def predict(run: Run, path: str | Path) -> pd.DataFrame:
    """The CSV's rows, every column and the original order kept, plus a prediction column.

    Only the feature columns are needed; the target may be absent. Columns are found by name, so
    their order in the file does not matter.
    """
    from builder.training import predict_array

    path = Path(path)
    frame = _features(run, path, with_target=False)
    original = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    column = prediction_column(run)
    if column in original.columns:
        raise DataError(f"{path} already has a column '{column}'; predict would overwrite it.")
    x = frame[list(run.config.data.features)].to_numpy(np.float32)
    original[column] = predict_array(run.model, x)
    return original


def evaluate(run: Run, path: str | Path) -> dict[str, Any]:
    """Metrics of the run's model on another CSV (which must have the target column)."""
    from builder.training import predict_array

    path = Path(path)
    frame = _features(run, path, with_target=True)
    x = frame[list(run.config.data.features)].to_numpy(np.float32)
    y = frame[run.config.data.target].to_numpy(np.float64)
    task = run.config.task or "regression"
    return {
        "data": str(path),
        "rows": len(frame),
        "task": task,
        "metrics": metrics_mod.score(task, y, predict_array(run.model, x)),
    }


def holdout_predictions(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_pred)`` on the run's own test split, re-read from its recorded data file.

    Raises:
        DataError: the data file is gone or has changed since training (SHA-256 differs).
    """
    from builder.training import open_data, predict_array

    config = run.config
    path = config.data_path()
    if path is None:
        raise DataError(
            "a model file outside a run directory has no test split to plot; "
            "use plot --network, or evaluate --data CSV."
        )
    if not path.exists():
        raise DataError(f"the run's data file {path} no longer exists.")
    # A streamed run split its rows by a hash of the row number (builder.streaming), not by the
    # in-memory permutation: its test rows are found the same way, reading the file in chunks.
    streamed = bool(run.manifest.get("data", {}).get("streaming"))
    splits = open_data(config, path, streamed=streamed)
    recorded = run.manifest.get("data", {}).get("sha256")
    if recorded and recorded != splits.sha256:
        raise DataError(
            f"{path} has changed since the run was trained (SHA-256 {splits.sha256[:12]}, "
            f"recorded {recorded[:12]}); its test split is no longer the run's."
        )
    if streamed:
        _, x, y = (np.concatenate(a) for a in zip(*splits.arrays("test"), strict=True))
        return y, predict_array(run.model, x)
    return splits.test.y.astype(np.float64), predict_array(run.model, splits.test.x)
