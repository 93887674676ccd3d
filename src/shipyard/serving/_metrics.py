"""Prometheus metrics of a model server, labelled with the model name and the version that
answered (versions swap while the server runs, so the version is a label, not a constant).

One worker: each app has its own registry (several apps in one test process must not
collide). Several workers (``serve_model(workers=N)``): prometheus_client's multiprocess
mode, switched on by ``PROMETHEUS_MULTIPROC_DIR`` in the workers' environment, so every
worker writes its samples to files there and ``/metrics`` on any worker reports the sum
over all of them (:meth:`ServingMetrics.render`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as _values
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ._batching import BatchStats

__all__ = ["ServingMetrics", "VersionMetrics", "multiprocess_dir"]

_LATENCY_BUCKETS = (.0005, .001, .0025, .005, .0075, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def multiprocess_dir() -> str | None:
    """The multiprocess directory when this process writes its metrics to files.

    prometheus_client picks its value class when it is imported, from the environment; the
    variable set later (or unset) changes nothing, so both must agree.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path and _values.ValueClass is not _values.MutexValue:
        return path
    return None


class VersionMetrics:
    """The metrics of one served version's batcher (label children, built once)."""

    def __init__(self, parent: ServingMetrics, version: str) -> None:
        labels = (parent.model, version)
        self.predictions = parent.predictions.labels(*labels)
        self.batch_size = parent.batch_size.labels(*labels)
        self.batch_requests = parent.batch_requests.labels(*labels)
        self.batch_seconds = parent.batch_seconds.labels(*labels)
        self.queue_depth = parent.queue_depth.labels(*labels)
        self.predlog_dropped = parent.predlog_dropped.labels(*labels)
        self._multiprocess = parent.multiprocess

    def track_queue(self, depth: Callable[[], float]) -> None:
        """Report ``depth()`` as the queue depth. A function gauge is exact but lives in
        this process only; in multiprocess mode the batches set it (:meth:`observe_batch`)."""
        if not self._multiprocess:
            self.queue_depth.set_function(depth)

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.rows)
        self.batch_requests.observe(stats.items)
        self.batch_seconds.observe(stats.seconds)
        if self._multiprocess:
            self.queue_depth.set(stats.queued)

    def retire(self) -> None:
        """The version no longer serves (swapped out): its queue is empty for good."""
        if self._multiprocess:
            self.queue_depth.set(0)
        else:
            self.queue_depth.set_function(lambda: 0.0)


class ServingMetrics:
    """The metrics of one model server; :meth:`version` gives one version's batcher metrics.

    Label children are cached: ``labels()`` takes a lock and builds a tuple on every call,
    which is measurable on a sub-millisecond request.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.multiprocess_dir = multiprocess_dir()
        self.multiprocess = self.multiprocess_dir is not None
        self.registry = CollectorRegistry()
        base = ["model", "version"]
        reg = self.registry
        self.requests = Counter("shipyard_serving_requests_total", "Requests by endpoint and "
                                "status", [*base, "endpoint", "status"], registry=reg)
        self.errors = Counter("shipyard_serving_errors_total", "Responses with status >= 400",
                              [*base, "endpoint", "status"], registry=reg)
        self.latency = Histogram("shipyard_serving_request_seconds", "Request latency",
                                 [*base, "endpoint"], registry=reg, buckets=_LATENCY_BUCKETS)
        self.predictions = Counter("shipyard_serving_predictions_total", "Rows predicted",
                                   base, registry=reg)
        self.batch_size = Histogram("shipyard_serving_batch_size", "Rows per model call "
                                    "(micro-batch)", base, registry=reg, buckets=_BATCH_BUCKETS)
        self.batch_requests = Histogram("shipyard_serving_batch_requests", "Requests per "
                                        "model call", base, registry=reg,
                                        buckets=_BATCH_BUCKETS)
        self.batch_seconds = Histogram("shipyard_serving_batch_seconds", "Time of one model "
                                       "call (validation + predict)", base, registry=reg,
                                       buckets=_LATENCY_BUCKETS)
        # livesum: the requests waiting in all live workers (a dead worker's files go).
        self.queue_depth = Gauge("shipyard_serving_queue_depth", "Requests waiting for a "
                                 "batch", base, registry=reg, multiprocess_mode="livesum")
        self.predlog_dropped = Counter("shipyard_serving_predlog_dropped_total", "Prediction "
                                       "log rows dropped because the writer fell behind",
                                       base, registry=reg)
        self._versions: dict[str, VersionMetrics] = {}
        self._children: dict[tuple[str, int, str], tuple[Any, Any, Any]] = {}

    def version(self, version: str) -> VersionMetrics:
        found = self._versions.get(version)
        if found is None:
            found = self._versions[version] = VersionMetrics(self, version)
        return found

    def observe_request(self, endpoint: str, status: int, seconds: float,
                        version: str) -> None:
        """One answered request; ``version`` is the version that answered it."""
        key = (endpoint, status, version)
        children = self._children.get(key)
        if children is None:
            labels = (self.model, version, endpoint, str(status))
            children = (self.requests.labels(*labels),
                        self.errors.labels(*labels) if status >= 400 else None,
                        self.latency.labels(self.model, version, endpoint))
            self._children[key] = children
        requests, errors, latency = children
        requests.inc()
        if errors is not None:
            errors.inc()
        latency.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text: this app's registry, or the sum over every worker."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client.multiprocess import MultiProcessCollector

        _forget_dead_workers(self.multiprocess_dir)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, self.multiprocess_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST


def _forget_dead_workers(path: str) -> None:
    """Drop the live-gauge files of workers that died (a killed worker never says so).

    Counters and histograms of dead workers stay: totals must not go backwards when the
    supervisor replaces a worker.
    """
    for file in glob.glob(os.path.join(path, "gauge_live*.db")):
        found = _LIVE_GAUGE_FILE.search(file)
        if found is None:
            continue
        pid = int(found.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):
                os.remove(file)
        except PermissionError:  # alive, another user's: not ours to judge
            pass
