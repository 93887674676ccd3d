"""What the model server's endpoints share: the config, the state, request and error helpers.

The hot path is lean on purpose: orjson in and out, no per-request pydantic, and the model
runs in the micro-batcher's thread, never on the event loop.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from shipyard import errors

from ._batching import MicroBatcher, QueueFull
from ._metrics import ServingMetrics
from ._model import PredictionRequest, PredictionResult, ServedModel
from ._predlog import LogEntry, PredictionLog

__all__ = ["ServingConfig", "ServingState", "HTTPError", "read_body", "json_object",
           "json_response", "error_response", "plain_array", "JSON"]

log = logging.getLogger("shipyard.serving")
JSON = "application/json"


@dataclass(frozen=True)
class ServingConfig:
    """The knobs of a model server (the ``shipyard serve`` options)."""

    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 1000
    max_body_bytes: int = 16 * 2**20
    log_predictions: bool = True
    predlog_flush_interval: float = 1.0
    predlog_flush_rows: int = 10_000


class HTTPError(Exception):
    """An HTTP failure that is not a ShipyardError (413, 503): status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ServingState:
    """What the endpoints share: the model, the batcher, the log and the metrics."""

    def __init__(self, served: ServedModel, config: ServingConfig, home: Path) -> None:
        self.served = served
        self.config = config
        self.metrics = ServingMetrics(served.name, served.version_label)
        self.predlog = PredictionLog(home, served.name,
                                     flush_interval=config.predlog_flush_interval,
                                     flush_rows=config.predlog_flush_rows) \
            if config.log_predictions else None
        handler = functools.partial(served.predict_requests,
                                    listener=self._log_batch if self.predlog else None)
        self.batcher: MicroBatcher[PredictionRequest, PredictionResult] = MicroBatcher(
            handler, max_batch_size=config.max_batch_size, max_wait_ms=config.max_wait_ms,
            max_queue=config.max_queue, on_batch=self.metrics.observe_batch)
        self.metrics.track_queue(lambda: self.batcher.queue_depth)
        self.ready = True

    async def predict(self, data: Any, rows: int, *, want_proba: bool, endpoint: str,
                      request_id: str, started: float) -> PredictionResult:
        if rows < 1:
            raise errors.InvalidInput("the request has no rows to predict", field="inputs")
        if not self.served.joinable(data):
            # Wrong columns: the signature names every problem (off the event loop).
            await run_in_threadpool(self.served.enforce, data)
        req = PredictionRequest(data, rows, want_proba=want_proba, endpoint=endpoint,
                                request_id=request_id, started=started)
        result = await self.batcher.submit(req, rows)
        self.metrics.predictions.inc(rows)
        return result

    def _log_batch(self, model_input: Any, group: Sequence[PredictionRequest],
                   results: Sequence[PredictionResult]) -> None:
        """The batcher's listener (predict thread): hand the batch to the log writer."""
        assert self.predlog is not None
        import numpy as np

        try:
            now = time.perf_counter()
            rows = [r.rows for r in group]
            proba = None
            if all(r.probabilities is not None for r in results) and results:
                proba = np.concatenate([r.probabilities for r in results])
            entry = LogEntry(
                timestamp=time.time(), model_version=self.served.version,
                model_digest=self.served.digest, inputs=model_input,
                predictions=np.concatenate([r.predictions for r in results]),
                probabilities=proba,
                prediction_ids=[i for r in results for i in r.prediction_ids],
                request_ids=[r.request_id for r, n in zip(group, rows, strict=True)
                             for _ in range(n)],
                endpoints=[r.endpoint for r, n in zip(group, rows, strict=True)
                           for _ in range(n)],
                latency_ms=[(now - r.started) * 1000 for r, n in zip(group, rows, strict=True)
                            for _ in range(n)])
            if not self.predlog.append(entry):
                self.metrics.predlog_dropped.inc(len(entry.prediction_ids))
        except Exception:  # noqa: BLE001 - logging must never fail a prediction
            log.exception("could not queue predictions for the log")

    async def close(self) -> None:
        self.ready = False
        await self.batcher.close()
        if self.predlog is not None:
            await run_in_threadpool(self.predlog.close)


# -- request helpers -------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to be over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> HTTPError:
    return HTTPError(413, "REQUEST_TOO_LARGE", f"the request body is over the {limit} byte "
                     "limit (shipyard serve --max-body-mb); split it into smaller requests")


def json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidInput(f"the request body is not valid JSON: {exc}",
                                  field="body") from None
    if not isinstance(payload, dict):
        raise errors.InvalidInput("the request body must be a JSON object", field="body")
    return payload


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status,
                    headers=headers, media_type=JSON)


def plain_array(arr: Any) -> Any:
    """An array orjson can write (it writes numeric arrays natively, not object arrays)."""
    return arr.tolist() if arr.dtype.kind in "OUSMm" else arr


def error_response(exc: Exception, v2: bool) -> Response:
    headers = None
    field = None
    if isinstance(exc, QueueFull):
        status, code, message = 429, "RESOURCE_EXHAUSTED", str(exc)
        headers = {"Retry-After": "1"}
    elif isinstance(exc, HTTPError):
        status, code, message = exc.status, exc.code, exc.message
    elif isinstance(exc, errors.ShipyardError):
        status = next((errors.HTTP_STATUS[c] for c in type(exc).__mro__
                       if c in errors.HTTP_STATUS), 500)
        code, message, field = exc.code, exc.message, exc.field
    else:
        log.exception("unexpected error while serving a request")
        status, code, message = 500, "INTERNAL_ERROR", f"{type(exc).__name__}: {str(exc)[:300]}"
    if v2:
        return json_response({"error": message}, status, headers)
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return json_response({"error": body}, status, headers)
