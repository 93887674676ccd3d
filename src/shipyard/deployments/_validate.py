"""Validation of a deployment spec, once, before anything is written.

Pydantic checks each field's own bounds; this module adds the rules that span fields (every
arm a strategy names is declared, no arm twice, canary steps that rise) and turns every
failure into :class:`~shipyard.errors.InvalidInput` naming the field
(``strategy.percent``, ``guards.1.metric``, ``arms.challenger``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from shipyard import errors

from ._spec import (
    ARM_NAME_RE,
    GUARD_COMPARES,
    GUARD_METRICS,
    ABStrategy,
    Arm,
    BanditStrategy,
    CanaryStrategy,
    Deployment,
    Guard,
    ShadowStrategy,
    strategy_arms,
)

if TYPE_CHECKING:
    from shipyard.registry import RegistryService

__all__ = ["check_deployment_name", "check_guards", "check_spec", "resolve_arms",
           "invalid_from", "check_count", "check_revision", "reward_deltas", "reward_totals",
           "evidence_rows"]

_KINDS = ("single", "shadow", "canary", "ab", "bandit")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,255}$")


def invalid_from(exc: ValidationError, prefix: str) -> errors.InvalidInput:
    """The first pydantic error as InvalidInput, its location appended to ``prefix``."""
    err = exc.errors()[0]
    loc: list[str] = []
    for part in err["loc"]:  # drop the union's tag that follows "strategy"
        if not (part in _KINDS and (loc[-1:] == ["strategy"] or prefix == "strategy"
                                    and not loc)):
            loc.append(str(part))
    field = ".".join([prefix, *loc]) if prefix else ".".join(loc) or "spec"
    value = err.get("input")
    shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
    return errors.InvalidInput(f"{field}: {err['msg']}{shown}", field=field)


def check_deployment_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise errors.InvalidInput(
            f"invalid deployment name {name!r}: use 1-256 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit", field="name")
    return name


def check_guards(guards: Sequence[Guard | Mapping[str, Any]]) -> list[Guard]:
    """Each guard as a Guard: a known metric, operator and ``compare``, a finite threshold,
    and a ratio above 0 (a ratio guard's limit is the stable value times it)."""
    if not isinstance(guards, list | tuple):
        raise errors.InvalidInput("guards must be a list", field="guards")
    out: list[Guard] = []
    for i, guard in enumerate(guards):
        if not isinstance(guard, Guard):
            if isinstance(guard, Mapping) and guard.get("metric") not in GUARD_METRICS:
                raise errors.InvalidInput(
                    f"guards.{i}.metric: unknown metric {guard.get('metric')!r}; use one of "
                    f"{', '.join(GUARD_METRICS)}", field=f"guards.{i}.metric")
            if isinstance(guard, Mapping) and "compare" in guard \
                    and guard["compare"] not in GUARD_COMPARES:
                raise errors.InvalidInput(
                    f"guards.{i}.compare: unknown comparison {guard['compare']!r}; use one "
                    f"of {', '.join(GUARD_COMPARES)}", field=f"guards.{i}.compare")
            try:
                guard = Guard.model_validate(guard)
            except ValidationError as exc:
                raise invalid_from(exc, f"guards.{i}") from None
        if not math.isfinite(guard.threshold):
            raise errors.InvalidInput(f"guards.{i}.threshold must be a finite number, not "
                                      f"{guard.threshold}", field=f"guards.{i}.threshold")
        if guard.compare == "ratio" and guard.threshold <= 0:
            raise errors.InvalidInput(
                f"guards.{i}.threshold: the ratio of {guard} must be above 0 (e.g. "
                f"{guard.metric}{guard.op}stable*1.2)", field=f"guards.{i}.threshold")
        out.append(guard)
    return out


def resolve_arms(registry: RegistryService, model: str,
                 arms: Mapping[str, str | int]) -> list[Arm]:
    """Each arm's ref pinned to the version it names now (NotFound naming what is missing)."""
    from shipyard.registry import VersionStatus, check_model_name

    check_model_name(model)
    if not isinstance(arms, Mapping) or not arms:
        raise errors.InvalidInput("a deployment needs at least one arm (name -> ref)",
                                  field="arms")
    for arm in arms:
        if not isinstance(arm, str) or not ARM_NAME_RE.match(arm):
            raise errors.InvalidInput(
                f"invalid arm name {arm!r}: use up to 64 letters, digits, '_' or '-', "
                "starting with a letter", field="arms")
    try:
        registry.get_model(model)
    except errors.NotFound as exc:
        raise errors.NotFound(exc.message, field="model") from None
    pinned: list[Arm] = []
    for arm, ref in arms.items():
        uri = _ref_uri(model, arm, ref)
        try:
            version = registry.resolve(uri)
        except errors.NotFound as exc:
            raise errors.NotFound(f"arm {arm!r}: {exc.message}", field=f"arms.{arm}") from None
        if version.status is not VersionStatus.READY:
            raise errors.InvalidInput(f"arm {arm!r}: {version.uri} is {version.status.value}; "
                                      "only ready versions can serve", field=f"arms.{arm}")
        pinned.append(Arm(name=arm, ref=str(ref).strip(), version=version.version))
    return pinned


def _ref_uri(model: str, arm: str, ref: str | int) -> str:
    from shipyard.registry import check_alias

    if isinstance(ref, bool) or not isinstance(ref, str | int):
        raise errors.InvalidInput(f"arm {arm!r}: a ref is a version number or an alias, not "
                                  f"{ref!r}", field=f"arms.{arm}")
    text = str(ref).strip()
    if text.isdigit() and int(text) > 0:
        return f"models:/{model}/{int(text)}"
    if text == "latest":
        return f"models:/{model}/latest"
    try:
        alias = check_alias(text.removeprefix("@"))
    except errors.InvalidInput:
        raise errors.InvalidInput(f"arm {arm!r}: invalid ref {ref!r}: use a version number "
                                  "(3), 'latest' or an alias (@champion)",
                                  field=f"arms.{arm}") from None
    return f"models:/{model}@{alias}"


def check_spec(**values: Any) -> Deployment:
    """A Deployment from ``values``, with the cross-field rules checked."""
    strategy = values.get("strategy")
    if isinstance(strategy, BaseModel):
        values["strategy"] = strategy.model_dump()
    elif not isinstance(strategy, Mapping):
        raise errors.InvalidInput("strategy must be an object with a 'kind' (single, shadow, "
                                  "canary, ab, bandit)", field="strategy")
    elif strategy.get("kind") not in ("single", "shadow", "canary", "ab", "bandit"):
        raise errors.InvalidInput(f"strategy.kind: unknown strategy {strategy.get('kind')!r}; "
                                  "use single, shadow, canary, ab or bandit",
                                  field="strategy.kind")
    try:
        dep = Deployment.model_validate(values)
    except ValidationError as exc:
        raise invalid_from(exc, "") from None
    _check_strategy(dep)
    _check_relative_guards(dep)
    return dep


def _check_relative_guards(dep: Deployment) -> None:
    """A relative guard compares with the stable arm, so that arm must keep receiving
    traffic: the first declared arm of an A/B test or bandit must be one it routes to, and
    a canary must end below 100 % (it is promoted at its last step) — at 100 % the stable
    arm would see no request and the guard would wait forever."""
    relative = [i for i, g in enumerate(dep.guards) if g.relative]
    if not relative:
        return
    i, s = relative[0], dep.strategy
    if dep.stable_arm not in strategy_arms(s):
        raise errors.InvalidInput(
            f"guards.{i}: {dep.guards[i]} compares with the stable arm {dep.stable_arm!r} "
            f"(the first declared), which the {s.kind} strategy does not route to; declare "
            "the baseline arm first", field=f"guards.{i}")
    if isinstance(s, CanaryStrategy) and max([s.percent, *s.steps]) >= 100:
        raise errors.InvalidInput(
            f"guards.{i}: {dep.guards[i]} compares with the stable arm, which gets no "
            "traffic once the canary reaches 100%; end the canary's steps below 100 (e.g. "
            "10,25,50): it is promoted at its last step", field=f"guards.{i}")


def _check_strategy(dep: Deployment) -> None:
    s = dep.strategy
    declared = set(dep.arm_names)
    named = _named_arms(s)
    for field, arm in named:
        if arm not in declared:
            raise errors.InvalidInput(
                f"strategy.{field}: the {s.kind} strategy names arm {arm!r}, which the "
                f"deployment does not declare (arms: {', '.join(dep.arm_names)})",
                field=f"strategy.{field}")
    routed = strategy_arms(s)
    if len(set(routed)) != len(routed):
        raise errors.InvalidInput(f"strategy: the {s.kind} strategy names an arm twice "
                                  f"({', '.join(routed)})", field=f"strategy.{named[-1][0]}")
    if isinstance(s, CanaryStrategy) and any(b <= a for a, b in zip(s.steps, s.steps[1:],
                                                                   strict=False)):
        raise errors.InvalidInput("strategy.steps must rise (e.g. 10,25,50,100)",
                                  field="strategy.steps")


def _named_arms(s: Any) -> list[tuple[str, str]]:
    """(field, arm) for every arm the strategy names."""
    if isinstance(s, ShadowStrategy):
        return [("primary", s.primary)] + [("shadows", a) for a in s.shadows]
    if isinstance(s, CanaryStrategy):
        return [("stable", s.stable), ("canary", s.canary)]
    if isinstance(s, ABStrategy):
        return [("weights", a) for a in s.weights]
    if isinstance(s, BanditStrategy):
        return [("arms", a) for a in s.arms]
    return [("arm", s.arm)]


# -- the shared arm state and evidence (the router's writes) --------------------------------------

#: An evidence counter: a name, optionally ``:`` and a whole number (a histogram bucket).
_COUNTER_RE = re.compile(r"^[a-z][a-z0-9_]{0,19}(:-?[0-9]{1,6})?$")


def _number(value: Any, field: str) -> float:
    """``value`` as a finite float whose square is finite too (sums of squares are kept)."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise errors.InvalidInput(f"{field} must be a number, not {value!r}",
                                  field=field) from None
    if not math.isfinite(number * number):
        raise errors.InvalidInput(f"{field} must be a finite number below 1e150, not "
                                  f"{number}", field=field)
    return number


def reward_deltas(reward: Any, success: bool | None, field: str) -> dict[str, float]:
    """The arm-stat additions of one reward (and one Bernoulli outcome when given)."""
    value = _number(reward, field)
    deltas: dict[str, float] = {"rewards": 1, "reward_sum": value,
                                "reward_sq_sum": value * value}
    if success is not None:
        deltas["successes" if success else "failures"] = 1
    return deltas


def reward_totals(rows: Sequence[Any]) -> dict[str, dict[str, float]]:
    """(arm, reward, success) rows summed per arm; InvalidInput naming the first bad row."""
    totals: dict[str, dict[str, float]] = {}
    for i, row in enumerate(rows):
        field = f"rows.{i}"
        try:
            arm, reward, success = row
        except (TypeError, ValueError):
            raise errors.InvalidInput(f"row {i} must be [arm, reward, success], not {row!r}",
                                      field=field) from None
        if not isinstance(arm, str) or not arm:
            raise errors.InvalidInput(f"row {i}: the arm must be a name, not {arm!r}",
                                      field=field)
        if success is not None and not isinstance(success, bool):
            raise errors.InvalidInput(f"row {i}: success must be true, false or null",
                                      field=field)
        arm_totals = totals.setdefault(arm, {})
        for key, delta in reward_deltas(reward, success, field).items():
            arm_totals[key] = arm_totals.get(key, 0) + delta
    return totals


def evidence_rows(name: str, revision: int, counts: Mapping[str, Any]
                  ) -> list[tuple[str, int, str, str, float]]:
    """(deployment, revision, arm, counter, delta) rows of ``counts`` ({arm: {counter:
    delta}}), zeros left out, sorted (so that concurrent writers lock rows in one order)."""
    rows: list[tuple[str, int, str, str, float]] = []
    for arm, counters in counts.items():
        if not isinstance(arm, str) or not ARM_NAME_RE.match(arm):
            raise errors.InvalidInput(f"invalid arm name {arm!r}", field="counts")
        if not isinstance(counters, Mapping):
            raise errors.InvalidInput(f"counts of arm {arm!r} must be an object",
                                      field=f"counts.{arm}")
        for counter, delta in counters.items():
            if not isinstance(counter, str) or not _COUNTER_RE.match(counter):
                raise errors.InvalidInput(f"invalid counter name {counter!r}",
                                          field=f"counts.{arm}")
            value = _number(delta, f"counts.{arm}.{counter}")
            if value < 0:
                raise errors.InvalidInput(f"counter {counter!r} of arm {arm!r} cannot go "
                                          f"down ({value})", field=f"counts.{arm}.{counter}")
            if value:
                rows.append((name, revision, arm, counter, value))
    return sorted(rows)


def check_revision(revision: Any) -> int:
    if isinstance(revision, bool) or not isinstance(revision, int) \
            or not 1 <= revision < 2**31:
        raise errors.InvalidInput(f"revision must be a whole number from 1, not {revision!r}",
                                  field="revision")
    return revision


def check_count(arm: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2**62:
        raise errors.InvalidInput(f"pull count of arm {arm!r} must be a whole number >= 0, "
                                  f"not {n!r}", field="counts")
    return n
