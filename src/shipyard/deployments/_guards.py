"""Guard evaluation: from measured evidence to promote, rollback or hold. Pure, no I/O.

The router measures each guard's metric on the arm under test and passes it as evidence:
``evidence[metric]`` is the value and ``evidence[f"{metric}_samples"]`` the number of
observations behind it (``evidence["samples"]`` is the fallback count for every metric).
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
                    last_step: bool = True) -> GuardResult:
    """Decide from ``evidence``.

    - **rollback** when any guard with enough samples breaches (a breach outranks a lack of
      data elsewhere: a bad canary is pulled at once);
    - **hold** while any guard lacks its ``min_samples`` (or its value), or while a canary
      has steps left (``last_step=False``: the router steps it on its schedule instead);
    - **promote** when every guard holds and the last step has been reached. With no guards
      at all, that is as soon as the last step is reached.
    """
    checked = [g if isinstance(g, Guard) else Guard.model_validate(g) for g in guards]
    breaches: list[str] = []
    waiting: list[str] = []
    holding: list[str] = []
    for guard in checked:
        raw = evidence.get(guard.metric)
        value = float(raw) if isinstance(raw, int | float) else math.nan
        n = samples_of(guard.metric, evidence)
        if math.isnan(value):
            waiting.append(f"{guard}: no measurement of {guard.metric} yet")
        elif n < guard.min_samples:
            waiting.append(f"{guard}: {n} of {guard.min_samples} samples so far "
                           f"({guard.metric}={value:g})")
        elif guard.holds(value):
            holding.append(f"{guard}: holds ({guard.metric}={value:g} over {n} samples)")
        else:
            breaches.append(f"{guard}: breached ({guard.metric}={value:g} over {n} samples)")
    if breaches:
        return GuardResult(action="rollback", reasons=breaches + waiting + holding)
    if waiting:
        return GuardResult(action="hold", reasons=waiting + holding)
    if not last_step:
        return GuardResult(action="hold", reasons=[
            *holding, "every guard holds; the canary has steps left"])
    return GuardResult(action="promote",
                       reasons=holding or ["no guards: the last step has been reached"])
