"""The control decision, branch by branch (pure: no server, no database)."""

from __future__ import annotations

from typing import Any

from shipyard.deployments import Deployment, Guard
from shipyard.rollout import decide

NOW = 1_000_000
ERR = Guard(metric="error_rate", op="<=", threshold=0.05, min_samples=20)


def deployment(strategy: dict[str, Any], guards: list[Guard] | None = None, *,
               auto: bool = True, status: str = "active", updated_at: int = NOW - 60_000,
               arms: tuple[str, ...] = ("stable", "canary")) -> Deployment:
    return Deployment(name="d", model="m", arms=[{"name": a, "ref": str(i + 1),
                                                  "version": i + 1}
                                                 for i, a in enumerate(arms)],
                      strategy=strategy, guards=guards if guards is not None else [ERR],
                      auto=auto, revision=3, status=status, created_at=0,
                      updated_at=updated_at, created_by="me")


def canary(percent: float = 10, steps: list[float] | None = None,
           interval: float = 30) -> dict[str, Any]:
    return {"kind": "canary", "stable": "stable", "canary": "canary", "percent": percent,
            "steps": steps if steps is not None else [10, 50, 100],
            "step_interval_s": interval}


def errors(rate: float | None, n: int) -> dict[str, Any]:
    return {"error_rate": rate, "error_rate_samples": n}


def test_a_canary_breach_rolls_back_to_stable_at_once() -> None:
    action = decide(deployment(canary(), updated_at=NOW), {"canary": errors(0.2, 50)}, NOW)
    assert action is not None and (action.kind, action.arm) == ("rollback", "stable")
    assert "error_rate<=0.05: breached" in action.reason
    assert action.evidence["arms"]["canary"]["error_rate"] == 0.2
    assert action.evidence["revision"] == 3 and action.evidence["breached_arm"] == "canary"


def test_a_canary_waits_for_samples_and_for_its_interval() -> None:
    dep = deployment(canary())
    assert decide(dep, {"canary": errors(0.0, 5)}, NOW) is None  # 5 of 20 samples
    assert decide(deployment(canary(), updated_at=NOW - 1_000),
                  {"canary": errors(0.0, 50)}, NOW) is None  # 1 s of 30
    action = decide(dep, {"canary": errors(0.0, 50)}, NOW)
    assert action is not None and action.kind == "step" and "stepping to 50%" in action.reason


def test_a_canary_holding_at_its_last_step_is_promoted() -> None:
    action = decide(deployment(canary(100)), {"canary": errors(0.01, 50)}, NOW)
    assert action is not None and (action.kind, action.arm) == ("promote", "canary")
    unguarded = decide(deployment(canary(100), []), {}, NOW)
    assert unguarded is not None and unguarded.kind == "promote"


def test_nothing_is_decided_for_manual_finished_or_single_deployments() -> None:
    breach = {"canary": errors(0.9, 100)}
    assert decide(deployment(canary(), auto=False), breach, NOW) is None
    assert decide(deployment(canary(), status="rolled_back"), breach, NOW) is None
    assert decide(deployment({"kind": "single", "arm": "stable"}), breach, NOW) is None


def test_shadow_is_stopped_on_a_breach_and_promoted_when_it_holds() -> None:
    dep = deployment({"kind": "shadow", "primary": "stable", "shadows": ["canary"]})
    breach = decide(dep, {"canary": errors(0.5, 40)}, NOW)
    assert breach is not None and breach.kind == "rollback"
    holds = decide(dep, {"canary": errors(0.0, 40)}, NOW)
    assert holds is not None and (holds.kind, holds.arm) == ("promote", "canary")
    assert decide(deployment({"kind": "shadow", "primary": "stable", "shadows": ["canary"]},
                             []), {"canary": errors(0.0, 40)}, NOW) is None


def test_ab_and_bandit_arms_roll_back_but_are_never_promoted() -> None:
    arms = ("a", "b", "c")
    ab = deployment({"kind": "ab", "weights": {"a": 1, "b": 1, "c": 1}}, arms=arms)
    assert decide(ab, {"b": errors(0.0, 99), "c": errors(0.0, 99)}, NOW) is None
    action = decide(ab, {"b": errors(0.0, 99), "c": errors(0.3, 99)}, NOW)
    assert action is not None and (action.kind, action.arm) == ("rollback", "a")
    # the stable arm itself is not under test
    assert decide(ab, {"a": errors(0.9, 99)}, NOW) is None
    bandit = deployment({"kind": "bandit", "arms": ["a", "b"]}, arms=("a", "b"))
    assert decide(bandit, {"b": errors(0.0, 99)}, NOW) is None


def test_feedback_guards_use_their_own_sample_counts() -> None:
    guard = Guard(metric="reward_mean", op=">=", threshold=0.5, min_samples=10)
    dep = deployment(canary(100), [guard])
    low = {"canary": {"reward_mean": 0.2, "reward_mean_samples": 12, **errors(0.0, 500)}}
    found = decide(dep, low, NOW)
    assert found is not None and found.kind == "rollback"
    early = {"canary": {"reward_mean": 0.2, "reward_mean_samples": 3}}
    assert decide(dep, early, NOW) is None


# -- relative guards: judged against the stable arm's evidence -----------------------------------

NO_WORSE = Guard(metric="accuracy", op=">=", threshold=-0.02, min_samples=20,
                 compare="difference")


def accuracy(value: float | None, n: int) -> dict[str, Any]:
    return {"accuracy": value, "accuracy_samples": n}


def test_a_canary_worse_than_stable_is_rolled_back_with_both_arms_evidence() -> None:
    dep = deployment(canary(50, [50]), [NO_WORSE])
    evidence = {"stable": accuracy(0.85, 300), "canary": accuracy(0.77, 100)}
    action = decide(dep, evidence, NOW)
    assert action is not None and (action.kind, action.arm) == ("rollback", "stable")
    assert action.reason == ("canary breached its guards: accuracy>=stable-0.02: breached "
                             "(canary 0.770 vs stable 0.850 over 100/300 samples, "
                             "difference -0.080)")
    assert action.evidence["stable_arm"] == "stable"
    assert action.evidence["arms"]["stable"]["accuracy"] == 0.85
    assert action.evidence["arms"]["canary"]["accuracy"] == 0.77
    within = decide(dep, {"stable": accuracy(0.85, 300), "canary": accuracy(0.84, 100)}, NOW)
    assert within is not None and (within.kind, within.arm) == ("promote", "canary")
    assert "holds (canary 0.840 vs stable 0.850" in within.reason


def test_a_relative_guard_waits_for_the_stable_arms_samples() -> None:
    dep = deployment(canary(50, [50]), [NO_WORSE])
    assert decide(dep, {"stable": accuracy(0.99, 5), "canary": accuracy(0.1, 500)}, NOW) \
        is None
    assert decide(dep, {"canary": accuracy(0.1, 500)}, NOW) is None  # no stable evidence


def test_the_baseline_is_the_shadows_primary_and_the_first_ab_or_bandit_arm() -> None:
    shadow = deployment({"kind": "shadow", "primary": "stable", "shadows": ["canary"]},
                        [NO_WORSE])
    worse = decide(shadow, {"stable": accuracy(0.9, 50), "canary": accuracy(0.8, 50)}, NOW)
    assert worse is not None and worse.kind == "rollback"
    assert "canary 0.800 vs stable 0.900" in worse.reason
    arms = ("a", "b", "c")
    ab = deployment({"kind": "ab", "weights": {"a": 1, "b": 1, "c": 1}}, [NO_WORSE],
                    arms=arms)
    fine = {"a": accuracy(0.7, 50), "b": accuracy(0.69, 50), "c": accuracy(0.71, 50)}
    assert decide(ab, fine, NOW) is None  # an A/B test is never promoted automatically
    action = decide(ab, {**fine, "c": accuracy(0.6, 50)}, NOW)
    assert action is not None and (action.kind, action.arm) == ("rollback", "a")
    assert action.evidence["breached_arm"] == "c" and "c 0.600 vs a 0.700" in action.reason
    bandit = deployment({"kind": "bandit", "arms": ["a", "b"]}, [NO_WORSE], arms=("a", "b"))
    action = decide(bandit, {"a": accuracy(0.7, 50), "b": accuracy(0.5, 50)}, NOW)
    assert action is not None and action.kind == "rollback" and "b 0.500 vs a 0.700" in \
        action.reason
