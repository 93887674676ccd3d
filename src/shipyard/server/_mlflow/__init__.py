"""MLflow's REST API (2.0) over Shipyard's stores, so the unmodified ``mlflow`` client works.

Public API: :func:`mlflow_router` (a FastAPI router the server mounts), and for the auth
middleware :data:`VIEWER_ROUTES` (read-only POST routes), :func:`is_mlflow_path` and
:func:`error_response` (MLflow's error format). Point the client at
the server with ``MLFLOW_TRACKING_URI=http://<host>:<port>``; what is supported and how
MLflow's objects map onto Shipyard's is in ``docs/mlflow-compat.md``.
"""

from ._http import error_response, is_mlflow_path
from ._router import VIEWER_ROUTES, mlflow_router

__all__ = ["mlflow_router", "VIEWER_ROUTES", "is_mlflow_path", "error_response"]
