"""``builder serve``: a trained run's predictions over HTTP, with FastAPI on uvicorn.

``create_app(run)`` loads the model once and answers:

- ``GET /health``: loaded, the model's name, task, backend and versions.
- ``GET /schema``: the features in input order with their types (a categorical feature's
  vocabulary), the target, the task, the classes and the columns ``predict`` adds. The OpenAPI
  document (``/openapi.json``) declares the same: each feature is a property of a row.
- ``POST /predict``: ``{"rows": [{feature: value, ...}, ...]}`` answers
  ``{"predictions": [...]}`` (a classifier adds each row's class probabilities by label); a
  ``text/csv`` body answers the CSV ``builder predict`` writes for that file. Both go through
  ``builder.predict.Predictor``, the code ``builder predict`` runs, so a row gets the same float32
  values either way.

A bad request answers 4xx with JSON: ``detail`` (one line) and ``errors``, each naming its row
index and field. JSON rows follow the CSV reader's rules where they apply (finite as float32,
``data.missing``, ``data.unknown``; ``builder.data``) and JSON's own types: a numeric feature
takes a JSON number, a categorical feature a string, ``null`` is an empty cell (filled under
``data.missing: mean``, refused otherwise). Any other exception is a bug: a 500 with one line and
no traceback (the traceback goes to the server's log), and the server goes on serving.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from builder import files
from builder.data import FLOAT32_MAX
from builder.data.columns import clean_text
from builder.data.csv import beyond_float32, float32_rule
from builder.errors import BuilderError, DataError
from builder.predict import Predictor, Unseen, predict_chunks
from builder.runs import Run
from builder.training import compiled_outputs

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MAX_BODY_BYTES = 10 << 20
"""The largest request body ``/predict`` reads (``--max-body-bytes``): 10 MiB."""
MAX_ERRORS = 20
"""The most problems one error answer lists (``detail`` is the first)."""
_REQUEST_NAME = "request body"
# Distinct categorical values whose cleaned text is remembered (``Service._clean``).
_CLEANED_VALUES = 100_000
# Bodies up to this size are predicted on the event loop: the hop to a worker thread costs
# about as much as a one-row prediction. Larger ones go to a thread, so that a long request does
# not hold up the others (a health check, a one-row request).
_INLINE_BYTES = 64 << 10


class ServeError(BuilderError):
    """The server cannot start: the address is in use, or is not one of this machine's."""


class RequestProblem(Exception):
    """A request the server refuses: its status, one line, and the problems by row and field."""

    def __init__(self, status: int, problems: list[dict[str, Any]]) -> None:
        super().__init__(problems[0]["message"])
        self.status = status
        self.problems = problems

    def body(self) -> dict[str, Any]:
        """The JSON answer: ``detail`` (the first problem) and ``errors`` (at most
        ``MAX_ERRORS``)."""
        return {"detail": self.problems[0]["message"], "errors": self.problems[:MAX_ERRORS]}


def problem(message: str, row: int | None = None, field: str | None = None) -> dict[str, Any]:
    """One problem of a refused request, as ``errors`` lists it."""
    return {"row": row, "field": field, "message": message}


# ---- the OpenAPI document's fixed shapes


class FeatureInfo(BaseModel):
    """A feature, in the model's input order."""

    name: str
    type: Literal["numeric", "categorical"]
    vocabulary: list[str] | None = Field(
        None, description="A categorical feature's training values, most frequent first."
    )


class SchemaInfo(BaseModel):
    """What the model takes and gives."""

    model: str
    run: str | None
    task: Literal["regression", "classification"]
    target: str
    features: list[FeatureInfo]
    classes: list[str] | None
    missing: str = Field(description="data.missing: how empty (null) values are treated.")
    unknown: str = Field(description="data.unknown: how unseen categories are treated.")
    columns: list[str] = Field(description="The columns builder predict adds, in order.")


class HealthInfo(BaseModel):
    """The server is up and its model loaded."""

    loaded: bool
    model: str
    run: str | None
    task: Literal["regression", "classification"]
    backend: str
    versions: dict[str, str]


class ErrorItem(BaseModel):
    """One problem of a refused request: the row index and field it is about, where it has
    them."""

    row: int | None
    field: str | None
    message: str


class ErrorBody(BaseModel):
    """A refused request: the first problem as one line, and the problems found."""

    detail: str
    errors: list[ErrorItem]


def _json_floats(values: np.ndarray) -> list[float | None]:
    # Each float32 as its shortest repr (166229.67, as builder predict's CSV writes it), not its
    # float64 widening (166229.671875); a non-finite output as null, which JSON can hold.
    found = np.asarray(values, np.float32).astype(str).astype(np.float64)
    return [v if math.isfinite(v) else None for v in found.tolist()]


def _where(row: int, name: str) -> str:
    return f"rows[{row}].{name}" if name.isidentifier() else f"rows[{row}][{json.dumps(name)}]"


def _received(value: Any) -> str:
    # A string as Python shows it ('abc'), anything else as JSON writes it (true, 5, [1]).
    if isinstance(value, str):
        return files.short(value, 60)
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Service:
    """The loaded run and the work of each endpoint, without HTTP (``create_app`` serves it).

    Args:
        run: a loaded run.
    """

    def __init__(self, run: Run) -> None:
        config = run.config
        self.run = run
        self.predictor = Predictor(run, outputs=compiled_outputs(run.model))
        self.features = self.predictor.features
        self.vocabularies = self.predictor.vocabularies
        self.labels = self.predictor.labels
        self.fill = self.predictor.fill
        self.unknown = config.data.unknown
        self.name = config.name
        self.task = config.task or "regression"
        self.row_model = self._row_model()
        self.request_model = create_model(
            "PredictRequest",
            __config__=ConfigDict(extra="forbid", strict=True),
            rows=(list[self.row_model], Field(min_length=1, description="The rows to predict.")),
        )
        self.response_model = self._response_model()
        self._cleaned: dict[str, str | None] = {}
        self._cleaning = threading.Lock()
        # The first call builds the predict function and the second generalizes its input
        # shape: no request waits for either, and no two requests build it at once.
        for n in (1, 2):
            self.predictor.outputs(np.zeros((n, len(self.features)), np.float32))

    def _row_model(self) -> type[BaseModel]:
        fields: dict[str, Any] = {}
        for i, name in enumerate(self.features):
            vocabulary = self.vocabularies.get(name)
            if vocabulary is None:
                kind: Any = float
                extra: dict[str, Any] = {"minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}
                about = "numeric"
            else:
                kind = str
                extra = {}
                about = "categorical: a value seen in training"
                if self.unknown == "error":
                    extra["enum"] = [*vocabulary.values, *([None] if self.fill else [])]
                else:
                    about += " (others are encoded as the average value)"
            if self.fill:
                kind = kind | None
                about += "; null is filled as training filled it (data.missing: mean)"
            # Aliases: a feature's name may be any text ("Age (years)") or clash with pydantic's.
            fields[f"f{i}"] = (
                kind,
                Field(..., alias=name, description=about, json_schema_extra=extra or None),
            )
        return create_model(
            "Row", __config__=ConfigDict(extra="forbid", strict=True, title="Row"), **fields
        )

    def _response_model(self) -> type[BaseModel]:
        unseen = (dict[str, int], Field(description="Per feature: values unseen in training."))
        if self.labels is None:
            return create_model(
                "Predictions",
                predictions=(list[float | None], Field(description=f"{self.columns[0]}, per row.")),
                unseen=unseen,
            )
        probabilities = create_model(
            "Probabilities",
            __config__=ConfigDict(extra="forbid"),
            **{
                f"p{j}": (float | None, Field(..., alias=label))
                for j, label in enumerate(self.labels.classes)
            },
        )
        return create_model(
            "Predictions",
            predictions=(
                list[Literal[tuple(self.labels.classes)]],  # type: ignore[valid-type]
                Field(description=f"{self.columns[0]}: the most probable class, per row."),
            ),
            probabilities=(list[probabilities], Field(description="Per row, by class label.")),
            unseen=unseen,
        )

    @property
    def columns(self) -> list[str]:
        """The columns ``builder predict`` adds."""
        return self.predictor.columns

    def health(self) -> dict[str, Any]:
        """``GET /health``."""
        import keras

        import builder
        from builder.backend import versions

        return {
            "loaded": True,
            "model": self.name,
            "run": str(self.run.path) if self.run.path is not None else None,
            "task": self.task,
            "backend": keras.backend.backend(),
            "versions": {"builder": builder.__version__, **versions(keras.backend.backend())},
        }

    def schema(self) -> dict[str, Any]:
        """``GET /schema``."""
        features = []
        for name in self.features:
            vocabulary = self.vocabularies.get(name)
            if vocabulary is None:
                features.append({"name": name, "type": "numeric"})
            else:
                features.append(
                    {"name": name, "type": "categorical", "vocabulary": list(vocabulary.values)}
                )
        return {
            "model": self.name,
            "run": str(self.run.path) if self.run.path is not None else None,
            "task": self.task,
            "target": self.run.config.data.target,
            "features": features,
            "classes": list(self.labels.classes) if self.labels is not None else None,
            "missing": self.run.config.data.missing,
            "unknown": self.unknown,
            "columns": self.columns,
        }

    # ---- POST /predict

    def predict_json(self, body: bytes) -> dict[str, Any]:
        """``POST /predict`` with a JSON body: the predictions of its rows.

        Raises:
            RequestProblem: 400 for a body that is not JSON, 422 for rows that break a rule.
        """
        try:
            request = self.request_model.model_validate_json(body)
        except ValidationError as err:
            raise self._refused(err) from None
        frame = self._frame(request.rows)
        unseen = Unseen()
        try:
            self.predictor.prepare(frame, Path(_REQUEST_NAME), unseen)
        except DataError as err:  # _frame checks every rule first; kept as a guard
            raise RequestProblem(422, [problem(str(err))]) from None
        found = self.predictor.predictions(frame)
        answer: dict[str, Any] = {}
        if self.labels is None:
            answer["predictions"] = _json_floats(found[self.columns[0]])
        else:
            answer["predictions"] = found[self.columns[0]].tolist()
            labels = self.labels.classes
            table = np.column_stack([_json_floats(found[c]) for c in self.columns[1:]])
            answer["probabilities"] = [dict(zip(labels, row, strict=True)) for row in table]
        answer["unseen"] = dict(unseen.counts)
        return answer

    def _frame(self, rows: list[BaseModel]) -> pd.DataFrame:
        """The rows as the CSV reader gives them to ``Predictor`` (numbers as float64, NaN where
        empty; categories as stripped text, ``None`` where empty), every rule checked.

        Raises:
            RequestProblem: 422 naming each broken rule's row and feature.
        """
        found: list[tuple[int, int, str]] = []
        columns: dict[str, Any] = {}
        n = len(rows)
        categorical = [i for i, name in enumerate(self.features) if name in self.vocabularies]
        cells = [getattr(row, f"f{i}") for i in categorical for row in rows]
        texts = self._clean(cells) if categorical else None
        for i, name in enumerate(self.features):
            vocabulary = self.vocabularies.get(name)
            if vocabulary is None:
                given = [getattr(row, f"f{i}") for row in rows]
                values = np.array([np.nan if v is None else v for v in given], np.float64)
                for r in np.flatnonzero(np.isnan(values)):
                    if given[r] is not None:  # a NaN token: null is JSON's empty value
                        found.append(
                            (r, i, f"{_where(r, name)} must be a finite number (null is an empty "
                                   "value). Received: NaN")
                        )  # fmt: skip
                for r in np.flatnonzero(beyond_float32(values)):
                    found.append((r, i, f"{_where(r, name)} {float32_rule(float(values[r]))}"))
                columns[name] = values
                continue
            at = categorical.index(i) * n
            text = texts[at : at + n]
            if not self.fill:
                for r in np.flatnonzero(pd.isna(text)):
                    found.append(
                        (r, i, f"{_where(r, name)} must not be empty (data.missing: "
                               f"{self.run.config.data.missing}). "
                               f"Received: {_received(cells[at + r])}")
                    )  # fmt: skip
            if self.unknown == "error":
                codes = vocabulary.codes(text)
                known = ", ".join(repr(v) for v in sorted(vocabulary.values)[:5])
                more = f" ... ({len(vocabulary)} in all)" if len(vocabulary) > 5 else ""
                for r in np.flatnonzero(codes == 0):
                    found.append(
                        (r, i, f"{_where(r, name)} must hold a value seen in training "
                               f"(data.unknown: error). Received: {_received(text[r])}; "
                               f"training's values: {known}{more}")
                    )  # fmt: skip
            columns[name] = text
        if found:
            found.sort()
            raise RequestProblem(
                422, [problem(m, int(r), self.features[c]) for r, c, m in found[:MAX_ERRORS]]
            )
        return pd.DataFrame(columns, index=pd.RangeIndex(n))

    def _clean(self, cells: list[str | None]) -> np.ndarray:
        """``clean_text`` of the cells (the CSV reader's cleaning), remembered per value.

        A call costs about a millisecond whatever its length, more than the model on one row,
        and a categorical feature's values repeat from request to request: each distinct value
        is cleaned once, in one call for all a request brings.
        """
        cache = self._cleaned
        with self._cleaning:  # requests run on the event loop and in worker threads
            new = list({cell for cell in cells if cell is not None and cell not in cache})
            if new:
                if len(cache) + len(new) > _CLEANED_VALUES:
                    cache.clear()
                cache.update(zip(new, clean_text(pd.Series(new, dtype=object)), strict=True))
            found = [None if cell is None else cache[cell] for cell in cells]
        return np.array(found, dtype=object)

    def _refused(self, err: ValidationError) -> RequestProblem:
        """pydantic's errors of a request body, said by row and feature."""
        listed = ", ".join(self.features[:20]) + (" ..." if len(self.features) > 20 else "")
        problems = []
        status = 422
        for error in err.errors(include_url=False):
            kind, loc, value = error["type"], error["loc"], error.get("input")
            if kind == "json_invalid":
                status = 400
                detail = error.get("ctx", {}).get("error", error["msg"])
                problems.append(problem(f"the request body must be JSON. Received: {detail}"))
            elif len(loc) >= 3 and loc[0] == "rows":
                row, name = int(loc[1]), str(loc[2])
                where = _where(row, name)
                if kind == "missing":
                    message = f"{where} is required: a row gives every feature ({listed})"
                elif kind == "extra_forbidden":
                    close = difflib.get_close_matches(name, self.features, n=1)
                    hint = f". Did you mean '{close[0]}'?" if close else ""
                    message = (
                        f"rows[{row}] must hold only the model's features ({listed}). "
                        f"Received: {files.short(name, 60)}{hint}"
                    )
                elif value is None:
                    message = (
                        f"{where} must not be null (data.missing: "
                        f"{self.run.config.data.missing}; under mean, null is filled)"
                    )
                elif name in self.vocabularies:
                    message = f"{where} must be a string (a categorical feature)"
                    message += f". Received: {_received(value)}"
                else:
                    hint = " (write true/false as 1/0)" if isinstance(value, bool) else ""
                    message = f"{where} must be a number{hint}. Received: {_received(value)}"
                problems.append(problem(message, row, name))
            elif len(loc) == 2 and loc[0] == "rows":
                row = int(loc[1])
                problems.append(
                    problem(
                        f"rows[{row}] must be an object of feature values. "
                        f"Received: {_received(value)}",
                        row,
                    )
                )
            elif loc == ("rows",):
                message = (
                    "rows must hold at least one row. Received: []"
                    if kind == "too_short"
                    else f"rows must be a list of objects. Received: {_received(value)}"
                )
                problems.append(problem(message, None, "rows"))
            elif not loc or (len(loc) == 1 and kind == "extra_forbidden"):
                key = f" (a key {files.short(str(loc[0]), 40)})" if loc else ""
                problems.append(
                    problem(
                        'the request body must be a JSON object {"rows": [...]}'
                        f"{key}. Received: {_received(value)}",
                        None,
                        str(loc[0]) if loc else None,
                    )
                )
            else:
                field = ".".join(str(part) for part in loc)
                problems.append(problem(f"{field}: {error['msg']}", None, field))
        problems.sort(key=lambda p: (p["row"] is not None, p["row"] or 0))
        return RequestProblem(status, problems)

    def predict_csv(self, body: bytes) -> tuple[str, dict[str, int]]:
        """``POST /predict`` with a ``text/csv`` body: the CSV ``builder predict`` writes for
        it, and the unseen categorical values per column.

        The body goes through the CSV reader of ``builder.data`` as ``builder predict``'s file
        does: that reader takes a path, so the body is an in-memory file with one.

        Raises:
            RequestProblem: 422 with the reader's one-line message (file, column and line),
                the file named ``request body``.
        """
        unseen = Unseen()
        with _body_file(body) as path:
            try:
                chunks = predict_chunks(self.run, path, unseen=unseen, predictor=self.predictor)
                text = "".join(
                    frame.to_csv(index=False, header=i == 0) for i, frame in enumerate(chunks)
                )
            except DataError as err:
                message = str(err).replace(str(path), _REQUEST_NAME)
                raise RequestProblem(422, [problem(message)]) from None
        return text, dict(unseen.counts)


@contextlib.contextmanager
def _body_file(body: bytes) -> Iterator[Path]:
    # An anonymous file in memory (Linux's memfd) that /proc names; elsewhere a temporary file.
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("builder-request", os.MFD_CLOEXEC)
        try:
            with open(fd, "wb", closefd=False) as handle:
                handle.write(body)
            yield Path(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="builder-request-") as folder:
        path = Path(folder) / "request.csv"
        path.write_bytes(body)
        yield path


# ---- HTTP


def create_app(
    run: Run | str | Path,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    backend: str | None = None,
) -> FastAPI:
    """The FastAPI application serving a run (see the module's docstring).

    Args:
        run: a loaded run, or the path of a run directory or model file (``runs.load_run``,
            ``safe_mode=True``).
        max_body_bytes: the largest request body read; a larger one is refused with 413 while
            it is being read.
        backend: the Keras backend to load a path on (``builder.backend``).

    Returns:
        A ``fastapi.FastAPI``; serve it with uvicorn (``serve``) or test it with FastAPI's
        ``TestClient``.

    Raises:
        RunError: as ``runs.load_run``.
    """
    import builder

    if not isinstance(run, Run):
        from builder.runs import load_run

        run = load_run(run, backend=backend)
    service = Service(run)
    app = FastAPI(
        title=f"builder serve: {service.name}",
        version=builder.__version__,
        description=f"Predictions of the builder run {run.path or service.name}.",
    )
    app.state.service = service
    errors = {"model": ErrorBody}
    limit_text = files.size_text(max_body_bytes)

    @app.exception_handler(RequestProblem)
    async def refused(request: Request, exc: RequestProblem) -> JSONResponse:
        headers = {"Connection": "close"} if exc.status == 413 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        body = {"detail": str(exc.detail), "errors": []}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [problem(f"{'.'.join(map(str, e['loc']))}: {e['msg']}") for e in exc.errors()]
        return JSONResponse(RequestProblem(422, problems).body(), status_code=422)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback on the server's stderr after this answer.
        body = {
            "detail": f"internal error ({type(exc).__name__}): a bug in builder serve, which "
            "goes on serving; the server's log has the traceback",
            "errors": [],
        }
        return JSONResponse(body, status_code=500)

    @app.get("/health", response_model=HealthInfo, responses={500: errors})
    def health() -> dict[str, Any]:
        """The server is up: its model, task, backend and versions."""
        return service.health()

    @app.get("/schema", response_model=SchemaInfo, responses={500: errors})
    def schema() -> dict[str, Any]:
        """The features in input order with their types, the target, the task, the classes."""
        return service.schema()

    csv_answer = {
        "schema": {"type": "string"},
        "example": ",".join([*service.features, *service.columns]) + "\n",
    }

    @app.post(
        "/predict",
        response_model=None,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}},
                    "text/csv": {"schema": {"type": "string"}},
                },
            }
        },
        responses={
            200: {
                "model": service.response_model,
                "description": "The predictions; for a CSV body, builder predict's CSV.",
                "content": {"text/csv": csv_answer},
            },
            400: {**errors, "description": "The body is not JSON."},
            413: {**errors, "description": f"The body is over {limit_text}."},
            415: {**errors, "description": "The body is neither JSON nor CSV."},
            422: {**errors, "description": "A row breaks a rule; the errors name row and field."},
            500: {**errors, "description": "A bug; the server goes on serving."},
        },
    )
    async def predict(request: Request) -> Response:
        """Predict rows given as JSON ({"rows": [...]}) or as a CSV file (text/csv)."""
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in ("", "application/json", "text/csv"):
            raise RequestProblem(
                415,
                [
                    problem(
                        "POST /predict takes application/json or text/csv. Received: "
                        f"Content-Type: {files.short(media, 60)} (curl: -H 'Content-Type: "
                        "application/json')"
                    )
                ],
            )
        body = await _read_body(request, max_body_bytes, limit_text)
        if media == "text/csv":
            text, unseen = await run_in_threadpool(service.predict_csv, body)
            headers = {"Builder-Unseen": json.dumps(unseen)} if unseen else None
            return Response(text, media_type="text/csv", headers=headers)
        if len(body) <= _INLINE_BYTES:
            return JSONResponse(service.predict_json(body))
        return JSONResponse(await run_in_threadpool(service.predict_json, body))

    def openapi() -> dict[str, Any]:
        # The request body is read by hand (JSON or CSV, under a size limit), so FastAPI does not
        # see its model: its schema joins the document's components here.
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            found = service.request_model.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components = document.setdefault("components", {}).setdefault("schemas", {})
            components.update(found.pop("$defs", {}))
            components["PredictRequest"] = found
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi
    return app


async def _read_body(request: Request, limit: int, limit_text: str) -> bytes:
    """The request's body, refused with 413 as soon as it is known to exceed ``limit`` bytes:
    from its Content-Length, else while reading it."""
    too_large = RequestProblem(
        413, [problem(f"the request body must be at most {limit_text}; send fewer rows per call")]
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def bind(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one the system picks).

    Raises:
        ServeError: the port is in use, or the host is not an address of this machine.
    """
    where = f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as err:
        raise ServeError(
            f"--host must be an address or name of this machine. Received: {files.short(host)} "
            f"({getattr(err, 'strerror', None) or err})"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        # As uvicorn binds: a restart need not wait out the last run's closed connections.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        import errno

        if err.errno == errno.EADDRINUSE:
            raise ServeError(
                f"port {port} on {host} must be free to serve on. Received: address {where} "
                "already in use (stop what uses it, or pass another --port)"
            ) from None
        raise ServeError(f"cannot listen on {where}: {err.strerror or err}") from None
    return sock


def url(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(app: FastAPI, sock: socket.socket) -> None:
    """Serve ``app`` with uvicorn on ``sock`` until SIGINT or SIGTERM; uvicorn then re-raises
    the signal, so the caller stops as it would on Ctrl-C.

    No access log: a line per request costs more than a small model's prediction.
    """
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
