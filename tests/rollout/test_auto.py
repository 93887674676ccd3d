"""Automatic decisions through the live router: rollback on a breach, step up and promote
when the canary holds — each recorded with its evidence."""

from __future__ import annotations

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
