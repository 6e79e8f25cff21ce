"""Use a trained run on new CSV rows: predictions, and metrics where the target is known."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from builder import data as data_mod
from builder.data.columns import Labels, Vocabulary, check_seen
from builder.errors import DataError
from builder.runs import Run


def prediction_column(run: Run) -> str:
    """Name of the column ``predict`` adds: ``predicted_<target>``."""
    return f"predicted_{run.config.data.target}"


def probability_column(run: Run, label: str) -> str:
    """Name of a classifier's column for one class: ``probability_<label>``."""
    return f"probability_{label}"


def vocabularies_of(model: Any) -> dict[str, Vocabulary]:
    """The categorical features' vocabularies, as the model's ``CategoryColumns`` layer holds
    them (empty for a model without one)."""
    from builder.layers import CategoryColumns

    for layer in model.layers:
        if isinstance(layer, CategoryColumns):
            return {
                column["name"]: Vocabulary(tuple(column["vocabulary"]), tuple(column["counts"]))
                for column in layer.columns
                if "vocabulary" in column
            }
    return {}


def class_labels(run: Run) -> Labels:
    """A classifier's labels: as the run recorded them, else (a run from before labels were
    recorded, a bare model file) ``0`` and ``1`` for one output unit, ``0 .. k-1`` for k."""
    classes = run.manifest.get("classes")
    if isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes):
        numeric = bool(pd.to_numeric(pd.Series(classes), errors="coerce").notna().all())
        return Labels(tuple(classes), numeric=numeric)
    units = int(run.model.outputs[0].shape[-1])
    return Labels(tuple(str(i) for i in range(max(units, 2))), numeric=True)


class Unseen:
    """Counts of categorical values a model's vocabularies do not hold, per column."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, name: str, count: int) -> None:
        """Count ``count`` more unseen values in column ``name``."""
        if count:
            self.counts[name] = self.counts.get(name, 0) + count

    def message(self, path: Path) -> str | None:
        """One line for stderr: how many rows had unseen values in which columns, or None."""
        if not self.counts:
            return None
        listed = ", ".join(f"{n:,} in '{name}'" for name, n in self.counts.items())
        return (
            f"{path}: values not seen in training, encoded as the average training value "
            f"(data.unknown: average): {listed}"
        )


def code_categories(
    run: Run,
    path: Path,
    frame: pd.DataFrame,
    vocabularies: dict[str, Vocabulary],
    unseen: Unseen | None = None,
) -> None:
    """Replace each categorical column of ``frame`` (stripped text, as ``read_column_chunks``
    gives it; index: data-row numbers) by its codes in the model's vocabulary, in place.

    Raises:
        DataError: under ``data.unknown: error``, a value the vocabulary does not hold.
    """
    rows = frame.index.to_numpy(np.int64)
    for name, vocabulary in vocabularies.items():
        cells = frame[name].to_numpy(object)
        codes = vocabulary.codes(cells)
        if run.config.data.unknown == "error":
            check_seen(path, name, vocabulary, cells, codes, rows)
        if unseen is not None:
            unseen.add(name, int((codes == 0).sum()))
        frame[name] = codes


def fill_values(run: Run, path: Path) -> np.ndarray:
    """What empty feature cells become under ``data.missing: mean``: the training means the
    model's normalization holds, and code 1 (the most frequent training value) for a
    categorical feature.

    Raises:
        DataError: the model has no normalization layer to take the means from.
    """
    from builder.inspection import normalization_stats

    norm = normalization_stats(run.model)
    if norm is None:
        raise DataError(f"{path}: empty cells need a model with input normalization.")
    means = norm[0]
    features = run.config.data.feature_names
    for name in vocabularies_of(run.model):
        means[features.index(name)] = 1.0
    return means


class Predictor:
    """``predict``'s work on rows of features, for one run: categorical cells coded in the
    model's vocabularies, empty cells filled under ``data.missing: mean``, the model's outputs,
    and the columns ``predict`` adds. ``predict_chunks`` runs it on each chunk of a CSV and
    ``builder.serving`` on each request's rows, so both give the same values for the same rows.

    Args:
        run: a loaded run.
        outputs: the model's outputs for float32 rows ``(n, k)``, as float64 ``(n, units)``;
            default ``training.model_outputs`` (the model called eagerly, block by block).
    """

    def __init__(self, run: Run, outputs: Callable[[np.ndarray], np.ndarray] | None = None):
        self.run = run
        self.features = list(run.config.data.feature_names)
        self.vocabularies = vocabularies_of(run.model)
        classification = run.config.task == "classification"
        self.labels = class_labels(run) if classification else None
        self.columns = [prediction_column(run)]
        if self.labels is not None:
            self.columns += [probability_column(run, label) for label in self.labels.classes]
        # Predictions keep every row, so "drop" cannot apply; "mean" fills from the training
        # means that the model's normalization layer holds (a categorical column: its most
        # frequent value).
        self.fill = run.config.data.missing == "mean"
        if outputs is None:
            from builder.training import model_outputs

            def outputs(x: np.ndarray) -> np.ndarray:
                return model_outputs(run.model, x)

        self.outputs = outputs
        self._means: np.ndarray | None = None

    def prepare(self, frame: pd.DataFrame, path: Path, unseen: Unseen | None = None) -> None:
        """Code the categorical features of ``frame`` (``code_categories``) and fill its empty
        feature cells under ``data.missing: mean`` (``fill_values``), in place.

        Raises:
            DataError: as ``code_categories`` and ``fill_values``.
        """
        code_categories(self.run, path, frame, self.vocabularies, unseen)
        if not self.fill:
            return
        # Column by column: a served request is one row, where each whole-frame pandas
        # operation costs more than the model.
        for i, name in enumerate(self.features):
            values = frame[name].to_numpy(np.float64)
            empty = np.isnan(values)
            if empty.any():
                if self._means is None:
                    self._means = fill_values(self.run, path)
                frame[name] = np.where(empty, self._means[i], values)

    def predictions(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """The columns ``predict`` adds for prepared rows (``prepare``), by name, in order: the
        prediction (float32; a classifier's most probable label), then a classifier's float32
        probability of each class."""
        x = np.column_stack([frame[name].to_numpy(np.float32) for name in self.features])
        outputs = self.outputs(x)
        if self.labels is None:
            # The model computes in float32: the column keeps that dtype, so a CSV gets each
            # value's shortest float32 repr (166229.67), not its float64 widening.
            return {self.columns[0]: outputs[:, 0].astype(np.float32)}
        from builder.training import class_probabilities

        probabilities = class_probabilities(outputs)
        labels = np.asarray(self.labels.classes, dtype=object)
        found = {self.columns[0]: labels[np.argmax(probabilities, axis=1)]}
        for j, name in enumerate(self.columns[1:]):
            found[name] = probabilities[:, j].astype(np.float32)
        return found


def _chunks(
    run: Run,
    path: Path,
    *,
    with_target: bool,
    chunk_rows: int,
    unseen: Unseen,
    predictor: Predictor,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """``(numeric, text)`` chunks of the CSV, checked, with empty cells handled as configured.

    Categorical features hold their codes (``builder.data.columns``), a classifier's target its
    class codes. ``text`` (every column as written, for predict's output) is ``None`` with
    ``with_target``.
    """
    config = run.config
    features = predictor.features
    target = config.data.target
    vocabularies = predictor.vocabularies
    labels = predictor.labels if with_target else None
    columns = [*features, *([target] if with_target else [])]
    text_columns = [*vocabularies, *([target] if labels is not None else [])]
    policy = "mean" if predictor.fill else "error"
    for numeric, text in data_mod.read_column_chunks(
        path,
        columns,
        missing=policy,
        chunk_rows=chunk_rows,
        text=not with_target,
        text_columns=text_columns,
    ):
        rows = numeric.index.to_numpy(np.int64)
        predictor.prepare(numeric, path, unseen)
        if labels is not None:
            cells = numeric[target].to_numpy(object)
            codes = labels.codes(cells)
            held = ~pd.isna(cells)
            bad = held & np.isnan(codes)
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"{path}: target column '{target}' must hold the classes the model was "
                    f"trained on ({', '.join(labels.classes[:10])}). "
                    f"Received: {cells[first]!r} on line {int(rows[first]) + 2}"
                )
            numeric[target] = codes
        if with_target and policy == "mean" and numeric[target].isna().to_numpy().any():
            numeric = numeric[numeric[target].notna()]
        yield numeric, text


def predict_chunks(
    run: Run,
    path: str | Path,
    *,
    chunk_rows: int = data_mod.CHUNK_ROWS,
    unseen: Unseen | None = None,
    predictor: Predictor | None = None,
) -> Iterator[pd.DataFrame]:
    """``predict`` chunk by chunk, for CSVs of any size: each chunk's rows with the columns added.

    Args:
        run: a loaded run.
        path: the CSV.
        chunk_rows: rows read at a time.
        unseen: counts the categorical values the model's vocabularies do not hold.
        predictor: the run's ``Predictor`` (default: one calling the model eagerly).

    Raises:
        DataError: as ``predict``; a bad value in a later chunk is raised when it is reached.
    """
    path = Path(path)
    predictor = predictor if predictor is not None else Predictor(run)
    unseen = unseen if unseen is not None else Unseen()
    for numeric, text in _chunks(
        run,
        path,
        with_target=False,
        chunk_rows=chunk_rows,
        unseen=unseen,
        predictor=predictor,
    ):
        clash = next((name for name in predictor.columns if name in text.columns), None)
        if clash:  # every chunk has the header's columns; the first one stops
            raise DataError(f"{path} already has a column '{clash}'; predict would overwrite it.")
        for name, values in predictor.predictions(numeric).items():
            text[name] = values
        yield text


def predict(run: Run, path: str | Path, *, unseen: Unseen | None = None) -> pd.DataFrame:
    """The CSV's rows, every column and the original order kept, plus the prediction columns:
    ``predicted_<target>`` (a classifier's most probable class, by its label) and for a
    classifier ``probability_<label>`` for each class.

    Only the feature columns are needed; the target may be absent. Columns are found by name, so
    their order in the file does not matter. The whole result is one frame; ``predict_chunks``
    gives it in pieces (``builder predict`` writes those as they come).
    """
    return pd.concat(list(predict_chunks(run, path, unseen=unseen)), ignore_index=True)


def evaluate(
    run: Run, path: str | Path, *, chunk_rows: int = data_mod.CHUNK_ROWS
) -> dict[str, Any]:
    """Metrics of the run's model on another CSV (which must have the target column).

    The CSV is read in chunks and the metrics are accumulated as training's streamed test scoring
    does (``builder.data.scoring.scorer``): exact, except a classification's AUC, which above
    1,000,000 rows comes from a fixed hash sample of them. The target follows training's rules
    (``builder.data.csv``): numeric and finite as float32 for regression, one of the model's
    classes for a classifier.

    Returns:
        ``data``, ``rows``, ``task``, ``metrics``, ``unseen`` ({column: count} of categorical
        values not seen in training) and for a classifier ``classes`` (its confusion matrix and
        per-class scores).

    Raises:
        DataError: the file or a column is missing, a value breaks a rule (named with its
            line), or no row has a target value.
    """
    from builder.data.scoring import scorer
    from builder.data.split import row_uniform
    from builder.training import model_outputs

    path = Path(path)
    config = run.config
    features = list(config.data.feature_names)
    task = config.task or "regression"
    classification = task == "classification"
    labels = class_labels(run) if classification else None
    score = scorer(task, labels.classes) if labels is not None else scorer(task)
    unseen = Unseen()
    rows = 0
    predictor = Predictor(run)
    for numeric, _ in _chunks(
        run, path, with_target=True, chunk_rows=chunk_rows, unseen=unseen, predictor=predictor
    ):
        if len(numeric):
            row_numbers = numeric.index.to_numpy(np.int64)
            y = numeric[config.data.target].to_numpy(np.float64)
            keys = row_uniform(row_numbers, config.data.split.seed, salt=1)
            outputs = model_outputs(run.model, numeric[features].to_numpy(np.float32))
            if classification:
                from builder.training import class_probabilities

                score.update(y, class_probabilities(outputs), keys)
            else:
                score.update(y, outputs[:, 0], keys)
            rows += len(numeric)
    if not rows:
        raise DataError(f"{path} has no row with a target value to score.")
    found = {
        "data": str(path),
        "rows": rows,
        "task": task,
        "metrics": score.result(),
        "unseen": dict(unseen.counts),
    }
    if classification:
        found["classes"] = score.details()
    return found


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
