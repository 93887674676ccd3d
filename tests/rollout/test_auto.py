"""Automatic decisions through the live router: rollback on a breach, step up and promote
when the canary holds — each recorded with its evidence."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from shipyard.client import Client

from .conftest import register, row, serving, wait_for
from .models import Constant, FailsOnOld

KEY = "X-Shipyard-Routing-Key"

if TYPE_CHECKING:
    from starlette.testclient import TestClient


def drive(http: TestClient, client: Client, name: str, status: str,
          age: int = 30) -> list[int]:
    """Send keyed traffic until the deployment reaches ``status``; the status codes seen."""
    codes: list[int] = []

    def reached() -> bool:
        for i in range(10):
            codes.append(http.post("/predict", json=row(age=age),
                                   headers={KEY: f"user-{len(codes)}-{i}"}).status_code)
        return client.deployments.get(name).status == status

    wait_for(reached, timeout=60, what=f"deployment {name} to be {status}")
    return codes


def test_a_canary_that_errors_is_rolled_back_with_its_evidence(client: Client) -> None:
    register(client, "risky", Constant(0), FailsOnOld(1))
    client.registry.set_alias("risky", "champion", 1)
    client.deployments.create(
        "risky-canary", "risky", {"stable": "@champion", "canary": "2"},
        {"kind": "canary", "stable": "stable", "canary": "canary", "percent": 50,
         "steps": [50, 100], "step_interval_s": 0},
        guards=[{"metric": "error_rate", "op": "<=", "threshold": 0.05, "min_samples": 10}])
    with serving("risky-canary", client) as (http, router):
        codes = drive(http, client, "risky-canary", "rolled_back", age=70)
        assert 500 in codes  # the canary's errors reached some callers…
        wait_for(lambda: router.view.deployment.status == "rolled_back", what="the switch")
        after = [http.post("/predict", json=row(age=70), headers={KEY: f"late-{i}"})
                 for i in range(20)]
    assert {(r.status_code, r.json()["model_version"]) for r in after} == {(200, 1)}
    dep = client.deployments.get("risky-canary")
    assert dep.strategy.kind == "single" and dep.stable_arm == "stable"
    last = client.deployments.decisions("risky-canary")[-1]
    assert (last.action, last.actor, last.arm) == ("rollback", "router", "stable")
    assert "canary breached" in last.reason and "error_rate" in last.reason
    canary = last.evidence["arms"]["canary"]
    assert canary["error_rate"] > 0.05 and canary["error_rate_samples"] >= 10
    assert last.evidence["arms"]["stable"]["error_rate"] == 0.0
    assert last.evidence["breached_arm"] == "canary" and last.evidence["revision"] == 1
    assert client.registry.get_model("risky").aliases["champion"] == 1  # not moved


def test_a_slow_canary_breaches_a_latency_guard(client: Client, credit: str) -> None:
    client.deployments.create(
        "slow", credit, {"stable": "1", "canary": "2"},
        {"kind": "canary", "stable": "stable", "canary": "canary", "percent": 50},
        guards=[{"metric": "latency_p99_ms", "op": "<=", "threshold": 0.0001,
                 "min_samples": 5}])
    with serving("slow", client) as (http, _):
        drive(http, client, "slow", "rolled_back")
    last = client.deployments.decisions("slow")[-1]
    assert last.action == "rollback" and "latency_p99_ms" in last.reason
    assert last.evidence["arms"]["canary"]["latency_p99_ms"] > 0.0001


def test_a_healthy_canary_steps_up_and_is_promoted(client: Client, credit: str) -> None:
    client.deployments.create(
        "healthy", credit, {"stable": "@champion", "canary": "2"},
        {"kind": "canary", "stable": "stable", "canary": "canary", "percent": 10,
         "steps": [10, 50, 100], "step_interval_s": 0},
        guards=[{"metric": "error_rate", "op": "<=", "threshold": 0.01, "min_samples": 5}])
    with serving("healthy", client) as (http, router):
        codes = drive(http, client, "healthy", "promoted")
        wait_for(lambda: router.view.deployment.status == "promoted", what="the switch")
        after = {http.post("/predict", json=row(), headers={KEY: f"k{i}"}).json()[
            "model_version"] for i in range(20)}
    assert set(codes) == {200} and after == {2}
    decisions = client.deployments.decisions("healthy")
    assert [d.action for d in decisions] == ["create", "step", "step", "promote"]
    assert [d.revision for d in decisions] == [1, 2, 3, 4]
    step = decisions[1]
    assert step.actor == "router" and "stepping to 50%" in step.reason
    assert step.evidence["arms"]["canary"]["error_rate_samples"] >= 5
    assert decisions[-1].arm == "canary" and "last step (100%)" in decisions[-1].reason
    assert client.registry.get_model("credit").aliases["champion"] == 2  # the alias moved


def test_a_manual_deployment_is_never_decided_for(client: Client, credit: str) -> None:
    client.deployments.create(
        "by-hand", credit, {"stable": "1", "canary": "2"},
        {"kind": "canary", "stable": "stable", "canary": "canary", "percent": 50,
         "step_interval_s": 0},
        guards=[{"metric": "latency_p99_ms", "op": "<=", "threshold": 0.0001,
                 "min_samples": 1}], auto=False)
    with serving("by-hand", client) as (http, router):
        for i in range(30):
            http.post("/predict", json=row(), headers={KEY: f"k{i}"})
        assert router.worker.control() is None
    assert [d.action for d in client.deployments.decisions("by-hand")] == ["create"]


@pytest.mark.parametrize("kind", ["ab", "bandit"])
def test_an_ab_or_bandit_arm_that_breaches_is_rolled_back(client: Client, kind: str) -> None:
    register(client, "multi", Constant(0), FailsOnOld(1))
    strategy = {"kind": "ab", "weights": {"a": 1, "b": 1}} if kind == "ab" else {
        "kind": "bandit", "arms": ["a", "b"]}
    client.deployments.create(
        f"multi-{kind}", "multi", {"a": "1", "b": "2"}, strategy,
        guards=[{"metric": "error_rate", "op": "<=", "threshold": 0.1, "min_samples": 5}])
    with serving(f"multi-{kind}", client) as (http, _):
        drive(http, client, f"multi-{kind}", "rolled_back", age=70)
    dep = client.deployments.get(f"multi-{kind}")
    assert dep.strategy.kind == "single" and dep.strategy.arm == "a"
    assert client.deployments.decisions(f"multi-{kind}")[-1].evidence["breached_arm"] == "b"


def test_two_workers_reaching_one_decision_apply_it_once(client: Client) -> None:
    """Both routers see the breach on their own traffic; the revision lock lets one act."""
    from shipyard.rollout import RouterOptions

    register(client, "twice", Constant(0), FailsOnOld(1))
    client.deployments.create(
        "twice", "twice", {"stable": "1", "canary": "2"},
        {"kind": "canary", "stable": "stable", "canary": "canary", "percent": 50},
        guards=[{"metric": "error_rate", "op": "<=", "threshold": 0.05, "min_samples": 5}])
    idle = RouterOptions(refresh_interval=3600, control_interval=3600, flush_interval=0.05)
    with serving("twice", client, idle) as (first, a), serving("twice", client, idle) as (
            second, b):
        for i in range(40):
            for http in (first, second):
                http.post("/predict", json=row(age=70), headers={KEY: f"k{i}"})
        assert a.worker.control() == "rollback"
        assert b.view.revision == 1  # b has not seen it: it decides the same …
        assert b.worker.control() is None  # … and is refused (the revision moved)
        b.worker.refresh()
        assert b.view.revision == 2 and b.view.deployment.status == "rolled_back"
    actions = [d.action for d in client.deployments.decisions("twice")]
    assert actions == ["create", "rollback"]


def drive_with_feedback(http: TestClient, client: Client, name: str, status: str,
                        wrong: dict[int, Callable[[int], bool]]) -> Counter[int]:
    """Send keyed traffic, and for each answer a label: the prediction, except for the
    ``k``-th answer of version ``v`` where ``wrong[v](k)`` — so each arm's accuracy is set
    by the test. Until the deployment reaches ``status``; the answers per version."""
    answered: Counter[int] = Counter()

    def reached() -> bool:
        for _ in range(10):
            body = http.post("/predict", json=row(),
                             headers={KEY: f"user-{sum(answered.values())}"}).json()
            version, [prediction] = body["model_version"], body["predictions"]
            label = 1 - prediction if wrong[version](answered[version]) else prediction
            answered[version] += 1
            assert http.post("/feedback", json={"prediction_id": body["prediction_ids"][0],
                                                "label": label}).status_code == 200
        return client.deployments.get(name).status == status

    wait_for(reached, timeout=60, what=f"deployment {name} to be {status}")
    return answered


#: The canary may be up to 0.15 less accurate than the stable arm (0.15, not less: each arm's
#: accuracy so far wobbles around its long-run value by a few hundredths).
RELATIVE = {"metric": "accuracy", "op": ">=", "threshold": -0.15, "compare": "difference",
            "min_samples": 20}


def test_a_canary_less_accurate_than_stable_beyond_the_margin_is_rolled_back(
        client: Client, credit: str) -> None:
    """The canary's accuracy (0.6) would pass an absolute accuracy>=0.5; against the stable
    arm's 1.0 it is 0.4 worse, beyond the 0.15 margin: rolled back, both numbers recorded."""
    client.deployments.create(
        "worse", credit, {"stable": "1", "canary": "2"},
        {"kind": "canary", "stable": "stable", "canary": "canary", "percent": 50,
         "steps": [50], "step_interval_s": 0}, guards=[RELATIVE])
    with serving("worse", client) as (http, router):
        answered = drive_with_feedback(http, client, "worse", "rolled_back", {
            1: lambda k: False, 2: lambda k: k % 5 in (1, 3)})
        wait_for(lambda: router.view.deployment.status == "rolled_back", what="the switch")
    assert answered[1] >= 20 and answered[2] >= 20
    last = client.deployments.decisions("worse")[-1]
    assert (last.action, last.actor, last.arm) == ("rollback", "router", "stable")
    assert "accuracy>=stable-0.15: breached (canary 0." in last.reason
    assert "vs stable 1.000 over" in last.reason
    arms = last.evidence["arms"]
    assert arms["stable"]["accuracy"] == 1.0 and arms["stable"]["accuracy_samples"] >= 20
    assert arms["canary"]["accuracy"] < 0.9 and arms["canary"]["accuracy_samples"] >= 20
    assert last.evidence["stable_arm"] == "stable"
    assert client.registry.get_model(credit).aliases["champion"] == 1


def test_a_canary_within_the_margin_of_stable_is_promoted(client: Client,
                                                         credit: str) -> None:
    """Both arms are mediocre (stable 0.6, canary 0.55): an absolute accuracy>=0.7 would
    roll the canary back, but it is within 0.15 of what serves now, so it is promoted."""
    client.deployments.create(
        "close", credit, {"stable": "@champion", "canary": "2"},
        {"kind": "canary", "stable": "stable", "canary": "canary", "percent": 50,
         "steps": [50], "step_interval_s": 0}, guards=[RELATIVE])
    with serving("close", client) as (http, router):
        drive_with_feedback(http, client, "close", "promoted", {
            1: lambda k: k % 5 in (1, 3),  # 2 in 5 wrong
            2: lambda k: (k + 1) * 9 // 20 > k * 9 // 20})  # 9 in 20 wrong, spread out
        wait_for(lambda: router.view.deployment.status == "promoted", what="the switch")
    decisions = client.deployments.decisions("close")
    assert [d.action for d in decisions] == ["create", "promote"]
    last = decisions[-1]
    assert (last.actor, last.arm) == ("router", "canary")
    assert "accuracy>=stable-0.15: holds (canary 0." in last.reason
    arms = last.evidence["arms"]
    assert 0.5 <= arms["stable"]["accuracy"] <= 0.7 and arms["stable"]["accuracy_samples"] >= 20
    assert 0.45 <= arms["canary"]["accuracy"] <= 0.65
    assert client.registry.get_model(credit).aliases["champion"] == 2
