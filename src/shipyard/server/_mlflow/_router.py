"""The router: every MLflow route under ``/api/2.0/mlflow`` and its ``/ajax-api`` alias."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from . import _models, _registry, _tracking
from ._artifacts import (
    delete_proxy,
    download,
    list_proxy,
    list_run_artifacts,
    server_info,
    upload,
)
from ._http import Args, Ctx, MlflowError, endpoint

__all__ = ["mlflow_router", "ROUTES", "VIEWER_ROUTES"]

_PREFIXES = ("/api/2.0", "/ajax-api/2.0")
_ALL = ["GET", "POST", "PUT", "PATCH", "DELETE"]

#: (verb, path under <prefix>/mlflow, handler) of every MLflow route served.
ROUTES = [*_tracking.ROUTES, *_models.ROUTES, *_registry.ROUTES,
          ("GET", "/artifacts/list", list_run_artifacts)]

#: Names of the POST routes that only read (MLflow searches by POST): a viewer may call them.
VIEWER_ROUTES = frozenset(f"mlflow_{handler.__name__}" for verb, _, handler in ROUTES
                          if verb == "POST" and handler.__name__.startswith(("search", "get")))


def _unknown(ctx: Ctx, a: Args) -> Any:
    raise MlflowError("ENDPOINT_NOT_FOUND",
                      f"{ctx.request.method} {ctx.request.url.path} is not supported by "
                      "Shipyard's MLflow-compatible API (see docs/mlflow-compat.md)")


def mlflow_router() -> APIRouter:
    """MLflow's tracking, logged-model, registry and artifact-proxy routes (not in OpenAPI)."""
    router = APIRouter(include_in_schema=False, tags=["mlflow"])
    for prefix in _PREFIXES:
        for verb, path, handler in ROUTES:
            router.add_api_route(f"{prefix}/mlflow{path}", endpoint(handler), methods=[verb],
                                 name=f"mlflow_{handler.__name__}")
        artifacts = f"{prefix}/mlflow-artifacts/artifacts"
        router.add_api_route(artifacts, endpoint(list_proxy), methods=["GET"],
                             name="mlflow_artifacts_list")
        router.add_api_route(artifacts + "/{path:path}", upload, methods=["PUT"],
                             name="mlflow_artifacts_upload")
        router.add_api_route(artifacts + "/{path:path}", download, methods=["GET"],
                             name="mlflow_artifacts_download")
        router.add_api_route(artifacts + "/{path:path}", endpoint(delete_proxy),
                             methods=["DELETE"], name="mlflow_artifacts_delete")
    router.add_api_route("/api/3.0/mlflow/server-info", endpoint(server_info), methods=["GET"],
                         name="mlflow_server_info")
    for base in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow", "/api/2.0/mlflow-artifacts",
                 "/ajax-api/2.0/mlflow-artifacts", "/api/3.0/mlflow"):
        router.add_api_route(base + "/{rest:path}", endpoint(_unknown), methods=_ALL,
                             name="mlflow_unknown")
    return router
