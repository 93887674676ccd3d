"""Prometheus metrics of a model server, labelled with the model name and version."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ._batching import BatchStats

__all__ = ["ServingMetrics"]

_LATENCY_BUCKETS = (.0005, .001, .0025, .005, .0075, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


class ServingMetrics:
    """One registry per app (several apps in one test process must not collide).

    Label children are cached: ``labels()`` takes a lock and builds a tuple on every call,
    which is measurable on a sub-millisecond request.
    """

    def __init__(self, model: str, version: str) -> None:
        self.registry = CollectorRegistry()
        base = ["model", "version"]
        self._base = (model, version)
        reg = self.registry
        self.requests = Counter("shipyard_serving_requests_total", "Requests by endpoint and "
                                "status", [*base, "endpoint", "status"], registry=reg)
        self.errors = Counter("shipyard_serving_errors_total", "Responses with status >= 400",
                              [*base, "endpoint", "status"], registry=reg)
        self.latency = Histogram("shipyard_serving_request_seconds", "Request latency",
                                 [*base, "endpoint"], registry=reg, buckets=_LATENCY_BUCKETS)
        self.predictions = Counter("shipyard_serving_predictions_total", "Rows predicted",
                                   base, registry=reg).labels(*self._base)
        self.batch_size = Histogram("shipyard_serving_batch_size", "Rows per model call "
                                    "(micro-batch)", base, registry=reg,
                                    buckets=_BATCH_BUCKETS).labels(*self._base)
        self.batch_requests = Histogram("shipyard_serving_batch_requests", "Requests per "
                                        "model call", base, registry=reg,
                                        buckets=_BATCH_BUCKETS).labels(*self._base)
        self.batch_seconds = Histogram("shipyard_serving_batch_seconds", "Time of one model "
                                       "call (validation + predict)", base, registry=reg,
                                       buckets=_LATENCY_BUCKETS).labels(*self._base)
        self.queue_depth = Gauge("shipyard_serving_queue_depth", "Requests waiting for a "
                                 "batch", base, registry=reg).labels(*self._base)
        self.predlog_dropped = Counter("shipyard_serving_predlog_dropped_total", "Prediction "
                                       "log rows dropped because the writer fell behind",
                                       base, registry=reg).labels(*self._base)
        self._children: dict[tuple[str, int], tuple[Any, Any, Any]] = {}

    def track_queue(self, depth: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, status)
        children = self._children.get(key)
        if children is None:
            labels = (*self._base, endpoint, str(status))
            children = (self.requests.labels(*labels),
                        self.errors.labels(*labels) if status >= 400 else None,
                        self.latency.labels(*self._base, endpoint))
            self._children[key] = children
        requests, errors, latency = children
        requests.inc()
        if errors is not None:
            errors.inc()
        latency.observe(seconds)

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.rows)
        self.batch_requests.observe(stats.items)
        self.batch_seconds.observe(stats.seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
