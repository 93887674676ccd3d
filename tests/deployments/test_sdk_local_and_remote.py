"""One suite for ``Client().deployments``, run on local stores and against a live server."""

from __future__ import annotations

import pytest

from shipyard import errors
from shipyard.client import Client
from shipyard.deployments import ArmStats, CanaryStrategy, Deployment, Guard

from .conftest import ARMS, CANARY, MODEL, register_versions


@pytest.fixture
def sdk_deployments(sdk_mode: str, request: pytest.FixtureRequest):  # noqa: ANN201
    """The deployment service of the SDK's client, with MODEL registered where it stores."""
    owner = request.getfixturevalue("server_client") if sdk_mode == "remote" else Client()
    register_versions(owner.registry)
    client = Client()
    assert client.is_remote is (sdk_mode == "remote")
    return client.deployments


def test_lifecycle_is_the_same(sdk_deployments) -> None:  # noqa: ANN001
    svc = sdk_deployments
    dep = svc.create("live", MODEL, ARMS, CanaryStrategy(**CANARY),
                     guards=[Guard(metric="error_rate", op="<=", threshold=0.01),
                             {"metric": "latency_p99_ms", "op": "<=", "threshold": 50}])
    assert isinstance(dep, Deployment) and dep.arm("challenger").version == 3
    assert [g.metric for g in dep.guards] == ["error_rate", "latency_p99_ms"]
    assert svc.get("live") == dep and [d.name for d in svc.list()] == ["live"]
    stepped = svc.step("live", evidence={"error_rate": 0.0, "samples": 500}, revision=1)
    assert stepped.strategy.percent == 25
    updated = svc.update("live", guards=[], reason="no guards")
    assert updated.revision == 3 and updated.guards == []
    assert svc.get("live", revision=2).guards != []
    promoted = svc.promote("live", "challenger", evidence={"manual": True})
    assert promoted.status == "promoted"
    decisions = svc.decisions("live")
    assert [d.action for d in decisions] == ["create", "step", "update", "promote"]
    assert decisions[1].evidence == {"error_rate": 0.0, "samples": 500}
    assert decisions[-1].arm == "challenger"


def test_arm_state_and_assignments(sdk_deployments) -> None:  # noqa: ANN001
    svc = sdk_deployments
    svc.create("bandit", MODEL, ARMS, {"kind": "bandit", "arms": ["champion", "challenger"],
                                       "algorithm": "epsilon_greedy", "epsilon": 0.2})
    svc.record_pulls("bandit", {"champion": 5, "challenger": 5})
    svc.record_reward("bandit", "champion", 1.5, success=True)
    svc.record_reward("bandit", "champion", 0.5)
    stats = svc.arm_stats("bandit")
    assert isinstance(stats["champion"], ArmStats)
    assert stats["champion"].model_dump() == {
        "arm": "champion", "pulls": 5, "reward_sum": 2.0, "reward_sq_sum": 2.5,
        "successes": 1.0, "failures": 0.0, "rewards": 2}
    svc.record_rewards("bandit", [("challenger", 1.0, True), ("challenger", 3.0, None),
                                  ("champion", 0.0, False)])
    stats = svc.arm_stats("bandit")
    assert (stats["challenger"].rewards, stats["challenger"].reward_sum) == (2, 4.0)
    assert (stats["champion"].rewards, stats["champion"].failures) == (3, 1.0)
    with pytest.raises(errors.NotFound) as info:
        svc.record_rewards("bandit", [("champion", 1.0, None), ("ghost", 1.0, None)])
    assert info.value.field == "arm" and svc.arm_stats("bandit")["champion"].rewards == 3
    svc.record_evidence("bandit", 1, {"challenger": {"requests": 4, "lat:3": 4}})
    svc.record_evidence("bandit", 1, {"challenger": {"requests": 1, "errors": 1}})
    assert svc.evidence("bandit", 1) == {"challenger": {"requests": 5.0, "lat:3": 4.0,
                                                        "errors": 1.0}}
    svc.record_assignments("bandit", [("pred-1", "challenger", 1)])
    assert svc.assignment_of("pred-1") == ("bandit", "challenger")
    assert svc.assignment_of("pred-2") is None
    assert svc.prune_assignments("bandit", 3600) == 0  # recent: kept
    assert svc.prune_assignments("bandit", 0) == 1
    assert svc.assignment_of("pred-1") is None
    with pytest.raises(errors.InvalidInput) as bad:
        svc.prune_assignments("bandit", -5)
    assert bad.value.field == "older_than_s"


def test_errors_are_the_same_classes_and_fields(sdk_deployments) -> None:  # noqa: ANN001
    svc = sdk_deployments
    with pytest.raises(errors.NotFound) as info:
        svc.get("nope")
    with pytest.raises(errors.InvalidInput) as info:
        svc.create("live", MODEL, ARMS, {**CANARY, "percent": 150})
    assert info.value.field == "strategy.percent"
    with pytest.raises(errors.NotFound) as info:
        svc.create("live", MODEL, {"champion": "@gone"}, {"kind": "single", "arm": "champion"})
    assert info.value.field == "arms.champion"
    svc.create("live", MODEL, ARMS, CANARY)
    with pytest.raises(errors.AlreadyExists):
        svc.create("live", MODEL, ARMS, CANARY)
    with pytest.raises(errors.Conflict):
        svc.step("live", revision=7)
    with pytest.raises(errors.InvalidInput):
        svc.record_reward("live", "champion", float("nan"))
