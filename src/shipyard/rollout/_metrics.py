"""The router's Prometheus metrics: the serving metrics of every arm, plus the rollout's own.

Every arm is a serving state with its own registry (requests are labelled by the version
that answered, batches by the arm's version); ``/metrics`` on the router reports all of
them in one exposition, merged family by family. In multiprocess mode (``--workers N``)
every sample is in the shared files already, so the serving render is used as is.

Rollout series, labelled by ``deployment`` and ``arm``: requests by outcome, requests
pinned to an arm by a versioned path, shadow copies by outcome, shadow rows compared /
agreeing and the summed absolute probability difference (counters, so they add up across
workers; the gauges give this worker's current rates), decisions taken, feedback credited,
and the revision being served.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric

from shipyard.serving import ServingMetrics

__all__ = ["RouterMetrics"]


class RouterMetrics(ServingMetrics):
    """The router's registry; ``arm_registries()`` names the arms' own registries."""

    def __init__(self, model: str, deployment: str,
                 arm_registries: Callable[[], Iterable[CollectorRegistry]]) -> None:
        super().__init__(model)
        self.deployment = deployment
        self._arm_registries = arm_registries
        reg = self.registry
        arm = ["deployment", "arm"]
        self.arm_requests = Counter(
            "shipyard_rollout_requests_total", "Requests routed to each arm, by outcome "
            "(ok, error: a server error or overload, not bad input)", [*arm, "outcome"],
            registry=reg)
        self.pinned = Counter(
            "shipyard_rollout_pinned_requests_total", "Requests addressed to one version "
            "(/v2/models/M/versions/V/...) and answered by the arm serving it, bypassing the "
            "strategy", arm, registry=reg)
        self.shadow_copies = Counter(
            "shipyard_rollout_shadow_copies_total", "Copies of traffic for a shadow arm, by "
            "outcome (compared, failed, dropped: its queue was full)", [*arm, "outcome"],
            registry=reg)
        self.shadow_rows = Counter("shipyard_rollout_shadow_rows_total", "Rows a shadow arm "
                                   "answered and that were compared with the primary", arm,
                                   registry=reg)
        self.shadow_agreed = Counter("shipyard_rollout_shadow_agreed_rows_total", "Compared "
                                     "rows on which the shadow's prediction equals the "
                                     "primary's", arm, registry=reg)
        self.shadow_diff = Counter("shipyard_rollout_shadow_proba_diff_total", "Sum over "
                                   "compared rows of the mean absolute difference of class "
                                   "probabilities", arm, registry=reg)
        self.shadow_agreement = Gauge("shipyard_rollout_shadow_agreement", "Share of "
                                      "compared rows that agree, this revision", arm,
                                      registry=reg, multiprocess_mode="mostrecent")
        self.shadow_mean_diff = Gauge("shipyard_rollout_shadow_proba_abs_diff", "Mean "
                                      "absolute probability difference, this revision", arm,
                                      registry=reg, multiprocess_mode="mostrecent")
        self.decisions = Counter("shipyard_rollout_decisions_total", "Automatic decisions "
                                 "this router took (step, promote, rollback)",
                                 ["deployment", "action"], registry=reg)
        self.feedback = Counter("shipyard_rollout_feedback_total", "Feedback by outcome "
                                "(credited to an arm, unknown prediction, no reward)",
                                ["deployment", "outcome"], registry=reg)
        self.revision = Gauge("shipyard_rollout_revision", "The deployment revision served",
                              ["deployment"], registry=reg, multiprocess_mode="max")
        self._rollout_children: dict[tuple[str, ...], Any] = {}

    def child(self, metric: Counter | Gauge, *labels: str) -> Any:
        """``metric.labels(deployment, *labels)``, cached (labels() costs a lock each call)."""
        key = (metric._name, *labels)  # noqa: SLF001 - the metric's own name, for the cache
        found = self._rollout_children.get(key)
        if found is None:
            found = self._rollout_children[key] = metric.labels(self.deployment, *labels)
        return found

    def render(self) -> tuple[bytes, str]:
        if self.multiprocess_dir is not None:
            return super().render()
        merged = _Merged([self.registry, *self._arm_registries()])
        return generate_latest(merged), CONTENT_TYPE_LATEST


class _Merged:
    """Several registries as one collector: families of one name become one family (a
    sample present in two registries, e.g. two arms on one version, is summed)."""

    def __init__(self, registries: list[CollectorRegistry]) -> None:
        self.registries = registries

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        index: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        for registry in self.registries:
            for family in registry.collect():
                found = families.get(family.name)
                if found is None:
                    found = families[family.name] = Metric(family.name, family.documentation,
                                                           family.type, family.unit)
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    at = index.get(key)
                    if at is None:
                        index[key] = len(found.samples)
                        found.samples.append(sample)
                    else:
                        old = found.samples[at]
                        found.samples[at] = old._replace(value=old.value + sample.value)
        yield from families.values()
