"""``GET /openapi.json``: the model server described for the model it serves.

Every route is there with its request and response schemas. The ``/predict`` payloads are
typed per column from the served version's signature (a record's properties, a column's
items, an instance's positions; nullable columns also take ``null``; a categorical column
lists its levels), the V2 routes follow the Open Inference Protocol's REST schemas, and the
examples are a valid request built from the model's stored input example — so generated
clients and API fuzzers (schemathesis, in the tests) start from requests that predict.

The document is built once per served model (a swap brings a new one) and kept as bytes.
"""

from __future__ import annotations

import json
import math
import weakref
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from shipyard._version import __version__

from . import _v2
from ._model import ServedModel
from ._state import JSON, ServingState

__all__ = ["openapi_document", "openapi_endpoint"]

_REF = "#/components/schemas/"
_INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
_INT64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
_COLUMN_SCHEMA: dict[str, dict[str, Any]] = {
    "boolean": {"type": "boolean"}, "integer": _INT32, "long": _INT64,
    "float": {"type": "number"}, "double": {"type": "number"}, "string": {"type": "string"},
    "datetime": {"type": "string", "format": "date-time"},
    "binary": {"type": "string"}, "category": {"type": "string"},
}
#: feature store value types (join keys, on-demand request fields) → JSON Schema
_VALUE_SCHEMA: dict[str, dict[str, Any]] = {
    "int32": _INT32, "int64": _INT64, "float32": {"type": "number"},
    "float64": {"type": "number"}, "bool": {"type": "boolean"}, "string": {"type": "string"},
}
_SAMPLE = {"boolean": False, "integer": 0, "long": 0, "float": 0.0, "double": 0.0,
           "string": "a", "datetime": "2024-01-01T00:00:00Z", "binary": "a",
           "category": "a"}
_CACHE: weakref.WeakKeyDictionary[ServedModel, bytes] = weakref.WeakKeyDictionary()


async def openapi_endpoint(state: ServingState, request: Request, started: float) -> Response:
    served = state.served  # read once: a swap may replace it
    body = _CACHE.get(served)
    if body is None:
        body = _CACHE[served] = orjson.dumps(openapi_document(served))
    return Response(body, media_type=JSON)


def openapi_document(served: ServedModel) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a server that serves ``served``."""
    record = _record_schema(served)
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Shipyard model server: {served.name}",
                 "version": __version__,
                 "description": f"Serves {served.name} version {served.version_label} "
                                f"({served.flavor}, digest {served.digest[:12]}). Request "
                                "schemas follow the model's signature; V2 routes follow the "
                                "Open Inference Protocol (KServe V2) over REST."},
        "paths": _paths(served),
        "components": {"schemas": {
            "Record": record,
            "PredictRequest": _predict_request(served),
            "PredictResponse": _predict_response(served),
            "FeedbackRequest": _FEEDBACK_REQUEST,
            "Error": _ERROR,
            "V2Error": {"type": "object", "required": ["error"],
                        "properties": {"error": {"type": "string"}}},
            **_v2_schemas(served),
        }},
    }


# -- signature → schemas ---------------------------------------------------------------------


def _column_schema(spec: Any) -> dict[str, Any]:
    schema = dict(_COLUMN_SCHEMA[spec.type])
    if spec.type == "category" and spec.categories:
        schema = {"enum": list(spec.categories)}
    if spec.nullable:
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def _columns(served: ServedModel) -> dict[str, dict[str, Any]] | None:
    """Each input column's JSON Schema, in signature order (None: no columnar signature)."""
    sig = served.signature
    if sig is None or not isinstance(sig.inputs, list):
        return None
    return {c.name: _column_schema(c) for c in sig.inputs}


def _record_schema(served: ServedModel) -> dict[str, Any]:
    columns = _columns(served)
    if columns is None:
        return {"type": "object", "description": "one row: column name → value"}
    sig = served.signature
    assert sig is not None
    full = {"type": "object", "properties": columns, "required": list(columns),
            "additionalProperties": sig.extra_columns == "drop"}
    lookup = served.features
    if lookup is None:
        return full
    keyed = {k: dict(_VALUE_SCHEMA.get(t, {})) for k, t in lookup.key_types.items()}
    for name in lookup.request_columns:
        keyed[name] = columns.get(name) or dict(
            _VALUE_SCHEMA.get(lookup.request_types.get(name, ""), {}))
    by_key = {"type": "object", "properties": keyed, "required": list(keyed),
              "description": f"the join keys of feature service {lookup.service!r} and the "
                             "inputs it does not provide; the online store adds the rest"}
    return {"anyOf": [by_key, full]}


def _predict_request(served: ServedModel) -> dict[str, Any]:
    columns = _columns(served)
    if columns is None:
        column_lists: dict[str, Any] = {"type": "object",
                                        "additionalProperties": {"type": "array"}}
        instance: dict[str, Any] = {"type": "array"}
    else:
        column_lists = {"type": "object", "required": list(columns),
                        "properties": {n: {"type": "array", "items": s, "minItems": 1}
                                       for n, s in columns.items()}}
        instance = {"type": "array", "prefixItems": list(columns.values()),
                    "minItems": len(columns), "maxItems": len(columns)}
    schema: dict[str, Any] = {
        "type": "object",
        "description": "exactly one of records, columns or instances",
        "properties": {
            "records": {"type": "array", "minItems": 1, "items": {"$ref": f"{_REF}Record"}},
            "columns": column_lists,
            "instances": {"type": "array", "minItems": 1, "items": instance,
                          "description": "rows of values in the signature's column order"},
            "probabilities": {"type": "boolean", "default": True,
                              "description": "compute predict_proba (classifiers)"},
            "explain": {"type": ["boolean", "null"], "default": False,
                        "description": "SHAP values and reason codes per row"},
            "routing_key": {"type": ["string", "number", "null"],
                            "description": "sticky key for canary and A/B assignment"},
        },
        "oneOf": [{"required": ["records"]}, {"required": ["columns"]},
                  {"required": ["instances"]}],
    }
    example = _example_record(served)
    if example is not None:
        schema["examples"] = [{"records": [example]}]
    return schema


def _predict_response(served: ServedModel) -> dict[str, Any]:
    classes = served.classes
    proba: dict[str, Any] = {"type": "array", "items": {"type": "number"}}
    if classes:
        proba.update(minItems=len(classes), maxItems=len(classes))
    return {
        "type": "object",
        "required": ["predictions", "model_name", "model_version", "prediction_ids"],
        "properties": {
            "predictions": {"type": "array", "description": "one per row"},
            "model_name": {"type": "string"},
            "model_version": {"type": ["integer", "null"],
                              "description": "the version that answered"},
            "prediction_ids": {"type": "array", "items": {"type": "string",
                                                          "pattern": "^[0-9a-f]{32}$"}},
            "probabilities": {"type": "array", "items": proba,
                              "description": "per row, in the order of classes"},
            "classes": {"type": ["array", "null"]},
            "explanations": {"type": "array"},
        },
    }


def _example_record(served: ServedModel) -> dict[str, Any] | None:
    """The first row of the stored input example when it fits the signature, else values
    of the right types; None for models without a columnar signature."""
    sig = served.signature
    if sig is None or not isinstance(sig.inputs, list):
        return None
    if served.features is not None:
        return None  # a valid request needs keys that the online store holds
    stored = _stored_example(served)
    row = stored[0] if isinstance(stored, list) and stored and isinstance(
        stored[0], dict) else {}
    record: dict[str, Any] = {}
    for spec in sig.inputs:
        value = row.get(spec.name)
        usable = value is not None and not (isinstance(value, float) and not math.isfinite(
            value)) and (spec.type != "category" or not spec.categories
                         or value in spec.categories)
        if not usable:
            value = spec.categories[0] if spec.categories else _SAMPLE[spec.type]
        record[spec.name] = value
    return record


def _stored_example(served: ServedModel) -> Any:
    path = served.loaded.path / "input_example.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


# -- the Open Inference Protocol -------------------------------------------------------------


def _v2_schemas(served: ServedModel) -> dict[str, Any]:
    datatypes = list(_v2.DATATYPES)
    tensor_meta = {"type": "object", "required": ["name", "datatype", "shape"],
                   "properties": {"name": {"type": "string"},
                                  "datatype": {"type": "string", "enum": datatypes},
                                  "shape": {"type": "array", "items": {"type": "integer"}}}}
    shape = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}
    data = {"type": "array", "description": "the values, flat in row-major order or nested"}
    parameters = {"type": "object"}
    inputs = _v2.model_metadata(served)["inputs"]
    request: dict[str, Any] = {
        "type": "object", "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object", "properties": {
                "explain": {"type": ["boolean", "null"]},
                "routing_key": {"type": ["string", "number", "null"]},
                "binary_data_output": {"type": "boolean"}}},
            "inputs": {"type": "array", "minItems": 1, "items": {"$ref": f"{_REF}V2Input"},
                       "description": "one tensor per input column ("
                       + ", ".join(f"{i['name']}: {i['datatype']}" for i in inputs)
                       + ") or one [n, k] tensor with the columns in that order"},
            "outputs": {"type": "array", "items": {
                "type": "object", "required": ["name"],
                "properties": {"name": {"type": "string", "enum": list(_v2.OUTPUTS)},
                               "parameters": parameters}}},
        },
    }
    example = _v2_example(inputs, _example_record(served))
    if example is not None:
        request["examples"] = [example]
    return {
        "V2ServerMetadata": {"type": "object", "required": ["name", "version", "extensions"],
                             "properties": {"name": {"type": "string"},
                                            "version": {"type": "string"},
                                            "extensions": {"type": "array",
                                                           "items": {"type": "string"}}}},
        "V2ModelMetadata": {"type": "object",
                            "required": ["name", "platform", "inputs", "outputs"],
                            "properties": {"name": {"type": "string"},
                                           "versions": {"type": "array",
                                                        "items": {"type": "string"}},
                                           "platform": {"type": "string"},
                                           "inputs": {"type": "array", "items": tensor_meta},
                                           "outputs": {"type": "array",
                                                       "items": tensor_meta}}},
        "V2Input": {"type": "object", "required": ["name", "shape", "datatype", "data"],
                    "properties": {"name": {"type": "string"}, "shape": shape,
                                   "datatype": {"type": "string", "enum": datatypes},
                                   "parameters": {"type": "object", "properties": {
                                       "binary_data_size": {"type": "integer",
                                                            "minimum": 0}}},
                                   "data": data}},
        "V2InferenceRequest": request,
        "V2InferenceResponse": {
            "type": "object", "required": ["model_name", "outputs"],
            "properties": {
                "model_name": {"type": "string"}, "model_version": {"type": "string"},
                "id": {"type": "string"}, "parameters": parameters,
                "outputs": {"type": "array", "items": {
                    "type": "object", "required": ["name", "shape", "datatype"],
                    "properties": {"name": {"type": "string"}, "shape": {
                        "type": "array", "items": {"type": "integer"}},
                        "datatype": {"type": "string", "enum": datatypes},
                        "parameters": parameters, "data": data}}}}},
    }


def _v2_example(inputs: list[dict[str, Any]],
                record: dict[str, Any] | None) -> dict[str, Any] | None:
    if record is None or any(i["name"] not in record for i in inputs):
        return None
    return {"inputs": [{"name": i["name"], "shape": [1], "datatype": i["datatype"],
                        "data": [record[i["name"]]]} for i in inputs]}


# -- routes ----------------------------------------------------------------------------------

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                   "field": {"type": "string", "description": "the request field at fault"}}}}}
_FEEDBACK_REQUEST = {
    "type": "object", "required": ["prediction_id"],
    "properties": {"prediction_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                   "label": {"type": ["number", "string", "boolean", "null"],
                             "description": "the true outcome"},
                   "reward": {"type": ["number", "null"]}},
    "anyOf": [{"required": ["label"]}, {"required": ["reward"]}],
}
_MESSAGES = {400: "bad input (the message names the field)", 404: "not served here",
             409: "conflict", 413: "request body too large",
             429: "overloaded: retry after a second", 503: "not ready, or behind"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"{_REF}{name}"}


def _errors(*codes: int, v2: bool = False) -> dict[str, Any]:
    schema = _ref("V2Error" if v2 else "Error")
    return {str(c): _json(schema, _MESSAGES[c]) for c in codes}


def _get(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": responses, **extra}}


def _post(summary: str, body: str, responses: dict[str, Any],
          **extra: Any) -> dict[str, Any]:
    return {"post": {"summary": summary, "responses": responses, **extra,
                     "requestBody": {"required": True,
                                     "content": {JSON: {"schema": _ref(body)}}}}}


def _paths(served: ServedModel) -> dict[str, Any]:
    def param(name: str, value: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True,
                "schema": {"type": "string", "enum": [value]}}

    model_params = [param("name", served.name)]
    version_params = [*model_params, param("version", served.version_label)]
    ready = {"type": "object", "properties": {"name": {"type": "string"},
                                              "ready": {"type": "boolean"}}}
    infer_ok = _json(_ref("V2InferenceResponse"))
    infer_ok["content"]["application/octet-stream"] = {
        "schema": {"type": "string", "format": "binary",
                   "description": "binary tensor data: the JSON header "
                                  "(Inference-Header-Content-Length bytes), then the data"}}
    paths: dict[str, Any] = {
        "/v2": _get("Server metadata", {"200": _json(_ref("V2ServerMetadata"))}),
        "/v2/health/live": _get("Liveness", {"200": _json(
            {"type": "object", "properties": {"live": {"type": "boolean"}}})}),
        "/v2/health/ready": _get("Readiness", {
            "200": _json(ready), "503": _json(ready, "shutting down")}),
    }
    for prefix, params in (("/v2/models/{name}", model_params),
                           ("/v2/models/{name}/versions/{version}", version_params)):
        paths[prefix] = _get("Model metadata", {"200": _json(_ref("V2ModelMetadata")),
                                                **_errors(404, v2=True)},
                             parameters=params)
        paths[f"{prefix}/ready"] = _get("Model readiness", {
            "200": _json(ready), **_errors(404, v2=True),
            "503": _json(ready, "shutting down")}, parameters=params)
        paths[f"{prefix}/infer"] = _post(
            "Inference (Open Inference Protocol)", "V2InferenceRequest",
            {"200": infer_ok, **_errors(400, 404, 409, 413, 429, 503, v2=True)},
            parameters=params)
    paths["/predict"] = _post(
        "Predict records, columns or instances", "PredictRequest",
        {"200": _json(_ref("PredictResponse")), **_errors(400, 409, 413, 429, 503)},
        parameters=[{"name": "explain", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": ["true", "false", "1", "0"]}}])
    paths["/feedback"] = _post(
        "Ground truth or a reward for a prediction id", "FeedbackRequest",
        {"200": _json({"type": "object", "required": ["status", "prediction_id"],
                       "properties": {"status": {"const": "recorded"},
                                      "prediction_id": {"type": "string"}}}),
         **_errors(400, 409, 413, 503)})
    paths["/health"] = _get("Liveness", {"200": _json(
        {"type": "object", "required": ["status"],
         "properties": {"status": {"const": "ok"}, "version": {"type": "string"},
                        "pid": {"type": "integer"}}})})
    served_state = {"type": "object", "required": ["status"],
                    "properties": {"status": {"enum": ["ready", "unavailable"]},
                                   "model": {"type": "string"},
                                   "version": {"type": ["integer", "null"]},
                                   "digest": {"type": "string"}}}
    paths["/ready"] = _get("Readiness and the version served", {
        "200": _json(served_state), "503": _json(served_state, "not ready")})
    paths["/metrics"] = _get("Prometheus metrics", {"200": {
        "description": "Prometheus text format",
        "content": {"text/plain": {"schema": {"type": "string"}}}}})
    paths["/openapi.json"] = _get("This document", {"200": _json({"type": "object"})})
    return paths
