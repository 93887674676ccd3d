"""Prometheus metrics of the server: requests, errors and latency per route template."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "MetricsMiddleware"]


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

    def observe(self, method: str, template: str, status: int, seconds: float) -> None:
        self.requests.labels(method, template, str(status)).inc()
        if status >= 400:
            self.errors.labels(method, template, str(status)).inc()
        self.latency.labels(method, template).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Plain ASGI middleware (no extra task per request, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(scope["method"], template, status,
                                 time.perf_counter() - started)
