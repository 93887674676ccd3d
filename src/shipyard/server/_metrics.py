"""Prometheus metrics of the server: requests, errors and latency per route template."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["Metrics"]


class Metrics:
    """One registry per app, so several apps in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("shipyard_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.errors = Counter("shipyard_http_errors_total", "HTTP responses with status >= 400",
                              ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("shipyard_http_request_seconds", "Request latency",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1,
                                          2.5, 5, 10))

    async def middleware(self, request: Request,
                         call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        status = str(response.status_code)
        self.requests.labels(request.method, template, status).inc()
        if response.status_code >= 400:
            self.errors.labels(request.method, template, status).inc()
        self.latency.labels(request.method, template).observe(time.perf_counter() - started)
        return response

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
