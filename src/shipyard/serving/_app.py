"""The model server: one Starlette app per model version, and running it with uvicorn.

Routes: the Open Inference Protocol (``/v2/...``), the simple JSON ``/predict``,
``/feedback``, ``/health``, ``/ready`` and ``/metrics`` (handlers in ``_endpoints.py``).
No middleware: each endpoint records its own metrics (see :func:`_endpoint`).

With ``workers > 1`` uvicorn's supervisor runs the workers and replaces one that dies; each
worker builds its app with :func:`app_from_env` from the spec ``serve_model`` put in the
environment, and the workers' metrics are summed through a per-server
``PROMETHEUS_MULTIPROC_DIR`` that ``serve_model`` creates and removes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import _endpoints as ep
from ._model import ServedModel, resolve_model_ref
from ._openapi import openapi_endpoint
from ._state import HTTPError, ServingConfig, ServingState, answered_by, error_response
from ._watch import AliasWatcher, is_alias_ref

if TYPE_CHECKING:
    from shipyard.client import Client

__all__ = ["create_app", "serve_model", "run_workers", "app_from_env", "ENV_SPEC",
           "ENV_METRICS_DIR"]

ENV_SPEC = "SHIPYARD_SERVING_SPEC"
ENV_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger("shipyard.serving")

Handler = Callable[[ServingState, Request, float], Awaitable[Response]]


def _endpoint(state: ServingState, label: str, handler: Handler,
              v2: bool) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        answered_by.set(None)
        try:
            response = await handler(state, request, started)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error
            response = error_response(exc, v2)
        # Labelled by the version that predicted (state.predict sets it), which is not
        # always the one serving now: a swap may have happened meanwhile.
        version = answered_by.get() or state.served.version_label
        state.metrics.observe_request(label, response.status_code,
                                      time.perf_counter() - started, version)
        return response

    endpoint.__name__ = label
    return endpoint


# -- the app ---------------------------------------------------------------------------------


def create_app(served_or_state: ServedModel | ServingState,
               config: ServingConfig | None = None, *, home: str | Path | None = None,
               watch: str | None = None, client: Client | None = None) -> Starlette:
    """A server for a model version, or for a prebuilt :class:`ServingState` (a subclass
    such as the rollout router's; it brings its own config, so ``config`` and ``home`` are
    then ignored). The prediction log goes under ``home`` (SHIPYARD_HOME).

    ``watch`` (``NAME@ALIAS``) makes the server follow the alias: every
    ``config.watch_interval`` seconds it checks the registry (``client``'s, else the
    default one) and swaps to the version the alias names (see ``_watch.py``).
    """
    if isinstance(served_or_state, ServingState):
        state = served_or_state
    else:
        if home is None:
            from shipyard.config import get_settings

            home = get_settings().home
        state = ServingState(served_or_state, config or ServingConfig(), Path(home))
    watcher = None
    if watch is not None and state.config.watch_interval > 0 and is_alias_ref(watch):
        watcher = AliasWatcher(state, watch, interval=state.config.watch_interval,
                               client=client)

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
        route("/openapi.json", "openapi", openapi_endpoint),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if watcher is not None:
            watcher.start()
        yield
        if watcher is not None:
            await watcher.stop()
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
    app.state.watcher = watcher
    return app


def serve_model(model: ServedModel | str, config: ServingConfig | None = None, *,
                host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
                log_level: str = "warning") -> None:
    """Serve one model with uvicorn (uvloop + httptools when installed); blocks.

    ``model`` is a loaded model or a reference. A reference to an alias (``NAME@ALIAS``) is
    followed while the server runs (``config.watch_interval``; 0 pins the version it names
    at start). Each worker process loads its own copy; uvicorn's supervisor replaces a
    worker that dies, and the new one loads what the alias names by then.
    """
    import uvicorn

    config = config or ServingConfig()
    options: dict[str, Any] = {"host": host, "port": port, "log_level": log_level,
                               "access_log": False, "lifespan": "on", "loop": "auto",
                               "http": "auto", "timeout_graceful_shutdown": 30}
    watch = model if isinstance(model, str) and config.watch_interval > 0 \
        and is_alias_ref(model) else None
    if workers <= 1:
        served = model if isinstance(model, ServedModel) else ServedModel.load(model)
        uvicorn.run(create_app(served, config, watch=watch), **options)
        return
    if isinstance(model, ServedModel):
        uri = model.uri
    else:
        from shipyard.client import Client
        from shipyard.registry import parse_model_uri

        uri = resolve_model_ref(model)
        if parse_model_uri(uri).kind != "run":
            uri = Client().registry.resolve(uri).uri
    spec = json.dumps({"uri": uri, "watch": watch, "config": asdict(config)})
    run_workers("shipyard.serving._app:app_from_env", ENV_SPEC, spec, workers, options)


def run_workers(factory: str, env_name: str, spec: str, workers: int,
                options: dict[str, Any]) -> None:
    """Run ``workers`` uvicorn worker processes of app factory ``factory`` (``module:name``),
    each reading its JSON ``spec`` from the environment variable ``env_name``; blocks.

    The workers share a fresh Prometheus multiprocess directory (removed at exit), so each
    worker's ``/metrics`` reports the sum over all of them.
    """
    import uvicorn

    metrics_dir = tempfile.mkdtemp(prefix="shipyard-metrics-")
    saved = {k: os.environ.get(k) for k in (env_name, ENV_METRICS_DIR)}
    # The workers are spawned with this environment: prometheus_client reads the directory
    # when it is imported there, which is what switches on its multiprocess mode.
    os.environ.update({env_name: spec, ENV_METRICS_DIR: metrics_dir})
    try:
        uvicorn.run(factory, factory=True, workers=workers, **options)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(metrics_dir, ignore_errors=True)


def app_from_env() -> Starlette:
    """The app factory each uvicorn worker process calls (``SHIPYARD_SERVING_SPEC``).

    A worker started later (the supervisor replacing a dead one) loads what the alias names
    now; should that fail, the version pinned at start, so that the worker comes up and its
    watcher keeps retrying.
    """
    spec = json.loads(os.environ[ENV_SPEC])
    config = ServingConfig(**spec["config"])
    watch = spec.get("watch")
    served = None
    if watch:
        try:
            served = ServedModel.load(watch)
        except Exception:  # noqa: BLE001 - fall back to the version pinned at start
            log.exception("could not load %s; starting with %s", watch, spec["uri"])
    if served is None:
        served = ServedModel.load(spec["uri"])
    return create_app(served, config, watch=watch)
