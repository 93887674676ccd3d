"""The control decision: from a deployment and the evidence per arm to step, promote,
rollback or nothing. Pure, so every branch is tested without a server.

- **canary**: the canary arm is judged by the guards. A breach rolls back at once. When
  every guard holds (each with its ``min_samples``) and ``step_interval_s`` has passed
  since the last change, the canary steps to its next percent, or, at the last step, is
  promoted. With no guards it simply steps on schedule and is promoted at the end.
- **shadow**: each shadow arm is judged on its copies of the traffic. A breach stops the
  shadowing (rollback); with guards that all hold, a single shadow is promoted.
- **ab** and **bandit**: every arm but the stable one (the first declared) is judged; a
  breach rolls back to the stable arm. Neither is promoted automatically: an A/B test ends
  with an analysis (``shipyard deployments analyze``), and a bandit keeps optimising.
- **single**, a stopped/promoted/rolled-back deployment, or ``auto`` off: nothing.

Relative guards (``accuracy>=stable-0.02``) compare each judged arm with the stable arm
(``Deployment.stable_arm``: the canary's stable, the shadow's primary, the first declared
arm of an A/B test or bandit), whose evidence is passed along, and wait until both have
their ``min_samples``.

The router executes the action through the deployment service with ``revision`` as an
optimistic lock, so of several workers deciding at once exactly one applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shipyard.deployments import (
    CanaryStrategy,
    Deployment,
    GuardResult,
    ShadowStrategy,
    SingleStrategy,
    evaluate_guards,
)

from ._strategies import serving_arms, shadow_arms

__all__ = ["Action", "decide", "arms_under_test", "judged"]

Evidence = Mapping[str, Any]


@dataclass(frozen=True)
class Action:
    """A change the router makes: ``kind`` on ``arm``, with why and on what evidence."""

    kind: Literal["step", "promote", "rollback"]
    arm: str | None
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


def arms_under_test(dep: Deployment) -> list[str]:
    """The arms the guards judge: the canary, the shadows, or every non-stable arm."""
    s = dep.strategy
    if isinstance(s, SingleStrategy):
        return []
    if isinstance(s, CanaryStrategy):
        return [s.canary] if s.canary != s.stable else []
    if isinstance(s, ShadowStrategy):
        return shadow_arms(s)
    return [a for a in serving_arms(s) if a != dep.stable_arm]


def judged(dep: Deployment) -> bool:
    """Whether :func:`decide` may act on ``dep`` at all (else no evidence is needed)."""
    if not dep.auto or dep.status != "active" or not arms_under_test(dep):
        return False
    return bool(dep.guards) or isinstance(dep.strategy, CanaryStrategy)


def decide(dep: Deployment, evidence: Mapping[str, Evidence], now_ms: int) -> Action | None:
    """What to do now with ``dep`` given ``evidence`` per arm (``now_ms``: epoch millis)."""
    if not judged(dep):
        return None
    s = dep.strategy
    tested = arms_under_test(dep)
    stable = _numbers(evidence.get(dep.stable_arm, {}))
    results = {arm: evaluate_guards(dep.guards, _numbers(evidence.get(arm, {})),
                                    stable=stable, arm=arm, stable_arm=dep.stable_arm)
               for arm in tested}
    record = _record(dep, evidence, results)
    for arm, result in results.items():
        if result.action == "rollback":
            breaches = [r for r in result.reasons if "breached" in r]
            return Action("rollback", dep.stable_arm,
                          f"{arm} breached its guards: {'; '.join(breaches)}",
                          {**record, "breached_arm": arm})
    if isinstance(s, CanaryStrategy):
        return _canary(dep, s, results[s.canary], record, now_ms)
    if isinstance(s, ShadowStrategy) and len(tested) == 1 \
            and results[tested[0]].action == "promote":
        arm = tested[0]
        return Action("promote", arm, f"shadow {arm} holds every guard: "
                      f"{'; '.join(results[arm].reasons)}", record)
    return None


def _canary(dep: Deployment, s: CanaryStrategy, result: GuardResult, record: dict[str, Any],
            now_ms: int) -> Action | None:
    if result.action != "promote":
        return None  # waiting for samples
    if now_ms - dep.updated_at < s.step_interval_s * 1000:
        return None  # not due yet
    why = "; ".join(result.reasons)
    nxt = s.next_percent()
    if nxt is not None:
        return Action("step", s.canary, f"guards hold at {s.percent:g}%, stepping to "
                      f"{nxt:g}%: {why}", record)
    return Action("promote", s.canary, f"guards hold at the last step ({s.percent:g}%): "
                  f"{why}", record)


def _numbers(evidence: Evidence) -> dict[str, float | int | None]:
    return {k: v for k, v in evidence.items()
            if v is None or (isinstance(v, int | float) and not isinstance(v, bool))}


def _record(dep: Deployment, evidence: Mapping[str, Evidence],
            results: Mapping[str, GuardResult]) -> dict[str, Any]:
    """The evidence stored with the decision: every arm's numbers (the stable arm's too,
    which relative guards compared with) and every guard's verdict."""
    return {"revision": dep.revision, "strategy": dep.strategy.kind,
            "stable_arm": dep.stable_arm,
            "arms": {arm: dict(values) for arm, values in evidence.items()},
            "guards": {arm: r.reasons for arm, r in results.items()}}
