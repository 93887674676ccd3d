"""The Shipyard server: one FastAPI app with the native REST API under ``/api/v1``.

Public API: :func:`create_app` (the ASGI app over a :class:`~shipyard.client.Client`'s
stores) and :func:`serve` (run it with uvicorn). A new endpoint = a service method + one
line in ``shipyard.api._routes.ROUTES``; the remote client picks it up from the same table.
"""

from ._app import create_app
from ._serve import serve

__all__ = ["create_app", "serve"]
