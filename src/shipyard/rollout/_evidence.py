"""What the router measures per arm while one revision serves: the evidence guards read.

Each revision starts a fresh :class:`Evidence`, so a canary is judged on what happened at
its current percent. A worker counts what it sees — requests, server errors, a latency
histogram, labels that match the prediction it made, shadow comparisons — and its
background thread adds what is new to the counters that every worker of every server
shares in the database (``DeploymentService.record_evidence``: one atomic ``SET value =
value + :d`` per counter of this deployment, revision and arm). The control loop judges
the **shared totals** (:func:`evidence_from_counts`), so with N workers ``min_samples``
counts all of them and a breach spread thinly over every worker is still seen. Every arm of
the revision is measured alike, the stable one included: relative guards
(``accuracy>=stable-0.02``) compare the arm under test with it. The reward
comes from the shared arm statistics (``ArmStats``), counted from the moment the revision
started serving here (its ``baseline``).

Latency is kept as a histogram with fixed buckets, because histograms add up across
workers where raw samples or percentiles do not: bucket ``k`` holds latencies in
``(2^((k-1)/8), 2^(k/8)]`` ms, eight buckets per doubling. The p99 reported is the upper
edge of the bucket that holds the nearest-rank p99, so it is never below the true value
and less than ``2^(1/8)`` (9.05 %) above it, from 1 µs to 2^20 ms (17.5 min; outside that
range latencies are counted in the first or last bucket).

The event loop writes and the background thread reads, so every access takes one small lock.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.deployments import ArmStats

__all__ = ["Evidence", "evidence_from_counts", "latency_bucket", "bucket_upper_ms",
           "histogram_percentile", "BUCKETS_PER_DOUBLING"]

#: Latency histogram buckets per doubling: each bucket is 2 ** (1/8) ≈ 1.0905 wide.
BUCKETS_PER_DOUBLING = 8
_LOWEST = -10 * BUCKETS_PER_DOUBLING  # 2^-10 ms ≈ 1 µs
_HIGHEST = 20 * BUCKETS_PER_DOUBLING  # 2^20 ms ≈ 17.5 min
_LATENCY = "lat:"


def latency_bucket(ms: float) -> int:
    """The histogram bucket of a latency in milliseconds."""
    if not ms > 0:  # 0, negative, NaN
        return _LOWEST
    k = math.ceil(math.log2(ms) * BUCKETS_PER_DOUBLING)
    return min(_HIGHEST, max(_LOWEST, k))


def bucket_upper_ms(k: int) -> float:
    """The upper edge of bucket ``k``, in milliseconds."""
    return float(2.0 ** (k / BUCKETS_PER_DOUBLING))


def histogram_percentile(buckets: Mapping[int, float], q: float) -> float | None:
    """The upper edge of the bucket holding the nearest-rank ``q``-th percentile."""
    total = sum(buckets.values())
    if total <= 0:
        return None
    rank = max(1.0, math.ceil(q / 100 * total - 1e-9))
    seen = 0.0
    for k in sorted(buckets):
        seen += buckets[k]
        if seen >= rank:
            return bucket_upper_ms(k)
    return bucket_upper_ms(max(buckets))


def evidence_from_counts(counts: Mapping[str, float], stats: ArmStats | None = None,
                         baseline: ArmStats | None = None) -> dict[str, Any]:
    """The evidence guards read, from one arm's counters (this worker's, or the totals every
    worker shared): each guard metric with its ``<metric>_samples`` count, plus the shadow
    comparison when the arm is a shadow."""
    def n(key: str) -> int:
        return int(round(counts.get(key, 0)))

    requests, errors, labelled = n("requests"), n("errors"), n("labelled")
    buckets = {int(key[len(_LATENCY):]): value for key, value in counts.items()
               if key.startswith(_LATENCY) and value > 0}
    latencies = int(round(sum(buckets.values())))
    out: dict[str, Any] = {
        "requests": requests,
        "error_rate": errors / requests if requests else None,
        "error_rate_samples": requests,
        "latency_p99_ms": histogram_percentile(buckets, 99),
        "latency_p99_ms_samples": latencies,
        "accuracy": n("correct") / labelled if labelled else None,
        "accuracy_samples": labelled,
    }
    rewards, reward_sum = _delta(stats, baseline)
    out["reward_mean"] = reward_sum / rewards if rewards > 0 else None
    out["reward_mean_samples"] = rewards
    copies, dropped, rows = n("shadow_copies"), n("shadow_dropped"), n("compared_rows")
    if copies or dropped:
        proba_rows = n("proba_rows")
        out.update({"shadow_copies": copies, "shadow_dropped": dropped,
                    "agreement": n("agreed_rows") / rows if rows else None,
                    "proba_abs_diff": (counts.get("proba_diff_sum", 0.0) / proba_rows
                                       if proba_rows else None),
                    "compared_rows": rows})
    return out


class Evidence:
    """This worker's per-arm counters of one revision, and what it has shared of them.

    Counters: ``requests``, ``errors``, ``labelled``, ``correct``, ``shadow_copies``,
    ``shadow_dropped``, ``compared_rows``, ``agreed_rows``, ``proba_rows``,
    ``proba_diff_sum``, and ``lat:<k>`` per latency bucket; ``share`` says whether the
    background thread adds them to the database (not for a single-arm revision, which
    nothing judges).
    """

    def __init__(self, revision: int = 0, *, share: bool = True) -> None:
        self.revision = revision
        self.share = share
        self._counts: dict[str, defaultdict[str, float]] = {}
        self._shared: dict[str, defaultdict[str, float]] = {}
        self._lock = threading.Lock()

    def _arm(self, arm: str) -> defaultdict[str, float]:
        found = self._counts.get(arm)
        if found is None:
            found = self._counts[arm] = defaultdict(float)
        return found

    # -- recording (the event loop, the feedback thread) ------------------------------------

    def answered(self, arm: str, latency_ms: float) -> None:
        key = f"{_LATENCY}{latency_bucket(latency_ms)}"
        with self._lock:
            counts = self._arm(arm)
            counts["requests"] += 1
            counts[key] += 1

    def failed(self, arm: str) -> None:
        with self._lock:
            counts = self._arm(arm)
            counts["requests"] += 1
            counts["errors"] += 1

    def labelled(self, arm: str, correct: bool) -> None:
        with self._lock:
            counts = self._arm(arm)
            counts["labelled"] += 1
            counts["correct"] += int(correct)

    def compared(self, arm: str, rows: int, agreed: int, proba_rows: int,
                 proba_diff_sum: float) -> None:
        """A shadow copy answered: how many of its rows agree with the primary's."""
        with self._lock:
            counts = self._arm(arm)
            counts["shadow_copies"] += 1
            counts["compared_rows"] += rows
            counts["agreed_rows"] += agreed
            counts["proba_rows"] += proba_rows
            counts["proba_diff_sum"] += proba_diff_sum

    def dropped(self, arm: str) -> None:
        with self._lock:
            self._arm(arm)["shadow_dropped"] += 1

    def shadow_rates(self, arm: str) -> tuple[float | None, float | None]:
        """(agreement, mean absolute probability difference) of a shadow arm here so far."""
        with self._lock:
            c: Mapping[str, float] = self._counts.get(arm, {})
            rows, proba_rows = c.get("compared_rows", 0), c.get("proba_rows", 0)
            return (c.get("agreed_rows", 0) / rows if rows else None,
                    c.get("proba_diff_sum", 0) / proba_rows if proba_rows else None)

    # -- reading and sharing (the background thread) ----------------------------------------

    def arms(self) -> list[str]:
        with self._lock:
            return list(self._counts)

    def counts(self, arm: str) -> dict[str, float]:
        """This worker's counters of ``arm`` (a copy)."""
        with self._lock:
            return dict(self._counts.get(arm, {}))

    def of(self, arm: str, stats: ArmStats | None = None,
           baseline: ArmStats | None = None) -> dict[str, Any]:
        """This worker's evidence for ``arm`` (see :func:`evidence_from_counts`)."""
        return evidence_from_counts(self.counts(arm), stats, baseline)

    def unshared(self) -> dict[str, dict[str, float]]:
        """What was counted since the last :meth:`shared` call: {arm: {counter: delta}}."""
        with self._lock:
            out: dict[str, dict[str, float]] = {}
            for arm, counts in self._counts.items():
                before: Mapping[str, float] = self._shared.get(arm, {})
                delta = {k: v - before.get(k, 0) for k, v in counts.items()
                         if v != before.get(k, 0)}
                if delta:
                    out[arm] = delta
            return out

    def shared(self, deltas: Mapping[str, Mapping[str, float]]) -> None:
        """``deltas`` (from :meth:`unshared`) are in the database now."""
        with self._lock:
            for arm, delta in deltas.items():
                shared = self._shared.setdefault(arm, defaultdict(float))
                for key, value in delta.items():
                    shared[key] += value


def _delta(stats: ArmStats | None, baseline: ArmStats | None) -> tuple[int, float]:
    """Rewards (count, sum) recorded since ``baseline``."""
    if stats is None:
        return 0, 0.0
    if baseline is None:
        return stats.rewards, stats.reward_sum
    return stats.rewards - baseline.rewards, stats.reward_sum - baseline.reward_sum
