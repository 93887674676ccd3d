"""The deployment spec: arms, one routing strategy, guards — and the records built from it.

Every object here is a frozen pydantic model, so the service, the REST API and the router
share one definition. Field-level bounds (a percent in 0..100, a weight above 0) live on the
fields; rules that span fields (every arm a strategy names is declared) are checked by the
service, which turns any failure into :class:`~shipyard.errors.InvalidInput` naming the field.

Times are integer milliseconds since the epoch (UTC), as everywhere in the metadata store.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "ARM_NAME_RE",
    "GUARD_COMPARES",
    "GUARD_METRICS",
    "ABStrategy",
    "Arm",
    "ArmStats",
    "BanditStrategy",
    "CanaryStrategy",
    "Decision",
    "DecisionAction",
    "Deployment",
    "DeploymentStatus",
    "Guard",
    "GuardCompare",
    "ShadowStrategy",
    "SingleStrategy",
    "Strategy",
    "describe_strategy",
    "parse_strategy",
    "strategy_arms",
]

#: An arm name: a letter, then up to 63 letters, digits, ``_`` or ``-``.
ARM_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")

#: The metrics a guard may watch: two operational ones the router measures per arm, and two
#: from the feedback endpoint (the mean reward, and accuracy = label equals prediction).
GUARD_METRICS = ("error_rate", "latency_p99_ms", "reward_mean", "accuracy")

DeploymentStatus = Literal["active", "promoted", "rolled_back", "stopped"]
DecisionAction = Literal["create", "update", "step", "promote", "rollback", "stop"]
#: How a guard's limit is set: a fixed threshold, or from the stable arm's value (+ or ×).
GuardCompare = Literal["absolute", "difference", "ratio"]
#: The values of :data:`GuardCompare`.
GUARD_COMPARES = ("absolute", "difference", "ratio")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Arm(_Frozen):
    """One model version the deployment can route to.

    ``ref`` is what the user wrote (``"champion"``, ``"@champion"``, ``"3"``, ``"latest"``);
    ``version`` is what it resolved to when the deployment was created or last updated, so a
    later alias move does not change what a running deployment serves.
    """

    name: str
    ref: str
    version: int

    @property
    def alias(self) -> str | None:
        """The alias ``ref`` names, or None when it is a version number or ``latest``."""
        ref = self.ref.lstrip("@")
        if ref.isdigit() or ref == "latest":
            return None
        return ref


# -- strategies ---------------------------------------------------------------------------------

class SingleStrategy(_Frozen):
    """All traffic to one arm (what promote and rollback leave behind)."""

    kind: Literal["single"] = "single"
    arm: str


class ShadowStrategy(_Frozen):
    """``primary`` answers; every shadow gets a copy of each request, logged, never returned."""

    kind: Literal["shadow"] = "shadow"
    primary: str
    shadows: list[str] = Field(min_length=1)


class CanaryStrategy(_Frozen):
    """``percent`` of traffic to ``canary``, the rest to ``stable``; stepped up over time.

    ``steps`` are the percents the canary moves through (each above the last); a step is due
    ``step_interval_s`` after the previous change. ``sticky`` keeps a routing key on one arm
    for as long as the percent does not move it.
    """

    kind: Literal["canary"] = "canary"
    stable: str
    canary: str
    percent: float = Field(ge=0, le=100)
    steps: list[Annotated[float, Field(ge=0, le=100)]] = Field(default_factory=list)
    step_interval_s: float = Field(default=300, ge=0)
    sticky: bool = True

    def next_percent(self) -> float | None:
        """The next step above the current percent, or None at the last step."""
        return next((s for s in self.steps if s > self.percent), None)

    @property
    def at_last_step(self) -> bool:
        return self.next_percent() is None


class ABStrategy(_Frozen):
    """A fixed split: each arm gets ``weight / sum(weights)`` of the traffic."""

    kind: Literal["ab"] = "ab"
    weights: dict[str, Annotated[float, Field(gt=0)]] = Field(min_length=2)

    def shares(self) -> dict[str, float]:
        """The weights normalised to sum to 1."""
        total = sum(self.weights.values())
        return {arm: w / total for arm, w in self.weights.items()}


class BanditStrategy(_Frozen):
    """A multi-armed bandit over ``arms``, learning from the feedback named ``reward``.

    ``thompson`` samples each arm's Beta(successes + 1, failures + 1) and routes to the
    largest draw; ``epsilon_greedy`` explores a random arm with probability ``epsilon`` and
    otherwise exploits the arm with the best mean reward.
    """

    kind: Literal["bandit"] = "bandit"
    arms: list[str] = Field(min_length=2)
    algorithm: Literal["thompson", "epsilon_greedy"] = "thompson"
    epsilon: float = Field(default=0.1, ge=0, le=1)
    reward: str = "reward"


Strategy = Annotated[
    SingleStrategy | ShadowStrategy | CanaryStrategy | ABStrategy | BanditStrategy,
    Field(discriminator="kind"),
]

_STRATEGY: TypeAdapter[Any] = TypeAdapter(Strategy)


def parse_strategy(value: Any) -> Any:
    """A Strategy from a dict (``{"kind": "canary", ...}``) or a Strategy; pydantic errors
    propagate (the service turns them into InvalidInput)."""
    return _STRATEGY.validate_python(
        value.model_dump() if isinstance(value, BaseModel) else value)


def strategy_arms(strategy: Any) -> list[str]:
    """Every arm name ``strategy`` routes to, in its own order (primary/stable first)."""
    if isinstance(strategy, SingleStrategy):
        return [strategy.arm]
    if isinstance(strategy, ShadowStrategy):
        return [strategy.primary, *strategy.shadows]
    if isinstance(strategy, CanaryStrategy):
        return [strategy.stable, strategy.canary]
    if isinstance(strategy, ABStrategy):
        return list(strategy.weights)
    if isinstance(strategy, BanditStrategy):
        return list(strategy.arms)
    raise TypeError(f"not a strategy: {strategy!r}")


def describe_strategy(strategy: Any) -> str:
    """One line a person reads: ``canary: 10% to challenger (stable champion), steps …``."""
    s = strategy
    if isinstance(s, SingleStrategy):
        return f"single: all traffic to {s.arm}"
    if isinstance(s, ShadowStrategy):
        return f"shadow: {s.primary} answers; {', '.join(s.shadows)} get a copy"
    if isinstance(s, CanaryStrategy):
        steps = f", steps {'→'.join(f'{p:g}' for p in s.steps)} every {s.step_interval_s:g}s" \
            if s.steps else ""
        sticky = ", sticky by key" if s.sticky else ""
        return f"canary: {s.percent:g}% to {s.canary} (stable {s.stable}){steps}{sticky}"
    if isinstance(s, ABStrategy):
        return "ab: " + ", ".join(f"{a} {share:.0%}" for a, share in s.shares().items())
    if isinstance(s, BanditStrategy):
        extra = f", epsilon {s.epsilon:g}" if s.algorithm == "epsilon_greedy" else ""
        return f"bandit ({s.algorithm}{extra}) over {', '.join(s.arms)}, reward {s.reward!r}"
    raise TypeError(f"not a strategy: {strategy!r}")


# -- guards -------------------------------------------------------------------------------------

class Guard(_Frozen):
    """A rule on one metric of the arm under test: it HOLDS when ``value op limit``.

    ``compare`` says what the limit is:

    - ``absolute`` (the default): ``threshold`` itself — ``accuracy>=0.7``;
    - ``difference``: the stable arm's value plus ``threshold`` — ``accuracy>=stable-0.02``
      holds when canary − stable ≥ −0.02;
    - ``ratio``: the stable arm's value times ``threshold`` (above 0) —
      ``latency_p99_ms<=stable*1.2`` holds when the canary's p99 is at most 1.2 × the
      stable arm's (written as a product, so a stable value of 0 needs no division).

    The stable arm is the canary's stable arm, the shadow's primary, or the first declared
    arm of an A/B test or bandit. An absolute threshold alone would let a challenger that is
    clearly worse than the model it replaces pass; a relative guard asks the auditor's
    question — is it at least as good as what serves now? Until ``min_samples`` observations
    back the value (of both arms, for a relative guard), the guard neither holds nor
    breaches.
    """

    metric: Literal["error_rate", "latency_p99_ms", "reward_mean", "accuracy"]
    op: Literal["<=", ">="]
    threshold: float
    min_samples: int = Field(default=100, ge=0)
    compare: GuardCompare = "absolute"

    @property
    def relative(self) -> bool:
        """Whether the guard compares with the stable arm (and so needs its evidence)."""
        return self.compare != "absolute"

    def limit(self, stable: float | None = None) -> float:
        """The value the arm's metric is held against (``stable``: the stable arm's value,
        required by a relative guard)."""
        if self.compare == "absolute":
            return self.threshold
        base = self._stable(stable)
        return base + self.threshold if self.compare == "difference" else base * self.threshold

    def holds(self, value: float, stable: float | None = None) -> bool:
        """Whether ``value`` (the arm under test) passes, given the stable arm's value."""
        if self.compare == "difference":  # the difference itself, as the guard is written
            left, right = value - self._stable(stable), self.threshold
        else:
            left, right = value, self.limit(stable)
        return left <= right if self.op == "<=" else left >= right

    def _stable(self, stable: float | None) -> float:
        if stable is None:
            raise ValueError(f"the guard {self} needs the stable arm's {self.metric}")
        return stable

    def __str__(self) -> str:
        if self.compare == "difference":
            offset = "" if self.threshold == 0 else f"{self.threshold:+g}"
            return f"{self.metric}{self.op}stable{offset}"
        if self.compare == "ratio":
            return f"{self.metric}{self.op}stable*{self.threshold:g}"
        return f"{self.metric}{self.op}{self.threshold:g}"


# -- records ------------------------------------------------------------------------------------

class Deployment(_Frozen):
    """A named deployment of one registered model: its arms, strategy, guards and state.

    ``revision`` starts at 1 and grows by one with every change of the spec (update, step,
    promote, rollback, stop); every revision is kept, so an assignment recorded under an
    older revision can still be interpreted.
    """

    name: str
    model: str
    arms: list[Arm]
    strategy: Strategy
    guards: list[Guard] = Field(default_factory=list)
    auto: bool = True
    revision: int
    status: DeploymentStatus
    created_at: int
    updated_at: int
    created_by: str

    def arm(self, name: str) -> Arm:
        """The arm called ``name`` (KeyError when there is none)."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)

    @property
    def arm_names(self) -> list[str]:
        return [a.name for a in self.arms]

    @property
    def serving_arms(self) -> list[str]:
        """The arms the strategy routes to (primary/stable first)."""
        return strategy_arms(self.strategy)

    @property
    def stable_arm(self) -> str:
        """The arm traffic returns to on rollback: the canary's stable, the shadow's primary,
        the single arm, or — for A/B and bandits — the first arm the deployment declares."""
        s = self.strategy
        if isinstance(s, SingleStrategy):
            return s.arm
        if isinstance(s, ShadowStrategy):
            return s.primary
        if isinstance(s, CanaryStrategy):
            return s.stable
        return self.arms[0].name


class ArmStats(_Frozen):
    """An arm's shared bandit/A-B state, summed atomically in SQL by every worker.

    ``pulls`` counts routed predictions; ``rewards`` counts recorded rewards, whose sum and
    sum of squares give the mean and variance; ``successes``/``failures`` count rewards that
    carried a success flag (the Beta–Bernoulli state of Thompson sampling).
    """

    arm: str
    pulls: int = 0
    reward_sum: float = 0.0
    reward_sq_sum: float = 0.0
    successes: float = 0.0
    failures: float = 0.0
    rewards: int = 0

    @property
    def reward_mean(self) -> float | None:
        return self.reward_sum / self.rewards if self.rewards else None

    @property
    def success_rate(self) -> float | None:
        n = self.successes + self.failures
        return self.successes / n if n else None


class Decision(_Frozen):
    """One change of a deployment, why it was made and on what evidence (append-only)."""

    id: int
    deployment: str
    revision: int
    action: DecisionAction
    arm: str | None = None
    reason: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)
    actor: str
    time: int
