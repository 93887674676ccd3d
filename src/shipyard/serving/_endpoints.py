"""The endpoints of the model server: Open Inference Protocol (V2), /predict, /feedback,
health and metrics. Each is ``async def name(state, request, started) -> Response``;
:func:`~._app.create_app` wraps it with metrics and JSON errors.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from shipyard import errors
from shipyard._version import __version__

from . import _v2
from ._model import ServedModel, new_prediction_ids
from ._state import (
    JSON,
    HTTPError,
    ServingState,
    json_object,
    json_response,
    plain_array,
    read_body,
)

__all__ = ["v2_server", "v2_live", "v2_ready", "v2_model", "v2_model_ready", "v2_infer",
           "predict", "feedback", "health", "ready", "metrics"]


# -- V2 endpoints ----------------------------------------------------------------------------


def _check_model(state: ServingState, request: Request) -> ServedModel:
    """The served model (read once: it may be swapped) if the path names it; else 404."""
    name = request.path_params["name"]
    version = request.path_params.get("version")
    served = state.served
    if name != served.name:
        raise errors.NotFound(f"model {name!r} is not served here; this server serves "
                              f"{served.name!r}")
    if version is not None and version != served.version_label:
        raise errors.NotFound(f"version {version!r} of {name!r} is not served here; this "
                              f"server serves version {served.version_label}")
    return served


async def v2_server(state: ServingState, request: Request, started: float) -> Response:
    return json_response({"name": "shipyard", "version": __version__, "extensions": [
        "binary_tensor_data"]})


async def v2_live(state: ServingState, request: Request, started: float) -> Response:
    return json_response({"live": True})


async def v2_ready(state: ServingState, request: Request, started: float) -> Response:
    return json_response({"ready": state.ready}, 200 if state.ready else 503)


async def v2_model(state: ServingState, request: Request, started: float) -> Response:
    return json_response(_v2.model_metadata(_check_model(state, request)))


async def v2_model_ready(state: ServingState, request: Request, started: float) -> Response:
    served = _check_model(state, request)
    return json_response({"name": served.name, "ready": state.ready},
                         200 if state.ready else 503)


async def v2_infer(state: ServingState, request: Request, started: float) -> Response:
    served = _check_model(state, request)
    body = await read_body(request, state.config.max_body_bytes)
    payload, binary = _v2.split_body(body, request.headers.get(_v2.HEADER_LENGTH))
    data, rows, outputs = _v2.decode_infer_request(payload, binary, served)
    request_id = payload.get("id")
    request_id = str(request_id) if request_id not in (None, "") else new_prediction_ids(1)[0]
    params = payload.get("parameters")
    explain, routing_key = False, None
    if params is not None:
        if not isinstance(params, dict):
            raise _v2.V2Error("'parameters' must be an object")
        explain = _flag(params.get("explain"), "parameters.explain")
        routing_key = _routing_key(params.get("routing_key"), "parameters.routing_key")
    routing_key = request.headers.get(ROUTING_HEADER) or routing_key
    if explain:
        await _ready_to_explain(served)
    result = await state.predict(data, rows, want_proba="predict_proba" in outputs,
                                 endpoint="v2", request_id=request_id, started=started,
                                 explain=explain, routing_key=routing_key)
    content, headers = _v2.encode_infer_response(served, request_id, result, outputs)
    media = "application/octet-stream" if headers else JSON
    return Response(content, headers=headers, media_type=media)


# -- request options shared by /predict and V2 -------------------------------------------------

#: The header that carries the sticky routing key (canary / A-B assignment).
ROUTING_HEADER = "x-shipyard-routing-key"


def _flag(value: Any, field: str, *, text: bool = False) -> bool:
    """A boolean option: JSON true/false, or (``text``, a query string) true/false/1/0."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if text and isinstance(value, str) and value.lower() in ("true", "1", "false", "0", ""):
        return value.lower() in ("true", "1")
    raise errors.InvalidInput(f"'{field}' must be true or false", field=field)


def _routing_key(value: Any, field: str) -> str | None:
    """The routing key as text (a number is fine: customer ids often are)."""
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise errors.InvalidInput(f"'{field}' must be a string or a number", field=field)


async def _ready_to_explain(served: ServedModel) -> None:
    """Build the model's explainer off the event loop on first use (a 400 when the model
    cannot be explained online), so the predict thread never waits for it."""
    if not served.explainer_ready:
        await run_in_threadpool(served.explainer)
    else:
        served.explainer()  # cached: raises the remembered refusal, if any


# -- simple endpoints ------------------------------------------------------------------------


def _columns_from(payload: dict[str, Any], served: ServedModel) -> tuple[Any, int]:
    given = [k for k in ("records", "columns", "instances") if k in payload]
    if len(given) != 1:
        raise errors.InvalidInput("send exactly one of 'records' (a list of objects), "
                                  "'columns' (an object of lists) or 'instances' (a list "
                                  "of rows)", field="records")
    kind = given[0]
    value = payload[kind]
    if kind == "records":
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise errors.InvalidInput("'records' must be a list of objects", field="records")
        if len(value) == 1:
            return {k: [v] for k, v in value[0].items()}, 1
        names = dict.fromkeys(k for rec in value for k in rec)
        return {n: [rec.get(n) for rec in value] for n in names}, len(value)
    if kind == "columns":
        if not isinstance(value, dict) or not all(isinstance(v, list) for v in value.values()):
            raise errors.InvalidInput("'columns' must be an object of lists", field="columns")
        lengths = {len(v) for v in value.values()}
        if len(lengths) > 1:
            raise errors.InvalidInput(f"'columns' have different lengths: {sorted(lengths)}",
                                      field="columns")
        return value, lengths.pop() if lengths else 0
    return _instances(value, served)


def _instances(value: Any, served: ServedModel) -> tuple[Any, int]:
    import numpy as np

    if not isinstance(value, list) or not all(isinstance(r, list) for r in value):
        raise errors.InvalidInput("'instances' must be a list of rows (lists)",
                                  field="instances")
    columns = served.columns
    if columns is None:
        try:
            return np.asarray(value), len(value)
        except ValueError:
            raise errors.InvalidInput("'instances' rows differ in length",
                                      field="instances") from None
    bad = [i for i, r in enumerate(value) if len(r) != len(columns)]
    if bad:
        raise errors.InvalidInput(f"'instances' rows {bad[:5]} do not have the model's "
                                  f"{len(columns)} columns ({', '.join(columns)})",
                                  field="instances")
    return {c: [r[j] for r in value] for j, c in enumerate(columns)}, len(value)


async def predict(state: ServingState, request: Request, started: float) -> Response:
    served = state.served
    payload = json_object(await read_body(request, state.config.max_body_bytes))
    data, rows = _columns_from(payload, served)
    want_proba = payload.get("probabilities", True)
    if not isinstance(want_proba, bool):
        raise errors.InvalidInput("'probabilities' must be true or false",
                                  field="probabilities")
    explain = _flag(payload.get("explain"), "explain") or bool(
        request.scope["query_string"] and _flag(request.query_params.get("explain"),
                                                "explain", text=True))
    routing_key = request.headers.get(ROUTING_HEADER) or _routing_key(
        payload.get("routing_key"), "routing_key")
    if explain:
        await _ready_to_explain(served)
    request_id = new_prediction_ids(1)[0]
    result = await state.predict(data, rows, want_proba=want_proba, endpoint="predict",
                                 request_id=request_id, started=started,
                                 explain=explain, routing_key=routing_key)
    body: dict[str, Any] = {"predictions": plain_array(result.predictions),
                            "model_name": served.name, "model_version": result.model_version,
                            "prediction_ids": result.prediction_ids}
    if result.probabilities is not None:
        body["probabilities"] = result.probabilities
        body["classes"] = served.classes
    if result.explanations is not None:
        body["explanations"] = result.explanations
    return json_response(body)


async def feedback(state: ServingState, request: Request, started: float) -> Response:
    payload = json_object(await read_body(request, state.config.max_body_bytes))
    pid = payload.get("prediction_id")
    if not isinstance(pid, str) or len(pid) != 32 or not all(c in "0123456789abcdef"
                                                              for c in pid):
        raise errors.InvalidInput("'prediction_id' must be the 32 hex digits a prediction "
                                  "response returned", field="prediction_id")
    if "label" not in payload and "reward" not in payload:
        raise errors.InvalidInput("send a 'label' (the true outcome) and/or a 'reward' "
                                  "(a number)", field="label")
    label = payload.get("label")
    if isinstance(label, dict | list):
        raise errors.InvalidInput("'label' must be a number, string or boolean",
                                  field="label")
    reward = payload.get("reward")
    if reward is not None and (isinstance(reward, bool) or not isinstance(reward, int | float)):
        raise errors.InvalidInput("'reward' must be a number", field="reward")
    if not await state.record_feedback(pid, label=label,
                                       reward=None if reward is None else float(reward)):
        raise HTTPError(503, "UNAVAILABLE", "the feedback log is behind; retry later")
    return json_response({"status": "recorded", "prediction_id": pid})


async def health(state: ServingState, request: Request, started: float) -> Response:
    # pid: which worker answered (--workers N shares one socket between processes)
    return json_response({"status": "ok", "version": __version__, "pid": os.getpid()})


async def ready(state: ServingState, request: Request, started: float) -> Response:
    served = state.served
    body = {"status": "ready" if state.ready else "unavailable", "model": served.name,
            "version": served.version, "digest": served.digest}
    return json_response(body, 200 if state.ready else 503)


async def metrics(state: ServingState, request: Request, started: float) -> Response:
    content, content_type = state.metrics.render()
    return Response(content, media_type=content_type)
