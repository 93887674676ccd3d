"""The model server: one Starlette app per model version, and running it with uvicorn.

Routes: the Open Inference Protocol (``/v2/...``), the simple JSON ``/predict``,
``/feedback``, ``/health``, ``/ready`` and ``/metrics`` (handlers in ``_endpoints.py``).
No middleware: each endpoint records its own metrics (see :func:`_endpoint`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import _endpoints as ep
from ._model import ServedModel, resolve_model_ref
from ._state import HTTPError, ServingConfig, ServingState, error_response

__all__ = ["create_app", "serve_model", "app_from_env", "ENV_SPEC"]

ENV_SPEC = "SHIPYARD_SERVING_SPEC"

Handler = Callable[[ServingState, Request, float], Awaitable[Response]]


def _endpoint(state: ServingState, label: str, handler: Handler,
              v2: bool) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await handler(state, request, started)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error
            response = error_response(exc, v2)
        state.metrics.observe_request(label, response.status_code,
                                      time.perf_counter() - started)
        return response

    endpoint.__name__ = label
    return endpoint


# -- the app ---------------------------------------------------------------------------------


def create_app(served: ServedModel, config: ServingConfig | None = None, *,
               home: str | Path | None = None) -> Starlette:
    """A server for ``served``; the prediction log goes under ``home`` (SHIPYARD_HOME)."""
    if home is None:
        from shipyard.config import get_settings

        home = get_settings().home
    state = ServingState(served, config or ServingConfig(), Path(home))

    def route(path: str, label: str, handler: Handler, method: str = "GET") -> Route:
        v2 = path.startswith("/v2")
        return Route(path, _endpoint(state, label, handler, v2), methods=[method])

    model = "/v2/models/{name}"
    version = "/v2/models/{name}/versions/{version}"
    routes = [
        route("/v2", "v2_server", ep.v2_server),
        route("/v2/health/live", "v2_live", ep.v2_live),
        route("/v2/health/ready", "v2_ready", ep.v2_ready),
        route(model, "v2_model", ep.v2_model),
        route(version, "v2_model", ep.v2_model),
        route(f"{model}/ready", "v2_model_ready", ep.v2_model_ready),
        route(f"{version}/ready", "v2_model_ready", ep.v2_model_ready),
        route(f"{model}/infer", "v2_infer", ep.v2_infer, "POST"),
        route(f"{version}/infer", "v2_infer", ep.v2_infer, "POST"),
        route("/predict", "predict", ep.predict, "POST"),
        route("/feedback", "feedback", ep.feedback, "POST"),
        route("/health", "health", ep.health),
        route("/ready", "ready", ep.ready),
        route("/metrics", "metrics", ep.metrics),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await state.close()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = (f"no route {request.method} {request.url.path}" if exc.status_code == 404
                   else f"{request.method} is not allowed on {request.url.path}")
        code = "RESOURCE_DOES_NOT_EXIST" if exc.status_code == 404 else "METHOD_NOT_ALLOWED"
        return error_response(HTTPError(exc.status_code, code, message),
                              request.url.path.startswith("/v2"))

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={404: http_error, 405: http_error})
    app.state.serving = state
    return app


def serve_model(model: ServedModel | str, config: ServingConfig | None = None, *,
                host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
                log_level: str = "warning") -> None:
    """Serve one model version with uvicorn (uvloop + httptools when installed); blocks.

    ``model`` is a loaded model or a reference; an alias is resolved once, here, so every
    worker serves the same version. Each worker process loads its own copy.
    """
    import uvicorn

    config = config or ServingConfig()
    options: dict[str, Any] = {"host": host, "port": port, "log_level": log_level,
                               "access_log": False, "lifespan": "on", "loop": "auto",
                               "http": "auto", "timeout_graceful_shutdown": 30}
    if workers <= 1:
        served = model if isinstance(model, ServedModel) else ServedModel.load(model)
        uvicorn.run(create_app(served, config), **options)
        return
    if isinstance(model, ServedModel):
        uri = model.uri
    else:
        from shipyard.client import Client
        from shipyard.registry import parse_model_uri

        uri = resolve_model_ref(model)
        if parse_model_uri(uri).kind != "run":
            uri = Client().registry.resolve(uri).uri
    os.environ[ENV_SPEC] = json.dumps({"uri": uri, "config": asdict(config)})
    uvicorn.run("shipyard.serving._app:app_from_env", factory=True, workers=workers,
                **options)


def app_from_env() -> Starlette:
    """The app factory each uvicorn worker process calls (``SHIPYARD_SERVING_SPEC``)."""
    spec = json.loads(os.environ[ENV_SPEC])
    return create_app(ServedModel.load(spec["uri"]), ServingConfig(**spec["config"]))
