"""The Shipyard server: one FastAPI app with the native REST API under ``/api/v1``.

Public API: :func:`create_app` (the ASGI app over a :class:`~shipyard.client.Client`'s
stores), :func:`request_services` (the services a request acts through, attributed to the
authenticated user) and :func:`serve` (run it with uvicorn). A new endpoint = a service method + one
line in ``shipyard.api._routes.ROUTES``; the remote client picks it up from the same table.
"""

from ._app import create_app
from ._auth import request_services
from ._serve import serve

__all__ = ["create_app", "request_services", "serve"]
