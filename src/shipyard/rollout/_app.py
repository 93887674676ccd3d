"""Serving a deployment: the model server's app around a :class:`RouterState`, and uvicorn.

The endpoints are the model server's own (``shipyard.serving.create_app``): V2, ``/predict``,
``/feedback``, ``/metrics``, health. Only the state differs, and the versioned V2 routes
(``/v2/models/{name}/versions/{version}[/ready|/infer]``) are wrapped here: a version that
one of the served arms serves pins the request to that arm (:data:`~._router.PINNED`:
``served`` and ``predict`` then use it, bypassing the strategy); any other version of the
deployment's model is a V2 404 naming the versions served. With ``workers > 1`` every
uvicorn worker builds its router from the spec in the environment; the workers share the
arm statistics, the assignments and the decisions through the metadata database, and their
Prometheus samples through a multiprocess directory, as ``shipyard serve`` does.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from starlette.routing import Route

from shipyard.serving import ServingConfig, create_app, run_workers

from ._router import PINNED, Pinned, RouterOptions, RouterState

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.types import ASGIApp, Receive, Scope, Send

    from shipyard.client import Client

__all__ = ["create_router_app", "serve_deployment", "app_from_env", "ENV_SPEC"]

ENV_SPEC = "SHIPYARD_ROLLOUT_SPEC"


def create_router_app(deployment: str | RouterState, config: ServingConfig | None = None, *,
                      home: str | Path | None = None, client: Client | None = None,
                      options: RouterOptions | None = None) -> Starlette:
    """The model server's app serving deployment ``deployment`` (its arms are loaded now),
    or around a :class:`RouterState` built already (the other arguments are then unused).

    ``app.state.serving`` is the :class:`RouterState`. Use this rather than
    ``shipyard.serving.create_app(router)``, which lacks the versioned routes' pinning.
    """
    router = deployment if isinstance(deployment, RouterState) else RouterState(
        deployment, config, home, client=client, options=options)
    app = create_app(router)
    for route in app.router.routes:
        if isinstance(route, Route) and "{version}" in route.path:
            route.app = _pin_version(router, route.app, route.endpoint.__name__)
    return app


def _pin_version(router: RouterState, inner: ASGIApp, label: str) -> ASGIApp:
    """``inner`` (a versioned V2 route of the model server) with the request pinned to the
    arm that serves the version in the path; a version no arm serves is a 404 here."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        params = scope.get("path_params") or {}
        name, version = params.get("name"), params.get("version")
        if name != router.model or not isinstance(version, str):
            await inner(scope, receive, send)  # the endpoint answers a wrong model itself
            return
        arm = router.arm_for_version(version)
        if arm is None:
            await _not_served(router, label, version)(scope, receive, send)
            return
        token = PINNED.set(Pinned(arm, version))
        try:
            await inner(scope, receive, send)
        finally:
            PINNED.reset(token)

    return app


def _not_served(router: RouterState, label: str, version: str) -> Any:
    """The V2 error of a version that no arm of the deployment serves (counted like any
    request of the endpoint)."""
    from starlette.responses import Response

    started = time.perf_counter()
    view = router.view
    served = ", ".join(f"{s.served.version_label} ({arm})" for arm, s in view.arms.items())
    message = (f"version {version!r} of {router.model!r} is not served by deployment "
               f"{router.name!r}; its arms serve versions {served}")
    router.metrics.observe_request(label, 404, time.perf_counter() - started,
                                   router.served.version_label)
    return Response(orjson.dumps({"error": message}), 404, media_type="application/json")


def serve_deployment(deployment: str, config: ServingConfig | None = None, *,
                     options: RouterOptions | None = None, host: str = "127.0.0.1",
                     port: int = 8080, workers: int = 1, log_level: str = "warning") -> None:
    """Serve ``deployment`` with uvicorn until stopped (``shipyard deployments serve``)."""
    import uvicorn

    config = config or ServingConfig()
    options = options or RouterOptions()
    server: dict[str, Any] = {"host": host, "port": port, "log_level": log_level,
                              "access_log": False, "lifespan": "on", "loop": "auto",
                              "http": "auto", "timeout_graceful_shutdown": 30}
    if workers <= 1:
        uvicorn.run(create_router_app(deployment, config, options=options), **server)
        return
    spec = json.dumps({"deployment": deployment, "config": asdict(config),
                       "options": asdict(options)})
    run_workers("shipyard.rollout._app:app_from_env", ENV_SPEC, spec, workers, server)


def app_from_env() -> Starlette:
    """The app factory each uvicorn worker calls (``SHIPYARD_ROLLOUT_SPEC``)."""
    spec = json.loads(os.environ[ENV_SPEC])
    return create_router_app(spec["deployment"], ServingConfig(**spec["config"]),
                             options=RouterOptions(**spec["options"]))
