"""Guard evidence: the latency histogram's p99 bound, the counts a worker shares, and a
control loop that judges what every router of a deployment saw."""

from __future__ import annotations

import math
import random

import pytest

from shipyard.client import Client
from shipyard.rollout._evidence import (
    Evidence,
    bucket_upper_ms,
    evidence_from_counts,
    histogram_percentile,
    latency_bucket,
)

from .conftest import register, row, serving
from .models import Constant, FailsOnOld

KEY = "X-Shipyard-Routing-Key"
STEP = 2 ** (1 / 8)  # one bucket's width, as a factor


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


@pytest.mark.parametrize("seed", range(5))
def test_the_p99_is_the_true_one_rounded_up_by_less_than_a_bucket(seed: int) -> None:
    rng = random.Random(seed)
    latencies = [rng.lognormvariate(1.0, 1.2) for _ in range(rng.randint(1, 3000))]
    buckets: dict[int, float] = {}
    for ms in latencies:
        buckets[latency_bucket(ms)] = buckets.get(latency_bucket(ms), 0) + 1
    estimate = histogram_percentile(buckets, 99)
    true = nearest_rank(latencies, 99)
    assert estimate is not None and true <= estimate < true * STEP


def test_bucket_edges() -> None:
    assert bucket_upper_ms(latency_bucket(1.0)) == 1.0  # an edge is in the bucket below it
    assert bucket_upper_ms(latency_bucket(1.0001)) == pytest.approx(STEP)
    assert bucket_upper_ms(latency_bucket(0.0)) == 2.0 ** -10  # clamped to 1 µs
    assert bucket_upper_ms(latency_bucket(1e12)) == 2.0 ** 20  # clamped to 17.5 min
    assert histogram_percentile({}, 99) is None


def test_a_worker_shares_only_what_is_new() -> None:
    evidence = Evidence(3)
    evidence.answered("a", 2.0)
    evidence.failed("a")
    evidence.compared("s", rows=4, agreed=3, proba_rows=4, proba_diff_sum=0.5)
    first = evidence.unshared()
    assert first == {"a": {"requests": 2, "lat:8": 1, "errors": 1},
                     "s": {"shadow_copies": 1, "compared_rows": 4, "agreed_rows": 3,
                           "proba_rows": 4, "proba_diff_sum": 0.5}}
    assert evidence.unshared() == first  # not written yet: offered again
    evidence.shared(first)
    assert evidence.unshared() == {}
    evidence.answered("a", 2.0)
    evidence.labelled("a", correct=True)
    assert evidence.unshared() == {"a": {"requests": 1, "lat:8": 1, "labelled": 1,
                                         "correct": 1}}
    local = evidence.of("a")
    assert (local["requests"], local["error_rate"], local["latency_p99_ms"]) == (3, 1 / 3, 2.0)


def test_evidence_from_totals() -> None:
    totals = {"requests": 200.0, "errors": 3.0, "labelled": 10.0, "correct": 9.0,
              **{f"lat:{k}": 1.0 for k in range(1, 101)}, "lat:-80": 0.0}
    out = evidence_from_counts(totals)
    assert out["error_rate"] == 0.015 and out["error_rate_samples"] == 200
    assert out["latency_p99_ms_samples"] == 100
    assert out["latency_p99_ms"] == bucket_upper_ms(99)
    assert (out["accuracy"], out["accuracy_samples"]) == (0.9, 10)
    assert out["reward_mean"] is None and "agreement" not in out


def test_a_breach_spread_over_two_routers_is_seen_by_either(client: Client) -> None:
    """Two routers of one canary (as two worker processes): neither alone reaches the
    guard's min_samples, together they do — the control loop judges the shared totals."""
    register(client, "spread", Constant(0), FailsOnOld(1))
    client.deployments.create(
        "spread", "spread", {"stable": "1", "canary": "2"},
        {"kind": "canary", "stable": "stable", "canary": "canary", "percent": 100},
        guards=[{"metric": "error_rate", "op": "<=", "threshold": 0.05, "min_samples": 30}])
    with serving("spread", client, start=False) as (first, a), \
            serving("spread", client, start=False) as (second, b):
        for i in range(20):  # 20 canary requests each, half of them failing
            for http in (first, second):
                http.post("/predict", json=row(age=70 if i % 2 else 30), headers={KEY: f"{i}"})
        assert a.describe()["evidence"]["canary"]["requests"] == 20
        b.worker.share_evidence()  # b's counts reach the database (its flush)
        assert a.worker.control() == "rollback"
        assert a.view.revision == 2  # a switched to the rollback it decided
    last = client.deployments.decisions("spread")[-1]
    assert last.action == "rollback" and "error_rate" in last.reason
    canary = last.evidence["arms"]["canary"]
    assert canary["error_rate_samples"] == 40 and canary["error_rate"] == 0.5
    assert canary["latency_p99_ms_samples"] == 20  # the answered ones


def test_without_the_other_routers_counts_the_guard_waits(client: Client) -> None:
    register(client, "alone", Constant(0), FailsOnOld(1))
    client.deployments.create(
        "alone", "alone", {"stable": "1", "canary": "2"},
        {"kind": "canary", "stable": "stable", "canary": "canary", "percent": 100},
        guards=[{"metric": "error_rate", "op": "<=", "threshold": 0.05, "min_samples": 30}])
    with serving("alone", client, start=False) as (http, router):
        for i in range(20):
            http.post("/predict", json=row(age=70 if i % 2 else 30), headers={KEY: f"{i}"})
        assert router.worker.control() is None  # 20 < min_samples: hold
        assert router.describe()["shared_evidence"]["canary"]["error_rate_samples"] == 20
        assert client.deployments.evidence("alone", 1)["canary"]["requests"] == 20
