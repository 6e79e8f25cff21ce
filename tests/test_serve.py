"""``builder serve``: each endpoint, every bad request, predictions equal to ``builder predict``'s,
a real uvicorn process under concurrent clients, and schemathesis on the server's own OpenAPI."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

import builder
from builder.predict import predict, vocabularies_of
from builder.salary_data import generate_jobs
from builder.serving import create_app
from tests.conftest import PROCESS_TIMEOUT, ROOT, default_signals, write_yaml

# A feature name with a space: rows are JSON objects keyed by the CSV's own names.
CLASSIFIER = ["age", "years worked", "job_title", "region", "salary"]
REGRESSOR = ["age", "years worked", "job_title", "region", "remote"]
CLASSES = ["junior", "lead", "mid", "senior"]


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    frame = generate_jobs(rows=600, seed=5).rename(columns={"years_worked": "years worked"})
    path = folder / "jobs.csv"
    frame.to_csv(path, index=False)
    return folder, path, frame


def _train(folder, path, name, features, target, **data):
    raw = {
        "name": name,
        "data": {"path": str(path), "features": features, "target": target, **data},
        "model": {"layers": [{"type": "dense", "units": 8, "activation": "tanh"}]},
        "training": {"epochs": 2, "batch_size": 128, "early_stopping": None},
    }
    if target == "level":
        raw["task"] = "classification"
    config = write_yaml(folder / f"{name}.yaml", raw)
    return builder.train(config, runs_dir=folder / "runs")


@pytest.fixture(scope="module")
def classifier(jobs):
    """Four text classes; unseen categories and empty values are errors."""
    folder, path, _ = jobs
    return _train(folder, path, "level", CLASSIFIER, "level", unknown="error")


@pytest.fixture(scope="module")
def regressor(jobs):
    """Empty values filled (missing: mean); unseen categories encoded as the average."""
    folder, path, _ = jobs
    return _train(folder, path, "pay", REGRESSOR, "salary", missing="mean")


@pytest.fixture(scope="module")
def clf_client(classifier):
    return TestClient(create_app(classifier))


@pytest.fixture(scope="module")
def reg_client(regressor):
    return TestClient(create_app(regressor))


def _rows(frame, features, start=0, count=1):
    return json.loads(frame[features].iloc[start : start + count].to_json(orient="records"))


def _predicted(run, rows, tmp_path):
    # `builder predict` on a CSV of exactly these rows (None: an empty cell).
    path = tmp_path / "rows.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return predict(run, path)


# ---- endpoints


def test_health_names_the_model_task_backend_and_versions(clf_client, classifier):
    import keras

    body = clf_client.get("/health").json()
    assert body["loaded"] is True and body["model"] == "level"
    assert body["run"] == str(classifier.path) and body["task"] == "classification"
    assert body["backend"] == keras.backend.backend()
    assert body["versions"]["builder"] == builder.__version__
    assert body["versions"]["keras"] == keras.__version__


def test_schema_lists_features_in_order_with_vocabularies_and_classes(clf_client, classifier):
    body = clf_client.get("/schema").json()
    vocabularies = vocabularies_of(classifier.model)
    assert [f["name"] for f in body["features"]] == CLASSIFIER
    for feature in body["features"]:
        if feature["name"] in ("job_title", "region"):
            assert feature["type"] == "categorical"
            assert feature["vocabulary"] == list(vocabularies[feature["name"]].values)
        else:
            assert feature["type"] == "numeric" and feature["vocabulary"] is None
    assert body["target"] == "level" and body["task"] == "classification"
    assert body["classes"] == CLASSES
    assert body["columns"] == ["predicted_level", *[f"probability_{c}" for c in CLASSES]]


def test_openapi_declares_each_feature_of_a_row(clf_client, reg_client, classifier):
    document = clf_client.get("/openapi.json").json()
    row = document["components"]["schemas"]["Row"]
    assert list(row["properties"]) == CLASSIFIER and row["required"] == CLASSIFIER
    assert row["additionalProperties"] is False
    assert row["properties"]["age"]["type"] == "number"
    region = row["properties"]["region"]
    assert region["type"] == "string"  # unknown: error, so only the training values
    assert region["enum"] == list(vocabularies_of(classifier.model)["region"].values)
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "text/csv"}
    # missing: mean takes null; unknown: average takes any string.
    reg_row = reg_client.get("/openapi.json").json()["components"]["schemas"]["Row"]
    kinds = {s["type"] for s in reg_row["properties"]["region"]["anyOf"]}
    assert kinds == {"string", "null"} and "enum" not in reg_row["properties"]["region"]


# ---- predictions equal builder predict's


def test_one_row_and_a_batch_equal_builder_predict(reg_client, regressor, jobs, tmp_path):
    _, _, frame = jobs
    rows = _rows(frame, REGRESSOR, 0, 40)
    rows[3]["age"] = None  # filled with the training mean, as predict fills an empty cell
    rows[5]["job_title"] = "astronaut"  # unseen: the average title, as predict encodes it
    rows[6]["region"] = "  north  "  # stripped, as the CSV reader strips
    expected = _predicted(regressor, rows, tmp_path)["predicted_salary"].to_numpy(np.float32)
    answer = reg_client.post("/predict", json={"rows": rows})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    np.testing.assert_allclose(np.array(body["predictions"], np.float32), expected, rtol=1e-4)
    assert body["unseen"] == {"job_title": 1}
    one = reg_client.post("/predict", json={"rows": rows[:1]}).json()["predictions"]
    alone = _predicted(regressor, rows[:1], tmp_path)["predicted_salary"].to_numpy(np.float32)
    np.testing.assert_allclose(np.array(one, np.float32), alone, rtol=1e-4)


def test_a_classifier_answers_labels_and_probabilities_as_predict(
    clf_client, classifier, jobs, tmp_path
):
    _, _, frame = jobs
    rows = _rows(frame, CLASSIFIER, 100, 60)
    expected = _predicted(classifier, rows, tmp_path)
    body = clf_client.post("/predict", json={"rows": rows}).json()
    assert body["predictions"] == list(expected["predicted_level"])
    assert [list(p) for p in body["probabilities"]] == [CLASSES] * len(rows)
    served = np.array([[p[c] for c in CLASSES] for p in body["probabilities"]], np.float32)
    wanted = expected[[f"probability_{c}" for c in CLASSES]].to_numpy(np.float32)
    np.testing.assert_allclose(served, wanted, rtol=1e-4, atol=1e-7)


def test_a_csv_body_answers_the_csv_builder_predict_writes(reg_client, regressor, jobs, tmp_path):
    _, _, frame = jobs
    part = frame.iloc[:30].copy()
    part.loc[part.index[2], "age"] = np.nan  # an empty cell, filled under missing: mean
    path = tmp_path / "part.csv"
    part.to_csv(path, index=False)
    answer = reg_client.post(
        "/predict", content=path.read_bytes(), headers={"Content-Type": "text/csv"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    expected = predict(regressor, path)
    lines = answer.text.splitlines()
    assert lines[0] == ",".join(expected.columns) and len(lines) == 31
    served_path = tmp_path / "served.csv"
    served_path.write_text(answer.text, encoding="utf-8")
    served = pd.read_csv(served_path)
    pd.testing.assert_frame_equal(served.drop(columns="predicted_salary"), pd.read_csv(path))
    np.testing.assert_allclose(
        served["predicted_salary"].to_numpy(np.float32),
        expected["predicted_salary"].to_numpy(np.float32),
        rtol=1e-4,
    )


# ---- bad requests: 4xx JSON naming the row and field


def _row(frame, **changes):
    row = _rows(frame, CLASSIFIER, 7)[0]
    for name, value in changes.items():
        if value is _DROP:
            del row[name]
        else:
            row[name] = value
    return row


_DROP = object()

# (name, body maker (frame -> bytes), content type, status, row, field, words in the message)
BAD = [
    ("malformed_json", lambda f: b'{"rows": [', "application/json", 400, None, None,
     "must be JSON"),
    ("not_an_object", lambda f: b"[1, 2]", "application/json", 422, None, None,
     'must be a JSON object {"rows"'),
    ("empty_rows", lambda f: b'{"rows": []}', "application/json", 422, None, "rows",
     "at least one row"),
    ("rows_not_a_list", lambda f: b'{"rows": {"age": 1}}', "application/json", 422, None, "rows",
     "must be a list"),
    ("row_not_an_object", lambda f: json.dumps({"rows": [_row(f), 5]}).encode(),
     "application/json", 422, 1, None, "must be an object of feature values"),
    ("missing_feature", lambda f: json.dumps({"rows": [_row(f), _row(f, region=_DROP)]}).encode(),
     "application/json", 422, 1, "region", "rows[1].region is required"),
    ("unknown_feature", lambda f: json.dumps({"rows": [{**_row(f), "regoin": "north"}]}).encode(),
     "application/json", 422, 0, "regoin", "Did you mean 'region'?"),
    ("text_in_numeric", lambda f: json.dumps({"rows": [_row(f, age="41")]}).encode(),
     "application/json", 422, 0, "age", "rows[0].age must be a number. Received: '41'"),
    ("bool_in_numeric", lambda f: json.dumps({"rows": [_row(f, salary=True)]}).encode(),
     "application/json", 422, 0, "salary", "write true/false as 1/0"),
    ("infinity_token", lambda f: json.dumps({"rows": [_row(f), _row(f, salary=float("inf"))]})
     .encode(), "application/json", 422, 1, "salary", "must be finite. Received: inf"),
    ("nan_token", lambda f: json.dumps({"rows": [_row(f, age=float("nan"))]}).encode(),
     "application/json", 422, 0, "age", "must be a finite number"),
    ("beyond_float32", lambda f: json.dumps({"rows": [_row(f, salary=1e39)]}).encode(),
     "application/json", 422, 0, "salary", "must be finite as a 32-bit float"),
    ("huge_integer", lambda f: json.dumps({"rows": [_row(f, age=10**400)]}).encode(),
     "application/json", 422, 0, "age", "must be finite"),
    ("unseen_under_unknown_error", lambda f: json.dumps({"rows": [_row(f, region="mars")]})
     .encode(), "application/json", 422, 0, "region",
     "must hold a value seen in training (data.unknown: error). Received: 'mars'"),
    ("number_as_category", lambda f: json.dumps({"rows": [_row(f, job_title=7)]}).encode(),
     "application/json", 422, 0, "job_title", "must be a string (a categorical feature)"),
    ("blank_category_under_missing_error",
     lambda f: json.dumps({"rows": [_row(f, job_title="  ")]}).encode(), "application/json", 422,
     0, "job_title", "must not be empty (data.missing: error)"),
    ("null_under_missing_error", lambda f: json.dumps({"rows": [_row(f, age=None)]}).encode(),
     "application/json", 422, 0, "age", "must not be null (data.missing: error"),
    ("other_media_type", lambda f: b"age=1", "application/x-www-form-urlencoded", 415, None, None,
     "takes application/json or text/csv"),
    ("csv_text_in_numeric", lambda f: f[CLASSIFIER].head(3).assign(age=["41", "x", "7"])
     .to_csv(index=False).encode(), "text/csv", 422, None, None,
     "request body: column 'age' must be numeric. Received: 'x' on line 3"),
    ("csv_missing_column", lambda f: f[CLASSIFIER[:-1]].head(3).to_csv(index=False).encode(),
     "text/csv", 422, None, None, "request body must have a column 'salary'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("maker", "media", "status", "row", "field", "words"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
def test_a_bad_request_is_a_4xx_naming_its_row_and_field(
    clf_client, jobs, maker, media, status, row, field, words
):
    _, _, frame = jobs
    answer = clf_client.post("/predict", content=maker(frame), headers={"Content-Type": media})
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert "Traceback" not in answer.text
    assert isinstance(body["detail"], str) and "\n" not in body["detail"]
    assert any(
        e["row"] == row and e["field"] == field and words in e["message"] for e in body["errors"]
    ), body
    # The server goes on serving.
    good = clf_client.post("/predict", json={"rows": [_row(frame)]})
    assert good.status_code == 200


def test_nan_is_refused_even_where_null_is_filled(reg_client, jobs):
    _, _, frame = jobs
    rows = _rows(frame, REGRESSOR, 0, 2)
    rows[1]["age"] = float("nan")
    body = reg_client.post("/predict", content=json.dumps({"rows": rows})).json()
    assert body["errors"][0]["row"] == 1 and body["errors"][0]["field"] == "age"
    rows[1]["age"] = None
    assert reg_client.post("/predict", json={"rows": rows}).status_code == 200


def test_a_body_over_the_limit_is_413_while_it_is_read(classifier, jobs):
    _, _, frame = jobs
    client = TestClient(create_app(classifier, max_body_bytes=2_000))
    small = json.dumps({"rows": [_row(frame)]}).encode()
    assert client.post("/predict", content=small).status_code == 200
    big = json.dumps({"rows": [_row(frame)] * 40}).encode()
    answer = client.post("/predict", content=big)  # refused by its Content-Length
    assert answer.status_code == 413 and "at most 2,000 bytes" in answer.json()["detail"]
    sent = []

    def chunks():  # no Content-Length: chunked, refused once 2,000 bytes have arrived
        for i in range(0, len(big) * 50, 500):
            sent.append(i)
            yield (big * 50)[i : i + 500]

    answer = client.post("/predict", content=chunks())
    assert answer.status_code == 413 and answer.json()["errors"][0]["row"] is None
    assert client.post("/predict", content=small).status_code == 200


def test_a_bug_is_a_500_without_a_traceback_and_serving_goes_on(classifier, jobs):
    _, _, frame = jobs
    app = create_app(classifier)
    client = TestClient(app, raise_server_exceptions=False)
    predictor = app.state.service.predictor
    working = predictor.outputs

    def broken(x):
        raise RuntimeError("a bug")

    predictor.outputs = broken
    answer = client.post("/predict", json={"rows": [_row(frame)]})
    assert answer.status_code == 500
    assert "RuntimeError" in answer.json()["detail"] and "Traceback" not in answer.text
    predictor.outputs = working
    assert client.post("/predict", json={"rows": [_row(frame)]}).status_code == 200


# ---- the command


def test_serve_refuses_a_port_in_use_and_a_missing_run_in_one_line(tmp_path, classifier):
    import socket

    from typer.testing import CliRunner

    from builder.cli import app

    runner = CliRunner()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", str(classifier.path), "--port", str(port)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: port {port} on 127.0.0.1 must be free to serve on. Received: address "
        f"127.0.0.1:{port} already in use (stop what uses it, or pass another --port)"
    )
    result = runner.invoke(app, ["serve", str(tmp_path / "nope"), "--port", "0"])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: run {tmp_path / 'nope'} does not exist."


# ---- a real server


@pytest.mark.slow
def test_a_uvicorn_process_answers_8_concurrent_clients_correctly(classifier, jobs, tmp_path):
    _, _, frame = jobs
    # 16 distinct requests of 1-5 rows, each expected as builder predict writes its rows.
    requests = []
    for i in range(16):
        rows = _rows(frame, CLASSIFIER, 20 * i, 1 + i % 5)
        expected = _predicted(classifier, rows, tmp_path)
        probabilities = expected[[f"probability_{c}" for c in CLASSES]].to_numpy(np.float32)
        requests.append(
            (json.dumps({"rows": rows}), list(expected["predicted_level"]), probabilities)
        )
    command = [sys.executable, "-m", "builder", "serve", str(classifier.path), "--port", "0"]
    server = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
    )
    try:
        line = _first_line(server, timeout=PROCESS_TIMEOUT)
        assert line.startswith(f"serving {classifier.path} at http://127.0.0.1:"), line
        assert line.endswith("(Ctrl-C stops)")
        port = int(line.split("http://127.0.0.1:")[1].split()[0])

        failures: list[str] = []
        answered = [0] * 8

        def client(k: int) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                for j in range(50):
                    body, labels, probabilities = requests[(k * 50 + j) % len(requests)]
                    bad = j % 10 == 9  # now and then a bad request, which changes nothing
                    if bad:
                        body = body.replace('"age":', '"age":"x","a":', 1)
                    connection.request(
                        "POST", "/predict", body, {"Content-Type": "application/json"}
                    )
                    response = connection.getresponse()
                    got = json.loads(response.read())
                    if bad:
                        if response.status != 422:
                            failures.append(f"client {k}: {response.status} {got}")
                        answered[k] += 1
                        continue
                    served = np.array(
                        [[p[c] for c in CLASSES] for p in got["probabilities"]], np.float32
                    )
                    if got["predictions"] != labels or not np.allclose(
                        served, probabilities, rtol=1e-4, atol=1e-7
                    ):
                        failures.append(f"client {k}, request {j}: {got}")
                    answered[k] += 1
            except Exception as error:  # noqa: BLE001  (reported by the test thread)
                failures.append(f"client {k}: {error!r}")
            finally:
                connection.close()

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        assert not failures, failures[:3]
        assert answered == [50] * 8
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
    assert server.returncode == 130  # Ctrl-C's code, as every command stops on it


def _first_line(process: subprocess.Popen, timeout: float) -> str:
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(process.stdout.readline()))
    reader.start()
    reader.join(timeout)
    if not found or not found[0]:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"builder serve printed no address within {timeout} s: {err}")
    return found[0].strip()


# ---- schemathesis


@pytest.mark.slow
@pytest.mark.parametrize("which", ["classifier", "regressor"])
def test_schemathesis_finds_no_5xx_and_no_schema_violation(which, request):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    @schemathesis.serializer("text/csv")
    def csv_text(ctx, value):
        return value.encode("utf-8") if isinstance(value, str) else None

    app = create_app(request.getfixturevalue(which))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    seen = []
    for path, method, mode, examples in [
        ("/health", "GET", schemathesis.GenerationMode.POSITIVE, 3),
        ("/schema", "GET", schemathesis.GenerationMode.POSITIVE, 3),
        ("/predict", "POST", schemathesis.GenerationMode.POSITIVE, 40),
        ("/predict", "POST", schemathesis.GenerationMode.NEGATIVE, 40),
    ]:
        strategy = schema[path][method].as_strategy(generation_mode=mode)

        @settings(
            max_examples=examples,
            deadline=5_000,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case):
            response = case.call()
            seen.append(response.status_code)
            case.validate_response(response, checks=checks)

        run()
    assert 200 in seen and any(400 <= code < 500 for code in seen)
