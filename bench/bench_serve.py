"""Bench: ``builder serve`` on loopback against ``builder predict`` on the same rows.

One ``builder serve`` process (a real uvicorn, started once: the model loads once) answers, per
run: single-row requests one after another (latency p50 and p99), 1,000-row requests (latency),
and single-row requests from 1 and from 8 concurrent clients (rows per second; the clients are
threads of this process, on the same 2 cores as the server). Then ``builder predict`` runs as a
user runs it, a fresh process on a CSV of 1 row and of the same 1,000 rows (wall time, per-row
cost). Server and CLI alternate run by run; medians over ``--runs``. A child process also times
one model call each way (``model.predict``, the eager call ``builder predict`` makes, and
``predict_on_batch``, what the server calls) on one row and on 1,000. The served predictions are
checked against ``builder predict``'s for the 1,000 rows.

    python bench/bench_serve.py [--runs 5] [--run RUN]

Without ``--run`` it trains ``configs/jobs_level.yaml`` (text columns, four classes) into
bench/_data/serve_runs once and reuses it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

GOALS = {"single_row_p50_ms": 5.0, "batch_1000_ms": 50.0}
CONFIG = _common.ROOT / "configs" / "jobs_level.yaml"
RUNS_DIR = _common.DATA / "serve_runs"
BUILDER = str(Path(sys.executable).parent / "builder")
SINGLE_REQUESTS = 300
BATCH_REQUESTS = 20
THROUGHPUT_REQUESTS = 400  # per measurement, split over the clients


def _trained_run() -> Path:
    found = sorted((RUNS_DIR / "jobs_level").glob("*/model.keras"))
    if found:
        return found[-1].parent
    subprocess.run(
        [BUILDER, "train", str(CONFIG), "--runs-dir", str(RUNS_DIR)],
        env=_common.child_env(),
        cwd=_common.ROOT,
        check=True,
        capture_output=True,
    )
    return sorted((RUNS_DIR / "jobs_level").glob("*/model.keras"))[-1].parent


def _rows(run: Path, count: int) -> tuple[list[str], list[dict]]:
    import pandas as pd
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    features = [f["name"] if isinstance(f, dict) else f for f in config["data"]["features"]]
    frame = pd.read_csv(config["data"]["path"]).head(count)
    return features, json.loads(frame[features].to_json(orient="records"))


class Client:
    """One keep-alive connection to the server."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def predict(self, body: bytes) -> dict:
        self.connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {data[:300]!r}")
        return json.loads(data)


def _latencies(client: Client, bodies: list[bytes], count: int) -> list[float]:
    found = []
    for i in range(count):
        started = time.perf_counter()
        client.predict(bodies[i % len(bodies)])
        found.append(time.perf_counter() - started)
    return found


def _rows_per_second(port: int, bodies: list[bytes], clients: int) -> float:
    each = THROUGHPUT_REQUESTS // clients
    connections = [Client(port) for _ in range(clients)]
    for connection in connections:
        connection.predict(bodies[0])
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(each):
                connections[k].predict(bodies[(k * each + i) % len(bodies)])
        except BaseException as error:  # noqa: BLE001  (re-raised below)
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return clients * each / elapsed


def _cli_seconds(run: Path, csv: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [BUILDER, "predict", str(run), "--data", str(csv)],
        env=_common.child_env(),
        cwd=_common.ROOT,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def _child_model_calls(run: str) -> None:
    """One model call each way, timed in this process after a warm-up (medians of 50)."""
    import keras  # noqa: F401

    from builder.runs import load_run
    from builder.training import compiled_outputs, model_outputs

    model = load_run(run).model
    width = int(model.inputs[0].shape[-1])
    compiled = compiled_outputs(model)
    found = {}
    for rows in (1, 1000):
        x = np.random.default_rng(0).uniform(0, 5, (rows, width)).astype(np.float32)
        ways = {
            "model.predict": lambda x=x: model.predict(x, verbose=0),
            "eager call (builder predict)": lambda x=x: model_outputs(model, x),
            "predict_on_batch (builder serve)": lambda x=x: compiled(x),
        }
        for name, call in ways.items():
            call()
            times = []
            for _ in range(50 if name != "model.predict" else 15):
                started = time.perf_counter()
                call()
                times.append(time.perf_counter() - started)
            found[f"{name}, {rows} rows"] = _common.median(times) * 1e3
        same = np.array_equal(model_outputs(model, x), compiled(x))
        found[f"compiled equals eager bit for bit, {rows} rows"] = bool(same)
    _common.emit(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--run", type=Path, help="A run directory (default: train jobs_level).")
    parser.add_argument("--child-model-calls", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_model_calls:
        _child_model_calls(args.child_model_calls)
        return
    import pandas as pd

    run = (args.run or _trained_run()).resolve()
    features, rows = _rows(run, 1000)
    _common.DATA.mkdir(parents=True, exist_ok=True)
    one_csv, batch_csv = _common.DATA / "serve_1.csv", _common.DATA / "serve_1000.csv"
    pd.DataFrame(rows[:1]).to_csv(one_csv, index=False)
    pd.DataFrame(rows).to_csv(batch_csv, index=False)
    singles = [json.dumps({"rows": [row]}).encode() for row in rows[:200]]
    batch = [json.dumps({"rows": rows}).encode()]

    model_calls = _common.run_child([__file__, "--child-model-calls", str(run)])
    server = subprocess.Popen(
        [BUILDER, "serve", str(run), "--port", "0"],
        env=_common.child_env(),
        cwd=_common.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = time.perf_counter()
    line = server.stdout.readline().strip()
    startup = time.perf_counter() - started
    port = int(line.split("http://127.0.0.1:")[1].split()[0])
    samples: dict[str, list[float]] = {
        "single_row_p50_ms": [],
        "single_row_p99_ms": [],
        "batch_1000_ms": [],
        "rows_per_second_1_client": [],
        "rows_per_second_8_clients": [],
        "cli_1_row_seconds": [],
        "cli_1000_rows_seconds": [],
    }
    try:
        client = Client(port)
        served = client.predict(batch[0])
        _latencies(client, singles, 50)  # warm-up
        for _ in range(args.runs):
            # uvicorn closes a connection idle for 5 s, and the CLI runs below take longer.
            client = Client(port)
            client.predict(singles[0])
            single = np.array(_latencies(client, singles, SINGLE_REQUESTS)) * 1e3
            samples["single_row_p50_ms"].append(float(np.percentile(single, 50)))
            samples["single_row_p99_ms"].append(float(np.percentile(single, 99)))
            whole = _latencies(client, batch, BATCH_REQUESTS)
            samples["batch_1000_ms"].append(_common.median(whole) * 1e3)
            samples["rows_per_second_1_client"].append(_rows_per_second(port, singles, 1))
            samples["rows_per_second_8_clients"].append(_rows_per_second(port, singles, 8))
            samples["cli_1_row_seconds"].append(_cli_seconds(run, one_csv))
            samples["cli_1000_rows_seconds"].append(_cli_seconds(run, batch_csv))
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=60)

    from builder.predict import predict
    from builder.runs import load_run

    expected = predict(load_run(run), batch_csv)
    target = [c for c in expected.columns if c.startswith("predicted_")][0]
    agreement: dict[str, object] = {}
    if "probabilities" in served:
        labels = [c.removeprefix("probability_") for c in expected.columns if "probability_" in c]
        got = np.array([[p[c] for c in labels] for p in served["probabilities"]], np.float32)
        want = expected[[f"probability_{c}" for c in labels]].to_numpy(np.float32)
        agreement["labels_equal"] = served["predictions"] == list(expected[target])
    else:
        got = np.array(served["predictions"], np.float32)
        want = expected[target].to_numpy(np.float32)
    agreement["float32_values_equal"] = bool(np.array_equal(got, want))
    agreement["max_relative_difference"] = float(
        np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-30))
    )
    summary = {name: _common.median(values) for name, values in samples.items()}
    summary["cli_per_row_ms_at_1000_rows"] = summary["cli_1000_rows_seconds"] * 1e3 / len(rows)
    summary["served_per_row_ms_at_1000_rows"] = summary["batch_1000_ms"] / len(rows)
    path = _common.write_results(
        "serve",
        {
            "goals": GOALS,
            "run": str(run.relative_to(_common.ROOT))
            if run.is_relative_to(_common.ROOT)
            else str(run),
            "features": features,
            "runs": args.runs,
            "requests": {
                "single_row": SINGLE_REQUESTS,
                "batch_1000": BATCH_REQUESTS,
                "throughput": THROUGHPUT_REQUESTS,
            },
            "server_start_to_address_seconds": startup,
            "summary": summary,
            "under_goals": {name: summary[name] < goal for name, goal in GOALS.items()},
            "served_vs_builder_predict_1000_rows": agreement,
            "model_call_ms": model_calls,
            "samples": samples,
        },
    )
    rows_out = [
        ["single row, p50", f"{summary['single_row_p50_ms']:.2f} ms"],
        ["single row, p99", f"{summary['single_row_p99_ms']:.2f} ms"],
        ["1,000-row request", f"{summary['batch_1000_ms']:.1f} ms"],
        ["rows/s, 1 client (1-row requests)", f"{summary['rows_per_second_1_client']:,.0f}"],
        ["rows/s, 8 clients (1-row requests)", f"{summary['rows_per_second_8_clients']:,.0f}"],
        ["`builder predict`, 1 row (process)", f"{summary['cli_1_row_seconds']:.2f} s"],
        ["`builder predict`, 1,000 rows (process)", f"{summary['cli_1000_rows_seconds']:.2f} s"],
    ]
    print(_common.table(["measure", "median"], rows_out))
    print(json.dumps(agreement))
    print(json.dumps(model_calls, indent=1))
    print(f"-> {path.relative_to(_common.ROOT)}")


if __name__ == "__main__":
    main()
