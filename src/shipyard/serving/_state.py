"""What the model server's endpoints share: the config, the state, request and error helpers.

The hot path is lean on purpose: orjson in and out, no per-request pydantic, and the model
runs in the micro-batcher's thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
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

from ._batching import BatcherClosed, MicroBatcher, QueueFull
from ._metrics import ServingMetrics, VersionMetrics
from ._model import PredictionRequest, PredictionResult, ServedModel
from ._predlog import LogEntry, PredictionLog

__all__ = ["ServingConfig", "ServingState", "HTTPError", "read_body", "json_object",
           "json_response", "error_response", "plain_array", "JSON", "answered_by",
           "warm_up", "sample_input"]

log = logging.getLogger("shipyard.serving")
JSON = "application/json"

#: The version label that answered the current request (set by ServingState.predict; the
#: app's endpoint wrapper labels the request's metrics with it).
answered_by: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "shipyard_answered_by", default=None)


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
    #: seconds between registry polls when serving NAME@ALIAS (0: never follow the alias)
    watch_interval: float = 2.0


class HTTPError(Exception):
    """An HTTP failure that is not a ShipyardError (413, 503): status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(eq=False)
class _Slot:
    """One served version with its own batcher: what a swap replaces as a whole."""

    served: ServedModel
    batcher: MicroBatcher[PredictionRequest, PredictionResult]
    metrics: VersionMetrics


class ServingState:
    """What the endpoints share: the served model and its batcher, the log, the metrics.

    ``served`` may change at any time (:meth:`swap`): an endpoint reads it once per request.
    ``deployment`` and ``arm`` name the rollout this state serves in (the prediction log
    records them); arms of one deployment may share one ``predlog``, which the state then
    does not close (its owner does).
    """

    def __init__(self, served: ServedModel, config: ServingConfig, home: Path, *,
                 deployment: str | None = None, arm: str | None = None,
                 predlog: PredictionLog | None = None) -> None:
        self.config = config
        self.home = Path(home)
        self.deployment = deployment
        self.arm = arm
        self.metrics = ServingMetrics(served.name)
        self._owns_predlog = predlog is None
        if predlog is None and config.log_predictions:
            predlog = PredictionLog(self.home, served.name,
                                    flush_interval=config.predlog_flush_interval,
                                    flush_rows=config.predlog_flush_rows)
        self.predlog = predlog
        self._slot = self._open(served)
        self._swapping: asyncio.Lock | None = None
        self.swaps = 0
        self.ready = True

    @property
    def served(self) -> ServedModel:
        """The version serving new requests now."""
        return self._slot.served

    def _open(self, served: ServedModel) -> _Slot:
        metrics = self.metrics.version(served.version_label)
        # The prediction log entry is built after the batch is answered (same thread, in
        # order): the callers do not wait for it; close() waits for the thread.
        deferred: collections.deque[tuple[Any, ...]] = collections.deque()

        def listener(model_input: Any, group: Sequence[PredictionRequest],
                     results: Sequence[PredictionResult]) -> None:
            deferred.append((model_input, group, results, time.perf_counter()))

        def log_deferred() -> None:
            while deferred:
                self._log_batch(served, *deferred.popleft())

        handler = functools.partial(served.predict_requests,
                                    listener=listener if self.predlog else None)
        batcher: MicroBatcher[PredictionRequest, PredictionResult] = MicroBatcher(
            handler, max_batch_size=self.config.max_batch_size,
            max_wait_ms=self.config.max_wait_ms, max_queue=self.config.max_queue,
            on_batch=metrics.observe_batch,
            after_answer=log_deferred if self.predlog else None)
        metrics.track_queue(lambda: batcher.queue_depth)
        return _Slot(served, batcher, metrics)

    async def predict(self, data: Any, rows: int, *, want_proba: bool, endpoint: str,
                      request_id: str, started: float, explain: bool = False,
                      routing_key: str | None = None) -> PredictionResult:
        if rows < 1:
            raise errors.InvalidInput("the request has no rows to predict", field="inputs")
        served = self._slot.served
        if not served.joinable(data):
            # Wrong columns: the signature names every problem (off the event loop).
            await run_in_threadpool(served.enforce, data)
        req = PredictionRequest(data, rows, want_proba=want_proba, endpoint=endpoint,
                                request_id=request_id, started=started, explain=explain,
                                routing_key=routing_key)
        while True:
            # Read the slot and submit without an await in between: the request is queued
            # on the batcher that is current, and a swap that starts later drains it.
            slot = self._slot
            try:
                result = await slot.batcher.submit(req, rows)
                break
            except BatcherClosed:
                if slot is self._slot:  # shutting down, not swapped: nothing to retry on
                    raise HTTPError(503, "UNAVAILABLE", "the server is shutting down; "
                                    "retry on another instance") from None
        slot.metrics.predictions.inc(rows)
        answered_by.set(slot.served.version_label)
        return result

    async def record_feedback(self, prediction_id: str, *, label: Any,
                              reward: float | None) -> bool:
        """Record ground truth and/or a reward for a prediction (the ``/feedback`` route).

        False when the log is behind (the endpoint answers 503). A coroutine so that an
        override (the rollout router crediting a bandit arm) can do its I/O off the loop.
        """
        if self.predlog is None:
            raise errors.Conflict("this server runs without a prediction log "
                                  "(--no-log-predictions), so feedback cannot be recorded")
        return self.predlog.feedback(prediction_id, label=label, reward=reward)

    async def swap(self, new: ServedModel) -> None:
        """Serve ``new`` from now on, with no request failing.

        ``new`` is warmed first (a real prediction, off the event loop), then new requests
        go to its batcher in one step; requests already queued or in flight on the old
        version are answered by it, then its batcher closes. A failed warm-up raises and
        changes nothing.
        """
        if new.name != self.served.name:
            raise errors.InvalidInput(f"a server of {self.served.name!r} cannot swap to "
                                      f"model {new.name!r}", field="model")
        if self._swapping is None:
            self._swapping = asyncio.Lock()
        async with self._swapping:  # one swap at a time, in order
            if not self.ready:
                raise errors.Conflict("the server is shutting down")
            await run_in_threadpool(warm_up, new)
            if not self.ready:  # closed while warming: nothing to switch
                return
            old = self._slot
            self._slot = self._open(new)
            self.swaps += 1
            log.info("%s: now serving version %s (was %s)", new.name, new.version_label,
                     old.served.version_label)
            await old.batcher.close(drain_timeout=60)
            if old.served.version_label != new.version_label:
                old.metrics.retire()

    def _log_batch(self, served: ServedModel, model_input: Any,
                   group: Sequence[PredictionRequest],
                   results: Sequence[PredictionResult], now: float) -> None:
        """Hand one predicted batch to the log writer (predict thread, after answering);
        ``now`` is when the batch was predicted (the logged latency ends there)."""
        assert self.predlog is not None
        import numpy as np

        try:
            rows = [r.rows for r in group]
            proba = None
            if all(r.probabilities is not None for r in results) and results:
                proba = np.concatenate([r.probabilities for r in results])
            entry = LogEntry(
                timestamp=time.time(), model_version=served.version,
                model_digest=served.digest, inputs=model_input,
                predictions=np.concatenate([r.predictions for r in results]),
                probabilities=proba,
                prediction_ids=[i for r in results for i in r.prediction_ids],
                request_ids=[r.request_id for r, n in zip(group, rows, strict=True)
                             for _ in range(n)],
                endpoints=[r.endpoint for r, n in zip(group, rows, strict=True)
                           for _ in range(n)],
                latency_ms=[(now - r.started) * 1000 for r, n in zip(group, rows, strict=True)
                            for _ in range(n)],
                deployment=self.deployment, arm=self.arm,
                explanations=_explanations(results))
            if not self.predlog.append(entry):
                self.metrics.version(served.version_label).predlog_dropped.inc(
                    len(entry.prediction_ids))
        except Exception:  # noqa: BLE001 - logging must never fail a prediction
            log.exception("could not queue predictions for the log")

    async def close(self) -> None:
        """Stop serving: drain the batcher, then flush the log when this state owns it."""
        self.ready = False
        await self._slot.batcher.close()
        if self.predlog is not None and self._owns_predlog:
            await run_in_threadpool(self.predlog.close)


def _explanations(results: Sequence[PredictionResult]) -> list[Any] | None:
    """One explanation per row for the log (None where a request did not ask), or None."""
    if all(r.explanations is None for r in results):
        return None
    return [x for r in results
            for x in (r.explanations or [None] * len(r.prediction_ids))]


def warm_up(served: ServedModel) -> None:
    """One real prediction on a row built from the model's input example or signature, so
    that lazy imports and first-call costs are paid before the model takes traffic."""
    sample = sample_input(served)
    if sample is None:
        log.warning("%r has neither an input example nor a signature: swapped in cold",
                    served)
        return
    served.predict(sample, proba=served.has_proba)


def sample_input(served: ServedModel) -> Any:
    """One input row: the first row of the stored input example, else zeros and empty
    strings by the signature's types; None when the model has neither (nothing to check)."""
    import numpy as np

    example = served.loaded.path / "input_example.json"
    if example.is_file():
        rows = orjson.loads(example.read_bytes())
        if rows and isinstance(rows[0], dict):
            return {k: [v] for k, v in rows[0].items()}
        if rows:
            return np.asarray(rows[:1])
    sig = served.signature
    if sig is None:
        return None
    if isinstance(sig.inputs, list):
        return {c.name: [c.categories[0] if c.categories else _BLANK.get(c.type, 0)]
                for c in sig.inputs}
    shape = [1 if n < 0 else n for n in sig.inputs.shape]
    return np.zeros(shape, dtype=sig.inputs.dtype)


_BLANK: dict[str, Any] = {"boolean": False, "integer": 0, "long": 0, "float": 0.0,
                          "double": 0.0, "string": "", "binary": b"",
                          "datetime": "1970-01-01T00:00:00"}


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
