"""Endpoints generated from the route table: parse → call the service → encode.

Each route's arguments are validated by a pydantic model built once from the service
method's signature; a bad argument is a 400 naming the field, never a 500.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from shipyard import errors
from shipyard.api import CLIENT_ONLY_PARAMS, Route, dumps, encode, loads

__all__ = ["Endpoint", "build_endpoint", "service_classes"]

Endpoint = Callable[[Request], Awaitable[Response]]
MAX_JSON_BYTES = 16 * 2**20


def service_classes() -> dict[str, type]:
    from shipyard.auth import AuthService
    from shipyard.deployments import DeploymentService
    from shipyard.features import FeatureStore
    from shipyard.registry import RegistryService
    from shipyard.tracking import TrackingService

    return {"tracking": TrackingService, "registry": RegistryService, "auth": AuthService,
            "features": FeatureStore, "deployments": DeploymentService}


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True,
                              populate_by_name=True)

    def kwargs(self) -> dict[str, Any]:
        """The method's keyword arguments (field aliases undone)."""
        return {(f.alias or name): getattr(self, name)
                for name, f in type(self).model_fields.items()}


def args_model(route: Route, method: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model of the method's parameters (path parameters included)."""
    hints = typing.get_type_hints(method)
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(method).parameters.items():
        if name == "self" or name in CLIENT_ONLY_PARAMS or param.kind in (
                param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue  # the server always validates: client-only flags keep their defaults
        default = ... if param.default is inspect.Parameter.empty else param.default
        if hasattr(BaseModel, name):  # e.g. "schema": keep the wire name as an alias
            fields[f"{name}_"] = (hints.get(name, Any), Field(default, alias=name))
        else:
            fields[name] = (hints.get(name, Any), default)
    model_name = "".join(p.title() for p in route.name.split("_")) + "Args"
    return create_model(model_name, __base__=_Args, **fields)


def _first_error(exc: ValidationError) -> errors.InvalidInput:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "body"
    return errors.InvalidInput(f"{field}: {err['msg']}", field=field)


async def _read_json(request: Request) -> dict[str, Any]:
    size = int(request.headers.get("content-length") or 0)
    if size > MAX_JSON_BYTES:
        raise errors.InvalidInput(f"request body of {size} bytes is over the "
                                  f"{MAX_JSON_BYTES} byte limit", field="body")
    raw = await request.body()
    if len(raw) > MAX_JSON_BYTES:
        raise errors.InvalidInput("request body is over the size limit", field="body")
    if not raw:
        return {}
    try:
        data = loads(raw)
    except ValueError as exc:
        raise errors.InvalidInput(f"request body is not valid JSON: {exc}", field="body") from exc
    if not isinstance(data, dict):
        raise errors.InvalidInput("request body must be a JSON object of arguments",
                                  field="body")
    return data


def build_endpoint(route: Route, get_service: Callable[[Request], Any]) -> tuple[
        Endpoint, type[BaseModel]]:
    """The async endpoint for ``route`` and its argument model (for the OpenAPI document)."""
    cls = service_classes()[route.service]
    method = getattr(cls, route.name)
    model = args_model(route, method)

    async def endpoint(request: Request) -> Response:
        if route.verb == "GET":
            raw: dict[str, Any] = dict(request.query_params)
        else:
            raw = await _read_json(request)
        raw.update(request.path_params)
        try:
            args = model.model_validate(raw, by_alias=True)
        except ValidationError as exc:
            raise _first_error(exc) from None
        service = get_service(request)
        result = await run_in_threadpool(getattr(service, route.name),
                                         **args.kwargs())  # type: ignore[attr-defined]
        return Response(dumps(encode(result)), media_type="application/json")

    endpoint.__name__ = route.name
    return endpoint, model
