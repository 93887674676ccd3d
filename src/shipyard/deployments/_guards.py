"""Guard evaluation: from measured evidence to promote, rollback or hold. Pure, no I/O.

The router measures each guard's metric on the arm under test and passes it as evidence:
``evidence[metric]`` is the value and ``evidence[f"{metric}_samples"]`` the number of
observations behind it (``evidence["samples"]`` is the fallback count for every metric).
A relative guard (``accuracy>=stable-0.02``) also reads the same keys of the stable arm's
evidence, and judges only once both arms have their ``min_samples``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ._spec import Guard

__all__ = ["GuardResult", "evaluate_guards", "samples_of"]


class GuardResult(BaseModel):
    """What the guards say, and one line per guard saying why."""

    model_config = ConfigDict(frozen=True)

    action: Literal["promote", "rollback", "hold"]
    reasons: list[str]


def samples_of(metric: str, evidence: Mapping[str, float | int | None]) -> int:
    """The number of observations behind ``evidence[metric]`` (0 when not given)."""
    raw = evidence.get(f"{metric}_samples", evidence.get("samples"))
    if raw is None:
        return 0
    try:
        count = float(raw)
    except (TypeError, ValueError):
        return 0
    return int(count) if math.isfinite(count) else 0


def evaluate_guards(guards: Sequence[Guard | Mapping[str, object]],
                    evidence: Mapping[str, float | int | None], *,
                    last_step: bool = True,
                    stable: Mapping[str, float | int | None] | None = None,
                    arm: str = "canary", stable_arm: str = "stable") -> GuardResult:
    """Decide from ``evidence`` (the arm under test's) and ``stable`` (the stable arm's,
    which relative guards compare with; ``arm`` and ``stable_arm`` name both in reasons).

    - **rollback** when any guard with enough samples breaches (a breach outranks a lack of
      data elsewhere: a bad canary is pulled at once);
    - **hold** while any guard lacks its ``min_samples`` (or its value) — a relative guard
      on either arm — or while a canary has steps left (``last_step=False``: the router
      steps it on its schedule instead);
    - **promote** when every guard holds and the last step has been reached. With no guards
      at all, that is as soon as the last step is reached.
    """
    checked = [g if isinstance(g, Guard) else Guard.model_validate(g) for g in guards]
    verdicts: dict[str, list[str]] = {"breached": [], "waiting": [], "holds": []}
    for guard in checked:
        if guard.relative:
            kind, reason = _judge_relative(guard, evidence, stable, arm, stable_arm)
        else:
            kind, reason = _judge_absolute(guard, evidence)
        verdicts[kind].append(reason)
    breaches, waiting, holding = verdicts["breached"], verdicts["waiting"], verdicts["holds"]
    if breaches:
        return GuardResult(action="rollback", reasons=breaches + waiting + holding)
    if waiting:
        return GuardResult(action="hold", reasons=waiting + holding)
    if not last_step:
        return GuardResult(action="hold", reasons=[
            *holding, "every guard holds; the canary has steps left"])
    return GuardResult(action="promote",
                       reasons=holding or ["no guards: the last step has been reached"])


def _value(metric: str, evidence: Mapping[str, float | int | None] | None) -> float:
    raw = evidence.get(metric) if evidence is not None else None
    return float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) \
        else math.nan


def _judge_absolute(guard: Guard, evidence: Mapping[str, float | int | None]
                    ) -> tuple[str, str]:
    value, n = _value(guard.metric, evidence), samples_of(guard.metric, evidence)
    if math.isnan(value):
        return "waiting", f"{guard}: no measurement of {guard.metric} yet"
    if n < guard.min_samples:
        return "waiting", (f"{guard}: {n} of {guard.min_samples} samples so far "
                           f"({guard.metric}={value:g})")
    verdict = "holds" if guard.holds(value) else "breached"
    return verdict, f"{guard}: {verdict} ({guard.metric}={value:g} over {n} samples)"


def _judge_relative(guard: Guard, evidence: Mapping[str, float | int | None],
                    stable: Mapping[str, float | int | None] | None, arm: str,
                    stable_arm: str) -> tuple[str, str]:
    """A guard against the stable arm: both arms need a value and ``min_samples``."""
    value, n = _value(guard.metric, evidence), samples_of(guard.metric, evidence)
    base = _value(guard.metric, stable)
    m = samples_of(guard.metric, stable) if stable is not None else 0
    if stable is None:
        return "waiting", f"{guard}: no evidence of the stable arm to compare with"
    if math.isnan(value) or math.isnan(base):
        missing = " and ".join(name for name, v in ((arm, value), (stable_arm, base))
                               if math.isnan(v))
        return "waiting", f"{guard}: no measurement of {guard.metric} yet ({missing})"
    both = f"{arm} {_fmt(value)} vs {stable_arm} {_fmt(base)}"
    if n < guard.min_samples or m < guard.min_samples:
        return "waiting", (f"{guard}: samples so far {arm} {n}, {stable_arm} {m}; each arm "
                           f"needs {guard.min_samples} ({both})")
    verdict = "holds" if guard.holds(value, base) else "breached"
    if guard.compare == "difference":
        how = f"difference {value - base:+.3f}"
    else:
        how = f"ratio {value / base:.3f}" if base else "ratio n/a: the stable value is 0"
    return verdict, f"{guard}: {verdict} ({both} over {n}/{m} samples, {how})"


def _fmt(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 1e6 else f"{value:g}"
