"""The FastAPI application: native routes from the route table, health, metrics, errors."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shipyard import errors
from shipyard._version import __version__
from shipyard.api import ROUTES, error_body
from shipyard.client import Client

from ._artifacts import download_endpoint, upload_endpoint
from ._auth import AuthMiddleware, request_services
from ._endpoints import build_endpoint
from ._metrics import Metrics, MetricsMiddleware
from ._mlflow import mlflow_router

__all__ = ["create_app"]

log = logging.getLogger("shipyard.server")


def _status_for(exc: errors.ShipyardError) -> int:
    for cls in type(exc).__mro__:
        if cls in errors.HTTP_STATUS:
            return errors.HTTP_STATUS[cls]
    return 500


def create_app(client: Client | None = None, *, auth: bool | None = None) -> FastAPI:
    """The Shipyard server over ``client``'s stores (default: the configured settings).

    ``auth`` (default: the ``auth`` setting) requires a bearer token on every request.
    """
    client = client or Client()
    auth = client.settings.auth if auth is None else auth
    app = FastAPI(title="Shipyard", version=__version__,
                  description="Tracking and model registry API of Shipyard.")
    app.state.client = client
    metrics = Metrics()
    app.state.metrics = metrics

    def service(name: str) -> Any:
        return lambda request: request_services(request)[name]

    schemas: dict[str, Any] = {}
    for route in ROUTES:
        endpoint, model = build_endpoint(route, service(route.service))
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        extra = _openapi_extra(route, schema)
        app.add_api_route(route.path, endpoint, methods=[route.verb], name=route.name,
                          tags=[route.service], openapi_extra=extra,
                          summary=route.name.replace("_", " "))
    artifact_params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                       for p in ("run_id", "path")]
    app.add_api_route("/api/v1/runs/{run_id}/artifacts/{path:path}",
                      upload_endpoint(service("tracking")), methods=["PUT"],
                      name="upload_artifact", tags=["tracking"], openapi_extra={
                          "parameters": artifact_params, "requestBody": {"content": {
                              "application/octet-stream": {"schema": {
                                  "type": "string", "format": "binary"}}}}})
    app.add_api_route("/api/v1/runs/{run_id}/artifacts/{path:path}",
                      download_endpoint(service("tracking")), methods=["GET"],
                      name="download_artifact", tags=["tracking"],
                      openapi_extra={"parameters": artifact_params})
    app.include_router(mlflow_router())
    _add_operational_routes(app, metrics)
    _add_error_handlers(app)
    _merge_schemas(app, schemas)
    if auth:
        app.middleware("http")(AuthMiddleware())
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.auth = auth
    return app


def _openapi_extra(route: Any, schema: dict[str, Any]) -> dict[str, Any]:
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    params = [{"name": p, "in": "path", "required": True,
               "schema": props.get(p, {"type": "string"})} for p in route.path_params]
    if route.verb == "GET":
        params += [{"name": name, "in": "query", "required": name in required,
                    "schema": prop} for name, prop in props.items()
                   if name not in route.path_params]
        return {"parameters": params}
    body = {k: v for k, v in schema.items()}
    body["properties"] = {k: v for k, v in props.items() if k not in route.path_params}
    body["required"] = [r for r in required if r not in route.path_params]
    if not body["required"]:
        body.pop("required")
    return {"parameters": params, "requestBody": {
        "required": False, "content": {"application/json": {"schema": body}}}}


def _merge_schemas(app: FastAPI, schemas: dict[str, Any]) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = original()
            doc.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_operational_routes(app: FastAPI, metrics: Metrics) -> None:
    @app.get("/health", tags=["operations"])
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok", "version": __version__}

    @app.get("/ready", tags=["operations"])
    def ready(request: Request) -> Response:
        """Readiness: the metadata database answers."""
        try:
            with request.app.state.client.db.read() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return JSONResponse({"status": "unavailable", "reason": str(exc)[:200]}, 503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["operations"])
    def prometheus() -> Response:
        """Prometheus metrics: requests, errors and latency per route."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.ShipyardError)
    async def shipyard_error(request: Request, exc: errors.ShipyardError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=_status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ["body"], "msg": "invalid"}
        field = ".".join(str(p) for p in first["loc"])
        return JSONResponse(error_body(errors.InvalidInput(f"{field}: {first['msg']}",
                                                           field=field)), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "RESOURCE_DOES_NOT_EXIST", 405: "METHOD_NOT_ALLOWED",
                401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}.get(exc.status_code,
                                                                     "BAD_REQUEST")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        return JSONResponse({"error": {"code": code, "message": message}},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        body = {"error": {"code": "INTERNAL_ERROR",
                          "message": f"{type(exc).__name__}: {str(exc)[:300]}"}}
        return JSONResponse(body, status_code=500)
