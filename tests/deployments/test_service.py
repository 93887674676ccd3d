"""The deployment service on SQLite and PostgreSQL: spec, revisions, decisions, audit."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from shipyard import errors
from shipyard.deployments import (
    CanaryStrategy,
    DeploymentService,
    SingleStrategy,
)
from shipyard.store import edges_of, tables

from .conftest import ARMS, CANARY, MODEL


def _events(svc: DeploymentService, name: str) -> list[tuple[str, dict]]:
    ev = tables.audit_events
    with svc.db.read() as conn:
        rows = conn.execute(sa.select(ev.c.action, ev.c.details).where(
            ev.c.object_type == "deployment", ev.c.object_id == name).order_by(ev.c.id))
        return [(r.action, json.loads(r.details or "{}")) for r in rows]


def _counts(svc: DeploymentService) -> dict[str, int]:
    out = {}
    with svc.db.read() as conn:
        for table in (tables.deployments, tables.deployment_revisions,
                      tables.deployment_decisions, tables.deployment_arm_stats,
                      tables.audit_events, tables.lineage_edges):
            out[table.name] = conn.execute(sa.select(sa.func.count()).select_from(table)
                                           ).scalar_one()
    return out


def test_create_pins_refs_and_writes_decision_audit_and_lineage(
        deployments: DeploymentService) -> None:
    dep = deployments.create("live", MODEL, ARMS, CANARY,
                             guards=[{"metric": "error_rate", "op": "<=", "threshold": 0.01}])
    assert [(a.name, a.ref, a.version) for a in dep.arms] == [("champion", "@champion", 1),
                                                             ("challenger", "3", 3)]
    assert isinstance(dep.strategy, CanaryStrategy) and dep.strategy.percent == 10
    assert (dep.revision, dep.status, dep.auto, dep.created_by) == (1, "active", True, "tester")
    assert deployments.get("live") == dep
    assert [d.name for d in deployments.list()] == ["live"]
    [decision] = deployments.decisions("live")
    assert (decision.action, decision.revision, decision.actor) == ("create", 1, "tester")
    [(action, details)] = _events(deployments, "live")
    assert action == "deployment.create" and details["arms"] == {"champion": 1,
                                                                 "challenger": 3}
    with deployments.db.read() as conn:
        edges = edges_of(conn, ("deployment", "live"))
    assert {(e["relation"], e["dst_id"]) for e in edges} == {("deploys", f"{MODEL}/1"),
                                                            ("deploys", f"{MODEL}/3")}
    assert set(deployments.arm_stats("live")) == {"champion", "challenger"}


def test_a_moved_alias_does_not_change_a_pinned_arm(deployments: DeploymentService) -> None:
    deployments.create("live", MODEL, ARMS, CANARY)
    deployments.registry.set_alias(MODEL, "champion", 2)
    assert deployments.get("live").arm("champion").version == 1
    again = deployments.update("live", arms=ARMS, reason="re-pin")
    assert again.arm("champion").version == 2 and again.revision == 2


@pytest.mark.parametrize(("kwargs", "error", "field"), [
    ({"name": "bad name!"}, errors.InvalidInput, "name"),
    ({"model": "nope"}, errors.NotFound, "model"),
    ({"arms": {}}, errors.InvalidInput, "arms"),
    ({"arms": {"9lives": "1"}}, errors.InvalidInput, "arms"),
    ({"arms": {"champion": "@champion", "challenger": "7"}}, errors.NotFound,
     "arms.challenger"),
    ({"arms": {"champion": "@prod", "challenger": "3"}}, errors.NotFound, "arms.champion"),
    ({"arms": {"champion": "no such!", "challenger": "3"}}, errors.InvalidInput,
     "arms.champion"),
    ({"strategy": {**CANARY, "canary": "ghost"}}, errors.InvalidInput, "strategy.canary"),
    ({"strategy": {**CANARY, "stable": "challenger"}}, errors.InvalidInput, "strategy.canary"),
    ({"strategy": {**CANARY, "percent": 101}}, errors.InvalidInput, "strategy.percent"),
    ({"strategy": {**CANARY, "steps": [50, 25]}}, errors.InvalidInput, "strategy.steps"),
    ({"strategy": {"kind": "ab", "weights": {"champion": 1, "challenger": 0}}},
     errors.InvalidInput, "strategy.weights.challenger"),
    ({"strategy": {"kind": "bandit", "arms": ["champion", "challenger"], "epsilon": -0.1}},
     errors.InvalidInput, "strategy.epsilon"),
    ({"strategy": {"kind": "shadow", "primary": "champion", "shadows": ["x"]}},
     errors.InvalidInput, "strategy.shadows"),
    ({"strategy": {"kind": "rainbow"}}, errors.InvalidInput, "strategy.kind"),
    ({"strategy": "canary"}, errors.InvalidInput, "strategy"),
    ({"guards": [{"metric": "cpu", "op": "<=", "threshold": 1}]}, errors.InvalidInput,
     "guards.0.metric"),
    ({"guards": [{"metric": "accuracy", "op": ">=", "threshold": 0.9, "min_samples": -1}]},
     errors.InvalidInput, "guards.0.min_samples"),
])
def test_bad_input_names_the_field_and_writes_nothing(
        deployments: DeploymentService, kwargs: dict, error: type, field: str) -> None:
    before = _counts(deployments)
    args = {"name": "live", "model": MODEL, "arms": ARMS, "strategy": CANARY, **kwargs}
    with pytest.raises(error) as info:
        deployments.create(**args)
    assert info.value.field == field, info.value.message
    assert _counts(deployments) == before


def test_names_are_unique(deployments: DeploymentService) -> None:
    deployments.create("live", MODEL, ARMS, CANARY)
    with pytest.raises(errors.AlreadyExists):
        deployments.create("live", MODEL, ARMS, {"kind": "single", "arm": "champion"})


def test_update_audits_the_diff_and_keeps_every_revision(
        deployments: DeploymentService) -> None:
    deployments.create("live", MODEL, ARMS, CANARY)
    dep = deployments.update("live", strategy={"kind": "ab", "weights": {
        "champion": 70, "challenger": 30}}, auto=False, reason="switch to A/B")
    assert (dep.revision, dep.strategy.kind, dep.auto) == (2, "ab", False)
    action, details = _events(deployments, "live")[-1]
    assert action == "deployment.update" and details["reason"] == "switch to A/B"
    assert set(details["changed"]) == {"strategy", "auto"}
    assert details["changed"]["strategy"]["from"]["kind"] == "canary"
    assert deployments.get("live", revision=1).strategy.kind == "canary"
    with pytest.raises(errors.NotFound):
        deployments.get("live", revision=9)
    with pytest.raises(errors.InvalidInput, match="changes nothing"):
        deployments.update("live", auto=False)
    before = _counts(deployments)
    with pytest.raises(errors.InvalidInput):
        deployments.update("live", strategy={**CANARY, "percent": 500})
    assert _counts(deployments) == before


def test_step_walks_the_canary_and_refuses_a_stale_revision(
        deployments: DeploymentService) -> None:
    deployments.create("live", MODEL, ARMS, CANARY)
    dep = deployments.step("live", evidence={"error_rate": 0.0}, revision=1)
    assert dep.strategy.percent == 25 and dep.revision == 2
    with pytest.raises(errors.Conflict, match="revision 2, not 1"):
        deployments.step("live", evidence={}, revision=1)  # another worker stepped first
    for _ in range(2):
        dep = deployments.step("live", evidence={})
    assert dep.strategy.percent == 100
    with pytest.raises(errors.Conflict, match="last step"):
        deployments.step("live", evidence={})
    steps = [d for d in deployments.decisions("live") if d.action == "step"]
    assert [d.reason for d in steps] == ["canary 10% -> 25%", "canary 25% -> 50%",
                                         "canary 50% -> 100%"]
    assert steps[0].actor == "router" and steps[0].evidence == {"error_rate": 0.0}
    assert deployments.decisions("live", limit=2)[-1].id == steps[-1].id


def test_promote_moves_the_stable_arms_alias(deployments: DeploymentService) -> None:
    deployments.create("live", MODEL, ARMS, CANARY)
    dep = deployments.promote("live", "challenger", evidence={"error_rate": 0.001},
                              actor="router")
    assert dep.status == "promoted" and dep.strategy == SingleStrategy(arm="challenger")
    assert deployments.registry.get_model(MODEL).aliases["champion"] == 3
    decision = deployments.decisions("live")[-1]
    assert decision.action == "promote" and decision.arm == "challenger"
    assert decision.actor == "router" and "champion: v1 -> v3" in decision.reason
    action, details = _events(deployments, "live")[-1]
    assert action == "deployment.promote" and details["decided_by"] == "router"
    assert (details["alias"], details["from"], details["to"]) == ("champion", 1, 3)
    history = deployments.registry.alias_history(MODEL, "champion")
    assert history[-1].to_version == 3 and "promote challenger" in history[-1].reason


def test_a_refused_alias_move_leaves_the_deployment_unchanged(
        deployments: DeploymentService) -> None:
    from shipyard.registry import clear_alias_policies, register_alias_policy

    deployments.create("live", MODEL, ARMS, CANARY)
    before = _counts(deployments)

    def needs_approval(registry: object, name: str, alias: str, old: int | None,
                       new: int | None) -> None:
        raise errors.PermissionDenied(f"{name}@{alias} -> v{new} needs an approval")

    register_alias_policy(needs_approval)
    try:
        with pytest.raises(errors.PermissionDenied):
            deployments.promote("live", "challenger", evidence={"error_rate": 0.0})
    finally:
        clear_alias_policies()
    dep = deployments.get("live")
    assert dep.revision == 1 and dep.status == "active" and dep.strategy.kind == "canary"
    assert deployments.registry.get_model(MODEL).aliases["champion"] == 1
    assert _counts(deployments) == before  # no decision, audit event or alias history


def test_promote_without_an_alias_moves_champion(deployments: DeploymentService) -> None:
    deployments.create("pinned", MODEL, {"a": "1", "b": "2"},
                       {"kind": "ab", "weights": {"a": 1, "b": 1}})
    deployments.promote("pinned", "b")
    assert deployments.registry.get_model(MODEL).aliases["champion"] == 2
    with pytest.raises(errors.InvalidInput) as info:
        deployments.promote("pinned", "zzz")
    assert info.value.field == "arm"


def test_rollback_and_stop(deployments: DeploymentService) -> None:
    deployments.create("live", MODEL, ARMS, CANARY)
    dep = deployments.rollback("live", evidence={"error_rate": 0.2}, actor="router",
                               reason="error_rate breached")
    assert dep.status == "rolled_back" and dep.strategy == SingleStrategy(arm="champion")
    assert deployments.registry.get_model(MODEL).aliases["champion"] == 1  # untouched
    with pytest.raises(errors.Conflict, match="rolled_back"):
        deployments.rollback("live")
    with pytest.raises(errors.Conflict):
        deployments.step("live")
    again = deployments.update("live", strategy=CANARY)  # a new attempt
    assert again.status == "active"
    stopped = deployments.stop("live", reason="done")
    assert stopped.status == "stopped"
    with pytest.raises(errors.Conflict):
        deployments.promote("live", "challenger")
    assert [d.action for d in deployments.decisions("live")] == [
        "create", "rollback", "update", "stop"]
    assert [a for a, _ in _events(deployments, "live")] == [
        "deployment.create", "deployment.rollback", "deployment.update", "deployment.stop"]


def test_unknown_deployments_are_not_found(deployments: DeploymentService) -> None:
    for call in (lambda: deployments.get("nope"), lambda: deployments.decisions("nope"),
                 lambda: deployments.arm_stats("nope"),
                 lambda: deployments.step("nope"), lambda: deployments.rollback("nope"),
                 lambda: deployments.record_reward("nope", "a", 1.0),
                 lambda: deployments.record_pulls("nope", {"a": 1}),
                 lambda: deployments.record_assignments("nope", [("p", "a", 1)])):
        with pytest.raises(errors.NotFound):
            call()


def test_arm_stats_sum_and_assignments_are_remembered(deployments: DeploymentService) -> None:
    deployments.create("bandit", MODEL, ARMS, {"kind": "bandit",
                                               "arms": ["champion", "challenger"]})
    deployments.record_pulls("bandit", {"champion": 3, "challenger": 2})
    deployments.record_pulls("bandit", {"champion": 1, "challenger": 0})
    for reward, success in ((1.0, True), (0.0, False), (0.5, None)):
        deployments.record_reward("bandit", "challenger", reward, success)
    stats = deployments.arm_stats("bandit")
    assert stats["champion"].pulls == 4 and stats["champion"].rewards == 0
    c = stats["challenger"]
    assert (c.pulls, c.rewards, c.reward_sum, c.reward_sq_sum) == (2, 3, 1.5, 1.25)
    assert (c.successes, c.failures) == (1, 1) and c.reward_mean == 0.5
    with pytest.raises(errors.NotFound) as info:
        deployments.record_reward("bandit", "ghost", 1.0)
    assert info.value.field == "arm"
    for bad in (float("nan"), float("inf"), "x"):
        with pytest.raises(errors.InvalidInput):
            deployments.record_reward("bandit", "champion", bad)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidInput):
        deployments.record_pulls("bandit", {"champion": -1})
    deployments.record_assignments("bandit", [("p1", "champion", 1), ("p2", "challenger", 1)])
    deployments.record_assignments("bandit", [("p1", "challenger", 1)])  # first one wins
    assert deployments.assignment_of("p1") == ("bandit", "champion")
    assert deployments.assignment_of("p2") == ("bandit", "challenger")
    assert deployments.assignment_of("p3") is None


def test_old_assignments_are_pruned_per_deployment(deployments: DeploymentService) -> None:
    for name in ("one", "two"):
        deployments.create(name, MODEL, ARMS, {"kind": "ab", "weights": {"champion": 1,
                                                                        "challenger": 1}})
        deployments.record_assignments(name, [(f"{name}-{i}", "champion", 1)
                                              for i in range(7)])
    da = tables.deployment_assignments
    with deployments.db.write() as conn:  # five of each deployment's seven are two hours old
        conn.execute(sa.update(da).where(da.c.prediction_id.in_(
            [f"{n}-{i}" for n in ("one", "two") for i in range(5)])).values(
            time=da.c.time - 2 * 3600 * 1000))
    with pytest.raises(errors.InvalidInput):
        deployments.prune_assignments("one", -1)
    for bad in (float("inf"), float("nan"), "60", True):
        with pytest.raises(errors.InvalidInput) as info:
            deployments.prune_assignments("one", bad)  # type: ignore[arg-type]
        assert info.value.field == "older_than_s"
    with pytest.raises(errors.InvalidInput):
        deployments.prune_assignments("one", 60, batch=0)
    with pytest.raises(errors.InvalidInput):
        deployments.prune_assignments("one", 60, limit=0)
    assert deployments.prune_assignments("one", 3600, batch=2, limit=3) == 3  # stops at 3
    assert deployments.prune_assignments("one", 3600, batch=2) == 2  # the rest
    assert deployments.prune_assignments("one", 3600) == 0
    assert [deployments.assignment_of(f"one-{i}") for i in range(7)] == \
        [None] * 5 + [("one", "champion")] * 2
    assert all(deployments.assignment_of(f"two-{i}") == ("two", "champion")
               for i in range(7))
    assert deployments.prune_assignments("two", 0) == 7


def test_an_arm_added_by_update_gets_state(deployments: DeploymentService) -> None:
    deployments.create("live", MODEL, {"a": "1"}, {"kind": "single", "arm": "a"})
    deployments.update("live", arms={"a": "1", "b": "2"},
                       strategy={"kind": "ab", "weights": {"a": 1, "b": 1}})
    deployments.record_reward("live", "b", 2.0)
    assert deployments.arm_stats("live")["b"].reward_sum == 2.0


def test_record_rewards_is_record_reward_in_one_transaction(
        deployments: DeploymentService) -> None:
    deployments.create("batched", MODEL, ARMS, {"kind": "bandit",
                                                "arms": ["champion", "challenger"]})
    deployments.create("one-by-one", MODEL, ARMS, {"kind": "bandit",
                                                   "arms": ["champion", "challenger"]})
    rows = [("challenger", 1.0, True), ("champion", 0.0, False), ("challenger", 0.5, None),
            ("champion", 3.0, True), ("challenger", -2.0, False)]
    deployments.record_rewards("batched", rows)
    for arm, reward, success in rows:
        deployments.record_reward("one-by-one", arm, reward, success)
    assert deployments.arm_stats("batched") == deployments.arm_stats("one-by-one")
    c = deployments.arm_stats("batched")["challenger"]
    assert (c.rewards, c.reward_sum, c.reward_sq_sum, c.successes, c.failures) == (
        3, -0.5, 5.25, 1, 1)
    deployments.record_rewards("batched", [])  # nothing to do
    before = deployments.arm_stats("batched")
    for bad, field in (([("champion", 1.0, True), ("ghost", 1.0, True)], "arm"),
                       ([("champion", 1.0, None), ("challenger", float("nan"), None)],
                        "rows.1"),
                       ([("champion", 1.0, None), ("challenger", 1.0)], "rows.1"),
                       ([("champion", 1.0, "yes")], "rows.0")):
        with pytest.raises((errors.NotFound, errors.InvalidInput)) as info:
            deployments.record_rewards("batched", bad)  # type: ignore[arg-type]
        assert info.value.field == field
    assert deployments.arm_stats("batched") == before  # a bad batch writes nothing
    with pytest.raises(errors.NotFound):
        deployments.record_rewards("nope", [("champion", 1.0, None)])


def test_evidence_counters_add_up_per_revision(deployments: DeploymentService) -> None:
    deployments.create("guarded", MODEL, ARMS, CANARY)
    deployments.record_evidence("guarded", 1, {"challenger": {"requests": 3, "errors": 1,
                                                              "lat:-3": 2, "lat:12": 1}})
    deployments.record_evidence("guarded", 1, {"challenger": {"requests": 2, "lat:12": 2,
                                                              "errors": 0},
                                               "champion": {"proba_diff_sum": 0.25}})
    deployments.record_evidence("guarded", 2, {"challenger": {"requests": 7}})
    assert deployments.evidence("guarded", 1) == {
        "challenger": {"requests": 5.0, "errors": 1.0, "lat:-3": 2.0, "lat:12": 3.0},
        "champion": {"proba_diff_sum": 0.25}}
    assert deployments.evidence("guarded", 2) == {"challenger": {"requests": 7.0}}
    assert deployments.evidence("guarded", 3) == {}
    for counts, field in (({"challenger": {"requests": -1}}, "counts.challenger.requests"),
                          ({"challenger": {"Requests!": 1}}, "counts.challenger"),
                          ({"challenger": {"requests": float("inf")}},
                           "counts.challenger.requests"),
                          ({"no such arm!": {"requests": 1}}, "counts")):
        with pytest.raises(errors.InvalidInput) as info:
            deployments.record_evidence("guarded", 1, counts)
        assert info.value.field == field
    with pytest.raises(errors.InvalidInput) as info:
        deployments.record_evidence("guarded", 0, {})
    assert info.value.field == "revision"
    with pytest.raises(errors.NotFound):
        deployments.record_evidence("nope", 1, {"a": {"requests": 1}})
    with pytest.raises(errors.NotFound):
        deployments.evidence("nope", 1)
    assert deployments.evidence("guarded", 1)["challenger"]["requests"] == 5.0  # unchanged


# -- relative guards ----------------------------------------------------------------------------

RELATIVE_CANARY = {**CANARY, "steps": [10, 25, 50]}  # ends below 100: stable keeps serving
NO_WORSE = {"metric": "accuracy", "op": ">=", "threshold": -0.02, "compare": "difference"}


@pytest.mark.parametrize(("kwargs", "field", "message"), [
    ({"guards": [{**NO_WORSE, "compare": "relative"}]}, "guards.0.compare",
     "unknown comparison 'relative'"),
    ({"guards": [{**NO_WORSE, "compare": "ratio", "threshold": 0}]}, "guards.0.threshold",
     "must be above 0"),
    ({"guards": [{**NO_WORSE, "threshold": float("inf")}]}, "guards.0.threshold",
     "finite"),
    ({"strategy": CANARY, "guards": [{"metric": "error_rate", "op": "<=", "threshold": 0.1},
                                     NO_WORSE]},
     "guards.1", "once the canary reaches 100%"),
    ({"strategy": {**CANARY, "steps": [], "percent": 100}, "guards": [NO_WORSE]},
     "guards.0", "once the canary reaches 100%"),
    ({"arms": {"base": "1", "champion": "@champion", "challenger": "3"},
      "strategy": {"kind": "ab", "weights": {"champion": 1, "challenger": 1}},
      "guards": [NO_WORSE]}, "guards.0", "stable arm 'base'"),
])
def test_bad_relative_guards_name_the_field_and_write_nothing(
        deployments: DeploymentService, kwargs: dict, field: str, message: str) -> None:
    before = _counts(deployments)
    args = {"name": "live", "model": MODEL, "arms": ARMS, "strategy": RELATIVE_CANARY,
            **kwargs}
    with pytest.raises(errors.InvalidInput) as info:
        deployments.create(**args)
    assert info.value.field == field and message in info.value.message, info.value.message
    assert _counts(deployments) == before


def test_relative_guards_are_stored_and_an_update_to_100_percent_is_refused(
        deployments: DeploymentService) -> None:
    dep = deployments.create("live", MODEL, ARMS, RELATIVE_CANARY, guards=[
        NO_WORSE, {"metric": "latency_p99_ms", "op": "<=", "threshold": 1.5,
                   "compare": "ratio", "min_samples": 30}])
    assert [str(g) for g in deployments.get("live").guards] == [
        "accuracy>=stable-0.02", "latency_p99_ms<=stable*1.5"]
    assert deployments.get("live") == dep
    before = _counts(deployments)
    with pytest.raises(errors.InvalidInput) as info:
        deployments.update("live", strategy={**RELATIVE_CANARY, "percent": 100})
    assert info.value.field == "guards.0"
    assert _counts(deployments) == before
    rolled = deployments.rollback("live", evidence={}, actor="tester")
    assert rolled.guards == dep.guards  # a single arm keeps its guards; nothing judges it


def test_a_deployment_stored_before_relative_guards_reads_and_updates(
        deployments: DeploymentService) -> None:
    """Strip ``compare`` from the stored JSON, as a deployment written by an older
    Shipyard has it: it reads as absolute guards, and updates cleanly."""
    deployments.create("old", MODEL, ARMS, CANARY, guards=[
        {"metric": "accuracy", "op": ">=", "threshold": 0.7, "min_samples": 25}])
    with deployments.db.write() as conn:
        for table in (tables.deployments, tables.deployment_revisions):
            key = table.c.name if table is tables.deployments else table.c.deployment
            for row in conn.execute(sa.select(key, table.c.spec_json).where(key == "old")):
                spec = json.loads(row.spec_json)
                for guard in spec["guards"]:
                    del guard["compare"]
                conn.execute(sa.update(table).where(key == "old").values(
                    spec_json=json.dumps(spec)))
    dep = deployments.get("old")
    assert [(g.compare, str(g)) for g in dep.guards] == [("absolute", "accuracy>=0.7")]
    assert deployments.get("old", revision=1).guards == dep.guards
    updated = deployments.update("old", strategy=RELATIVE_CANARY, guards=[NO_WORSE])
    assert updated.revision == 2 and updated.guards[0].relative
