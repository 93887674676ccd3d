"""Per-request identity: bearer-token authentication, role checks, request-scoped services.

With auth on, every request but the public operational ones must carry
``Authorization: Bearer <token>``: no or a bad token is a 401, a role below the route's is
a 403. The services a request uses are built for it with the caller as their actor, so
every mutation is attributed to the authenticated user in the audit log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from shipyard import errors
from shipyard.api import ROUTES, error_body

from ._mlflow import VIEWER_ROUTES, error_response, is_mlflow_path

__all__ = ["request_services", "AuthMiddleware", "PUBLIC_PATHS"]

PUBLIC_PATHS = frozenset({"/health", "/ready", "/metrics", "/openapi.json", "/docs",
                          "/redoc", "/docs/oauth2-redirect"})
_ROUTE_ROLES = {r.name: r.role for r in ROUTES}
_ROUTE_ROLES.update({"upload_artifact": "editor", "download_artifact": "viewer"})
_ROUTE_ROLES.update(dict.fromkeys(VIEWER_ROUTES, "viewer"))  # MLflow's read-only POSTs


def request_services(request: Request) -> dict[str, Any]:
    """The services for this request: the app's own, or built for the authenticated user."""
    cached = getattr(request.state, "services", None)
    if cached is not None:
        return cached
    client = request.app.state.client
    user = getattr(request.state, "user", None)
    if user is None:
        services = {"tracking": client.tracking, "registry": client.registry,
                    "auth": client.auth, "features": client.feature_store,
                    "deployments": client.deployments}
    else:
        from shipyard.auth import AuthService
        from shipyard.deployments import DeploymentService
        from shipyard.registry import RegistryService
        from shipyard.tracking import TrackingService

        tracking = TrackingService(client.db, client.artifact_store, user.name)
        registry = RegistryService(tracking, client.registry.cache_dir)
        services = {"tracking": tracking, "registry": registry,
                    "auth": AuthService(client.db, user.name),
                    "features": client.feature_store,
                    "deployments": DeploymentService(registry)}
    request.state.services = services
    return services


def _matched_name(routes: Any, scope: Any) -> str | None:
    """The name of the route that serves ``scope``, looking inside included routers."""
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI's included router
        if inner is not None:
            name = _matched_name(inner.routes, scope)
            if name is not None:
                return name
            continue
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "name", "") or "")
    return None


def _required_role(request: Request) -> str:
    name = _matched_name(request.app.router.routes, request.scope)
    if name in _ROUTE_ROLES:
        return _ROUTE_ROLES[name]
    return "viewer" if request.method in ("GET", "HEAD", "OPTIONS") else "editor"


def _deny(request: Request, status: int, message: str) -> Response:
    code = "UNAUTHENTICATED" if status == 401 else "PERMISSION_DENIED"
    if is_mlflow_path(request.url.path):  # the MLflow client reads its own error format
        return error_response(code, message)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


class AuthMiddleware:
    """Authenticate bearer tokens and enforce route roles (only mounted with auth on)."""

    async def __call__(self, request: Request,
                       call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path in PUBLIC_PATHS:
            return await call_next(request)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _deny(request, 401, "this server requires an API token: send "
                              "'Authorization: Bearer <token>'")
        auth = request.app.state.client.auth
        try:
            user = await run_in_threadpool(auth.authenticate, token.strip())
        except errors.PermissionDenied as exc:
            return _deny(request, 401, exc.message)
        except errors.ShipyardError as exc:
            return JSONResponse(error_body(exc), status_code=503)
        from shipyard.auth import role_allows

        need = _required_role(request)
        if not role_allows(user.role, need):
            return _deny(request, 403, f"user {user.name!r} has role {user.role.value}; "
                              f"{request.method} {request.url.path} needs {need}")
        request.state.user = user
        return await call_next(request)
