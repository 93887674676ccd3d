"""Experiment tracking: experiments, runs, params, metrics, tags, dataset inputs, artifacts.

Public API: :class:`TrackingService` (all operations, validated and audited),
:class:`BatchWriter` (buffered logging), the domain models, and the search filter language
(:func:`parse_filter`). The SDK's ``start_run``/``log_metric`` live in :mod:`shipyard.fluent`.
Adding an operation: validation in ``_validation``, SQL in ``_store``, the rule and the audit
event in ``_service`` — see ``TrackingService.log_input`` for the pattern.
"""

from ._entities import (
    ArtifactInfo,
    DatasetInput,
    Experiment,
    LifecycleStage,
    Metric,
    Run,
    RunStatus,
)
from ._search import parse_filter, parse_order_by
from ._service import MetricPoint, TrackingService
from ._system_metrics import SystemMetricsSampler
from ._writer import BatchWriter

__all__ = [
    "ArtifactInfo",
    "BatchWriter",
    "DatasetInput",
    "Experiment",
    "LifecycleStage",
    "Metric",
    "MetricPoint",
    "Run",
    "RunStatus",
    "SystemMetricsSampler",
    "TrackingService",
    "parse_filter",
    "parse_order_by",
]
