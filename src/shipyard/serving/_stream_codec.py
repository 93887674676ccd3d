"""Messages to model input and predictions to messages, for the streaming loop.

:func:`score_batch` runs in a worker thread. Each message is decoded on its own (so a
malformed one becomes a dead letter naming its problem, and the rest go on); the decoded
messages are predicted together through :meth:`ServedModel.predict_requests`, which
enforces the signature once for the batch and, when the joined batch fails, retries message
by message so only the bad one is rejected.

A message is one JSON object with the model's input fields, or ``{"records": [...]}`` with
several; its output carries ``prediction`` (or ``predictions``) accordingly.

With ``log=True`` the predicted groups also become prediction-log entries (the server's
:class:`~._predlog.LogEntry`: endpoint ``stream``, the message id as ``request_id``), which
the loop appends once the outputs are written.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from shipyard import errors

from ._model import PredictionRequest, PredictionResult, ServedModel
from ._predlog import LogEntry
from ._stream import OutputRecord, SourceMessage

__all__ = ["score_batch", "ScoredBatch", "log_entry"]


@dataclass(frozen=True)
class ScoredBatch:
    outputs: list[OutputRecord]
    dead: list[OutputRecord]
    records: int
    #: the predictions for the prediction log (``score_batch(log=True)``), one per group
    entries: list[LogEntry] = field(default_factory=list)


def score_batch(model: ServedModel, messages: Sequence[SourceMessage],
                source: str, *, log: bool = False) -> ScoredBatch:
    """The output (or dead letter) of every message in ``messages``, in order; with
    ``log``, the prediction-log entries of the messages predicted too."""
    when = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    dead: list[tuple[int, OutputRecord]] = []  # (position in the batch, dead letter)
    requests: list[PredictionRequest] = []
    decoded: list[tuple[int, SourceMessage, bool]] = []
    for position, message in enumerate(messages):
        try:
            data, rows, many = decode_message(message, model)
        except errors.InvalidInput as exc:
            dead.append((position, _dead_letter(message, source, exc.message, model, when)))
            continue
        requests.append(PredictionRequest(data, rows, want_proba=True, endpoint="stream",
                                          request_id=message.id))
        decoded.append((position, message, many))
    entries: list[LogEntry] = []

    def to_log(model_input: Any, group: Sequence[PredictionRequest],
               done: Sequence[PredictionResult]) -> None:
        entries.append(log_entry(model, model_input, group, done))

    results = model.predict_requests(requests, to_log if log else None) if requests else []
    _stop_when_the_model_is_broken(results)
    outputs: list[OutputRecord] = []
    records = 0
    classes = model.classes if model.has_proba else None
    for (position, message, many), result in zip(decoded, results, strict=True):
        if isinstance(result, BaseException):
            text = getattr(result, "message", None) or f"{type(result).__name__}: {result}"
            dead.append((position, _dead_letter(message, source, text, model, when)))
            continue
        records += len(result.prediction_ids)
        body = _output(message, source, model, result, many, when, classes)
        outputs.append(OutputRecord(message.id, source, body, message.redelivered,
                                    message.time_ms))
    return ScoredBatch(outputs, [letter for _, letter in sorted(dead, key=lambda d: d[0])],
                       records, entries)


def log_entry(model: ServedModel, model_input: Any, group: Sequence[PredictionRequest],
              results: Sequence[PredictionResult]) -> LogEntry:
    """One predicted group as the prediction log takes it (as ``shipyard serve`` logs a
    micro-batch): one row per predicted row, ``request_id`` the source message's id."""
    import numpy as np

    now = time.perf_counter()
    rows = [r.rows for r in group]
    proba = None
    if results and all(r.probabilities is not None for r in results):
        proba = np.concatenate([r.probabilities for r in results])
    return LogEntry(
        timestamp=time.time(), model_version=model.version, model_digest=model.digest,
        inputs=model_input, predictions=np.concatenate([r.predictions for r in results]),
        probabilities=proba, prediction_ids=[i for r in results for i in r.prediction_ids],
        request_ids=[r.request_id for r, n in zip(group, rows, strict=True) for _ in range(n)],
        endpoints=["stream"] * sum(rows),
        latency_ms=[(now - r.started) * 1000 for r, n in zip(group, rows, strict=True)
                    for _ in range(n)])


def decode_message(message: SourceMessage, model: ServedModel) -> tuple[dict[str, list[Any]],
                                                                        int, bool]:
    """(columns, rows, whether it was a ``records`` batch); InvalidInput saying what is wrong."""
    if message.payload is None:
        raise errors.InvalidInput(message.problem or "the message has no payload")
    try:
        body = orjson.loads(message.payload)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidInput(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise errors.InvalidInput(f"expected a JSON object with the model's input fields "
                                  f"(or {{\"records\": [...]}}), got {type(body).__name__}")
    columns = model.columns
    many = "records" in body and (columns is None or "records" not in columns)
    records = body["records"] if many else [body]
    if many and (not isinstance(records, list) or not records
                 or not all(isinstance(r, dict) for r in records)):
        raise errors.InvalidInput("'records' must be a non-empty list of objects")
    if columns is None:
        names = list(dict.fromkeys(k for record in records for k in record))
    else:
        names = columns
        _check_fields(records, columns, model, many)
    return {n: [r.get(n) for r in records] for n in names}, len(records), many


def _check_fields(records: list[dict[str, Any]], columns: list[str], model: ServedModel,
                  many: bool) -> None:
    strict = model.signature is not None and model.signature.extra_columns == "error"
    for i, record in enumerate(records):
        where = f"record {i}: " if many else ""
        missing = [c for c in columns if c not in record]
        if missing:
            raise errors.InvalidInput(f"{where}missing field(s) {', '.join(missing)} (the "
                                      f"model takes {', '.join(columns)})")
        extra = [k for k in record if k not in columns] if strict else []
        if extra:
            raise errors.InvalidInput(f"{where}unexpected field(s) {', '.join(extra)} (the "
                                      f"model takes {', '.join(columns)})")


def _stop_when_the_model_is_broken(results: Sequence[PredictionResult | BaseException]) -> None:
    """A batch where every message failed with something other than bad input means the
    model (or its environment) is broken: stop without acking rather than dead-letter the
    whole stream. Bad input (InvalidInput) and failures of some messages only go to the DLQ."""
    failures = [r for r in results
                if isinstance(r, BaseException) and not isinstance(r, errors.ShipyardError)]
    if failures and len(failures) == len(results):
        first = failures[0]
        raise errors.ShipyardError(f"the model failed on every message of a batch "
                                   f"({type(first).__name__}: {first}); stopping without "
                                   "acking them") from first


def _output(message: SourceMessage, source: str, model: ServedModel,
            result: PredictionResult, many: bool, when: str, classes: Any) -> bytes:
    predictions = result.predictions.tolist()
    body: dict[str, Any] = {"key": message.id, "source": source}
    if many:
        body["predictions"] = predictions
        body["prediction_ids"] = result.prediction_ids
    else:
        body["prediction"] = predictions[0]
        body["prediction_id"] = result.prediction_ids[0]
    if result.probabilities is not None:
        probabilities = result.probabilities.tolist()
        body["probabilities"] = probabilities if many else probabilities[0]
        body["classes"] = classes
    body.update(model_name=model.name, model_version=model.version,
                model_digest=model.digest, timestamp=when)
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _dead_letter(message: SourceMessage, source: str, error: str, model: ServedModel,
                 when: str) -> OutputRecord:
    body: dict[str, Any] = {"key": message.id, "source": source, "error": error}
    if message.payload is not None:
        try:
            body["payload"] = message.payload.decode()
        except UnicodeDecodeError:
            body["payload_base64"] = base64.b64encode(message.payload).decode()
    body.update(model_name=model.name, model_version=model.version, timestamp=when)
    return OutputRecord(message.id, source, orjson.dumps(body), message.redelivered,
                        message.time_ms)
