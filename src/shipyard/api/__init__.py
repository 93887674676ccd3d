"""The HTTP API's one table of routes, and the remote client generated from it.

Public API: :data:`ROUTES` (every native route: service, method, HTTP verb, path, role),
:class:`Route`, :func:`connect` (a remote :class:`~shipyard.client.Client`-like object over
HTTP) and :func:`error_from_body` (the inverse of the server's error mapping).
"""

from ._routes import CLIENT_ONLY_PARAMS, ROUTES, Route, routes_for
from ._wire import decode, dumps, encode, error_body, error_from_body, loads

__all__ = ["CLIENT_ONLY_PARAMS", "ROUTES", "Route", "routes_for", "decode", "dumps", "encode",
           "error_body", "error_from_body", "loads"]
