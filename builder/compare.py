"""Compare runs: what differs in their configs, their test metrics, and whether the data did.

Reads only the run directories' files (no model is loaded, no TensorFlow). A tune run compares
by its best trial: the config in its ``best.yaml`` and the best score of its objective (a search
records no test metrics). Plain data; nothing here prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builder.errors import RunError

#: How an absent key is shown next to values (JSON has no other "missing" for a list cell).
ABSENT = "(absent)"


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of nested dicts and lists by dotted path: ``model.layers[0].units``.

    An empty list or dict has no leaves: ``layers: []`` against one hidden layer differs in
    that layer's keys, ``model.layers[0].units`` ..., not in a key ``model.layers``.
    """
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}[{i}]"))
    else:
        out[prefix] = data
    return out


def config_differences(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The keys whose values are not the same in every config, one row each.

    Returns:
        ``{"key": dotted path, "values": one per config (``ABSENT`` where it lacks the key)}``,
        in the order the keys first appear.
    """
    flat = [flatten(config) for config in configs]
    keys: dict[str, None] = {}
    for one in flat:
        keys.update(dict.fromkeys(one))
    rows = []
    for key in keys:
        values = [one.get(key, ABSENT) for one in flat]
        if any(value != values[0] for value in values[1:]):
            rows.append({"key": key, "values": values})
    return rows


def headline(test: dict[str, Any]) -> str:
    """The metric a run is judged by: ``mse`` for regression, ``accuracy`` for classification."""
    return "mse" if "r2" in test or "accuracy" not in test else "accuracy"


def baseline_ratio(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """A run's headline metric over its baseline's (a logistic one if recorded, else least
    squares, the best a network with no hidden layer can do): ``metric``, ``baseline``,
    ``value``, ``reference`` and ``ratio``; None when either is missing."""
    test = metrics.get("test") or {}
    baselines = metrics.get("baselines") or {}
    metric = headline(test)
    for name in ("logistic", "least_squares"):
        reference = (baselines.get(name) or {}).get(metric)
        value = test.get(metric)
        if isinstance(reference, (int, float)) and isinstance(value, (int, float)) and reference:
            return {
                "metric": metric,
                "baseline": name,
                "value": value,
                "reference": reference,
                "ratio": value / reference,
            }
    return None


def describe_run(path: str | Path) -> dict[str, Any]:
    """What ``compare`` needs of one run directory: its config, metrics, data and history.

    Raises:
        RunError: the path is not a run directory (a tune run needs its ``best.yaml``).
    """
    from builder.config import load_config
    from builder.errors import ConfigError
    from builder.runs import load_run_config, read_json, resolved_config

    path = Path(path)
    if not path.is_dir():
        raise RunError(f"compare takes run directories. Received: {path} (not a directory)")
    manifest_path = path / "manifest.json"
    manifest = read_json(manifest_path) if manifest_path.exists() else {}
    kind = manifest.get("kind", "train")
    entry: dict[str, Any] = {"path": str(path), "kind": kind, "status": manifest.get("status")}
    if kind == "tune":
        best_path = path / "best.yaml"
        if not best_path.exists():
            raise RunError(
                f"tune run {path} must contain best.yaml (its best trial) to be compared; "
                f"the search has not finished. Received: status {manifest.get('status')}"
            )
        try:
            config = load_config(best_path)
        except ConfigError as err:
            raise RunError(f"{best_path} is not a valid builder config: {err}") from None
        best = manifest.get("best") or {}
        entry.update(
            metrics={},
            test={},
            best={
                "trial": best.get("trial"),
                "objective": manifest.get("objective"),
                "score": best.get("score"),
            },
        )
    else:
        config = load_run_config(path)
        metrics_path = path / "metrics.json"
        metrics = read_json(metrics_path) if metrics_path.exists() else {}
        entry.update(metrics=metrics, test=metrics.get("test") or {}, best=None)
    raw = resolved_config(config)
    raw.pop("tune", None)
    data = manifest.get("data") or {}
    entry.update(
        name=config.name,
        config=raw,
        baseline=baseline_ratio(entry["metrics"]),
        data={
            "path": raw["data"].get("path"),
            "sha256": data.get("sha256"),
            "split": raw["data"]["split"],
            "streaming": data.get("streaming"),
        },
    )
    return entry


def labels(paths: list[str]) -> list[str]:
    """Short names for runs: ``<name>/<timestamp>``, the last two parts of each path."""
    short = [str(Path(*Path(p).parts[-2:])) for p in paths]
    return short if len(set(short)) == len(short) else [str(p) for p in paths]


def compare(paths: list[str | Path]) -> dict[str, Any]:
    """``builder compare``: the config keys that differ, the test metrics, the data.

    Args:
        paths: two or more run directories (train or tune runs).

    Returns:
        ``runs`` (per run: ``label``, ``path``, ``kind``, ``name``, ``test``, ``baseline``
        (see ``baseline_ratio``), ``best`` for a tune run, ``data``), ``differences``
        (``config_differences`` of the runs' configs, a tune run's best trial's), ``metrics``
        (the test metric names any run has), ``same_data`` (the data files' SHA-256 are all
        recorded and equal), ``same_split`` and ``warnings``.

    Raises:
        RunError: fewer than two runs, or a path that is not a run directory.
    """
    paths = [str(p) for p in paths]
    if len(paths) < 2:
        raise RunError(f"compare needs two or more run directories. Received: {len(paths)}")
    entries = [describe_run(p) for p in paths]
    names = labels(paths)
    differences = config_differences([e["config"] for e in entries])
    metrics: dict[str, None] = {}
    for entry in entries:
        metrics.update(dict.fromkeys(entry["test"]))
    shas = [e["data"]["sha256"] for e in entries]
    same_data = all(shas) and len(set(shas)) == 1
    splits = [e["data"]["split"] for e in entries]
    same_split = all(s == splits[0] for s in splits[1:])
    warnings = []
    if not same_data:
        seen = ", ".join(
            f"{label}: {sha[:12] if sha else 'not recorded'}"
            for label, sha in zip(names, shas, strict=True)
        )
        warnings.append(
            "the runs were not trained on the same data (SHA-256 of the data file "
            f"{seen}): their test metrics are on different rows and do not compare."
        )
    elif not same_split:
        warnings.append(
            "the runs split the same data differently (data.split differs): their test metrics "
            "are on different rows."
        )
    runs = []
    for label, entry in zip(names, entries, strict=True):
        runs.append(
            {
                "label": label,
                **{k: entry[k] for k in ("path", "kind", "name", "status", "test", "baseline")},
                "best": entry["best"],
                "data": entry["data"],
            }
        )
    return {
        "runs": runs,
        "differences": differences,
        "metrics": list(metrics),
        "same_data": same_data,
        "same_split": same_split,
        "warnings": warnings,
    }


def histories(result: dict[str, Any]) -> list[Any]:
    """Each compared run's ``history.csv`` as a pandas frame (None for a tune run or a run
    without one), in ``result["runs"]``'s order."""
    import pandas as pd

    out = []
    for run in result["runs"]:
        path = Path(run["path"]) / "history.csv"
        out.append(pd.read_csv(path) if run["kind"] != "tune" and path.exists() else None)
    return out
