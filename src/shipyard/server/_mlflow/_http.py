"""Request arguments, MLflow's JSON error format and the wrapper every MLflow route goes through.

MLflow's client sends GET arguments as a query string (repeated keys for lists) and all other
arguments as a JSON body (DELETE included); numbers may arrive as strings, non-finite doubles
as the strings ``NaN``/``Infinity``. Errors go back as ``{"error_code", "message"}`` so the
client raises ``MlflowException`` with that code; a status the client would retry (500, 503)
is used only for real server faults.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from shipyard import errors

__all__ = ["Args", "Ctx", "MlflowError", "Handler", "endpoint", "error_response", "num",
           "json_response", "services", "is_mlflow_path", "MAX_JSON_BYTES"]

log = logging.getLogger("shipyard.server.mlflow")
MAX_JSON_BYTES = 16 * 2**20

_STATUS = {
    "RESOURCE_DOES_NOT_EXIST": 404, "ENDPOINT_NOT_FOUND": 404,
    "RESOURCE_ALREADY_EXISTS": 400, "INVALID_PARAMETER_VALUE": 400, "BAD_REQUEST": 400,
    "PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401, "INVALID_STATE": 409, "NOT_IMPLEMENTED": 501,
    "DATA_LOSS": 500, "INTERNAL_ERROR": 500,
}


class MlflowError(Exception):
    """An error with one of MLflow's error codes (for cases Shipyard's classes do not name)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def is_mlflow_path(path: str) -> bool:
    """Whether ``path`` is one of MLflow's routes (whose errors must use MLflow's format)."""
    return path.startswith(("/api/2.0/mlflow", "/ajax-api/2.0/mlflow", "/api/3.0/mlflow"))


def not_implemented(what: str) -> MlflowError:
    return MlflowError("NOT_IMPLEMENTED", f"{what} is not supported by Shipyard's "
                                          "MLflow-compatible API (see docs/mlflow-compat.md)")


def _mlflow_code(exc: errors.ShipyardError) -> str:
    if isinstance(exc, errors.NotFound):
        return "RESOURCE_DOES_NOT_EXIST"
    if isinstance(exc, errors.AlreadyExists):
        return "RESOURCE_ALREADY_EXISTS"
    if isinstance(exc, errors.InvalidInput):
        return "INVALID_PARAMETER_VALUE"
    if isinstance(exc, errors.PermissionDenied):
        return "PERMISSION_DENIED"
    if isinstance(exc, errors.Conflict):
        # MLflow reports a changed param value as a bad parameter, not a state error.
        return "INVALID_PARAMETER_VALUE" if exc.field == "param" else "INVALID_STATE"
    if isinstance(exc, errors.IntegrityError):
        return "DATA_LOSS"
    if isinstance(exc, errors.MissingDependency):
        return "NOT_IMPLEMENTED"
    return "INTERNAL_ERROR"


def num(value: float) -> float | str:
    """A double as MLflow's JSON writes it: non-finite values are strings."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, allow_nan=False, separators=(",", ":")), status_code=status,
                    media_type="application/json")


def error_response(code: str, message: str) -> Response:
    return json_response({"error_code": code, "message": message}, _STATUS.get(code, 400))


def response_for(exc: BaseException, request: Request) -> Response:
    """The MLflow error response for an exception raised while serving ``request``."""
    if isinstance(exc, MlflowError):
        return error_response(exc.code, exc.message)
    if isinstance(exc, errors.ShipyardError):
        return error_response(_mlflow_code(exc), exc.message)
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response("INTERNAL_ERROR", f"{type(exc).__name__}: {str(exc)[:300]}")


class Args:
    """The arguments of one request, with MLflow's lenient typing (strings for numbers)."""

    def __init__(self, data: dict[str, Any], lists: dict[str, list[Any]] | None = None) -> None:
        self.data = data
        self.lists = lists or {}

    @staticmethod
    def _missing(name: str) -> errors.InvalidInput:
        return errors.InvalidInput(f"Missing value for required parameter '{name}'", field=name)

    def has(self, name: str) -> bool:
        return self.data.get(name) not in (None, "")

    def text(self, name: str, *, required: bool = False, default: str | None = None,
             ) -> str | None:
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise self._missing(name)
            return default
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise errors.InvalidInput(f"parameter '{name}' must be a string, got "
                                      f"{type(value).__name__}", field=name)
        return str(value)

    def req(self, name: str) -> str:
        value = self.text(name, required=True)
        assert value is not None
        return value

    def integer(self, name: str, *, default: int | None = None,
                required: bool = False) -> int | None:
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise self._missing(name)
            return default
        return as_int(value, name)

    def number(self, name: str, *, required: bool = False) -> float | None:
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise self._missing(name)
            return None
        return as_float(value, name)

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.data.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise errors.InvalidInput(f"parameter '{name}' must be true or false", field=name)

    def strings(self, name: str) -> list[str]:
        if name in self.lists:
            values = self.lists[name]
        else:
            raw = self.data.get(name)
            values = [] if raw is None else raw if isinstance(raw, list) else [raw]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, str | int):
                raise errors.InvalidInput(f"parameter '{name}' must be a list of strings",
                                          field=name)
        return [str(v) for v in values]

    def objects(self, name: str) -> list[dict[str, Any]]:
        raw = self.data.get(name)
        if raw is None:
            return []
        if not isinstance(raw, list) or not all(isinstance(v, dict) for v in raw):
            raise errors.InvalidInput(f"parameter '{name}' must be a list of objects",
                                      field=name)
        return raw

    def pairs(self, name: str) -> dict[str, str]:
        """A list of ``{"key", "value"}`` objects (tags, params) as a dict."""
        out: dict[str, str] = {}
        for item in self.objects(name):
            key = item.get("key")
            if not isinstance(key, str) or not key:
                raise errors.InvalidInput(f"every entry of '{name}' needs a 'key'", field=name)
            value = item.get("value")
            out[key] = "" if value is None else str(value)
        return out


def as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise errors.InvalidInput(f"parameter '{name}' must be an integer", field=name)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise errors.InvalidInput(f"parameter '{name}' must be an integer, got {value!r}",
                              field=name)


def as_float(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise errors.InvalidInput(f"parameter '{name}' must be a number", field=name)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())  # also "NaN", "Infinity", "-Infinity"
        except ValueError:
            pass
    raise errors.InvalidInput(f"parameter '{name}' must be a number, got {value!r}", field=name)


class Ctx:
    """What a handler needs: the request's services (acting as the authenticated user when
    auth is on, so the audit log names them) and the server's client (for its database)."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.client = request.app.state.client
        found = services(request)
        self.tracking: Any = found["tracking"]
        self.registry: Any = found["registry"]

    @property
    def user(self) -> str | None:
        """The authenticated user's name (auth on), who owns what the request creates."""
        user = getattr(self.request.state, "user", None)
        return None if user is None else str(user.name)


def services(request: Request) -> dict[str, Any]:
    """The request's services (imported late: the auth module may import this package)."""
    from .._auth import request_services

    return request_services(request)


Handler = Callable[[Ctx, Args], Any]


async def read_args(request: Request) -> Args:
    data: dict[str, Any] = {}
    lists: dict[str, list[Any]] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        data[key] = values[-1]
        lists[key] = values
    if request.method != "GET":
        size = int(request.headers.get("content-length") or 0)
        raw = await request.body() if size <= MAX_JSON_BYTES else b""
        if size > MAX_JSON_BYTES or len(raw) > MAX_JSON_BYTES:
            raise errors.InvalidInput(f"request body is over the {MAX_JSON_BYTES} byte limit",
                                      field="body")
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise errors.InvalidInput(f"request body is not valid JSON: {exc}",
                                          field="body") from None
            if not isinstance(body, dict):
                raise errors.InvalidInput("request body must be a JSON object", field="body")
            data.update(body)
            for key in body:
                lists.pop(key, None)
    data.update(request.path_params)
    return Args(data, lists)


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """An ASGI endpoint: parse the arguments, run ``handler`` in a thread, answer MLflow JSON."""

    async def run(request: Request) -> Response:
        try:
            args = await read_args(request)
            result = await run_in_threadpool(handler, Ctx(request), args)
        except Exception as exc:  # noqa: BLE001 - every error becomes MLflow's error format
            return response_for(exc, request)
        if isinstance(result, Response):
            return result
        return json_response({} if result is None else result)

    run.__name__ = f"mlflow_{handler.__name__}"
    run.__doc__ = handler.__doc__
    return run
