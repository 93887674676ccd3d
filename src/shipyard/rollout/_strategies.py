"""Per-request arm choice: which arm of a deployment answers, and which arms get a copy.

Pure functions of the deployment's strategy, the request's routing key, the shared arm
statistics and a random generator, so the traffic split is testable with a seeded RNG and
the router itself holds no routing state of its own.

- **single**: the one arm.
- **shadow**: the primary answers; every shadow arm gets a copy (never returned).
- **canary**: the request's key is hashed to a stable bucket in [0, 100); buckets below the
  canary percent go to the canary. The same key lands on the same arm at a given percent,
  and stays on the canary as the percent steps up (its bucket stays below the threshold).
  No key (or ``sticky=False``): a uniform draw per request.
- **ab**: the weights (normalised) cut [0, 100) into one interval per arm; the key's bucket
  (or a draw) picks the interval, so a user stays in one arm for the whole test.
- **bandit**: Thompson sampling (one Beta(1 + successes, 1 + failures) draw per arm, the
  largest wins) or epsilon-greedy (a random arm with probability epsilon, else the best
  mean reward; arms without any reward yet are tried first). Not sticky: a bandit moves
  traffic as it learns.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shipyard.deployments import (
    ABStrategy,
    CanaryStrategy,
    ShadowStrategy,
    SingleStrategy,
)

if TYPE_CHECKING:
    from shipyard.deployments import ArmStats, Strategy

__all__ = ["Route", "ArmChooser", "bucket", "serving_arms", "shadow_arms", "challenger_of",
           "stable_of", "mean_reward", "thompson_choice", "epsilon_greedy_choice"]


@dataclass(frozen=True)
class Route:
    """Where one request goes: the arm that answers, and the arms that get a copy."""

    arm: str
    shadows: tuple[str, ...] = ()


def bucket(key: str, salt: str = "") -> float:
    """A stable position of ``key`` in [0, 100): the same on every worker and every run.

    BLAKE2b (not ``hash()``, which is salted per process) over ``salt`` and the key; the
    salt (the deployment's name) keeps two deployments' splits independent.
    """
    digest = hashlib.blake2b(f"{salt}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 * 100.0


def serving_arms(strategy: Strategy) -> list[str]:
    """The arms that answer requests under ``strategy`` (shadows excluded)."""
    if isinstance(strategy, SingleStrategy):
        return [strategy.arm]
    if isinstance(strategy, ShadowStrategy):
        return [strategy.primary]
    if isinstance(strategy, CanaryStrategy):
        return list(dict.fromkeys([strategy.stable, strategy.canary]))
    if isinstance(strategy, ABStrategy):
        return [arm for arm, weight in strategy.weights.items() if weight > 0]
    return list(strategy.arms)


def shadow_arms(strategy: Strategy) -> list[str]:
    """The arms that get copies of the traffic (shadow strategy only)."""
    if isinstance(strategy, ShadowStrategy):
        return list(dict.fromkeys(a for a in strategy.shadows if a != strategy.primary))
    return []


def stable_of(strategy: Strategy) -> str | None:
    """The arm that keeps serving when a rollout is abandoned (None for A/B and bandits)."""
    if isinstance(strategy, SingleStrategy):
        return strategy.arm
    if isinstance(strategy, ShadowStrategy):
        return strategy.primary
    if isinstance(strategy, CanaryStrategy):
        return strategy.stable
    return None


def challenger_of(strategy: Strategy) -> str | None:
    """The arm under evaluation: the canary, or the first shadow."""
    if isinstance(strategy, CanaryStrategy):
        return strategy.canary
    if isinstance(strategy, ShadowStrategy):
        return next(iter(shadow_arms(strategy)), None)
    return None


# -- bandit arithmetic on the shared statistics ---------------------------------------------


def mean_reward(stats: ArmStats | None) -> float | None:
    """The arm's mean reward, None before its first reward."""
    if stats is None or stats.rewards <= 0:
        return None
    return stats.reward_sum / stats.rewards


def thompson_choice(arms: Sequence[str], stats: Mapping[str, ArmStats],
                    rng: random.Random) -> str:
    """Thompson sampling, Beta–Bernoulli: draw each arm's success rate, take the largest."""
    best, best_draw = arms[0], -1.0
    for arm in arms:
        s = stats.get(arm)
        alpha = 1.0 + max(0.0, s.successes if s else 0.0)
        beta = 1.0 + max(0.0, s.failures if s else 0.0)
        draw = rng.betavariate(alpha, beta)
        if draw > best_draw:
            best, best_draw = arm, draw
    return best


def epsilon_greedy_choice(arms: Sequence[str], stats: Mapping[str, ArmStats],
                          epsilon: float, rng: random.Random) -> str:
    """A random arm with probability ``epsilon``; else the best mean reward (ties drawn).

    Arms that have no reward yet count as best, so each is tried before exploitation.
    """
    if rng.random() < epsilon:
        return rng.choice(list(arms))
    values = {arm: mean_reward(stats.get(arm)) for arm in arms}
    scored = {arm: math.inf if v is None else v for arm, v in values.items()}
    top = max(scored.values())
    return rng.choice([arm for arm, v in scored.items() if v == top])


# -- the chooser -----------------------------------------------------------------------------


class ArmChooser:
    """Chooses the arm for each request of one deployment revision.

    ``salt`` (the deployment's name) feeds :func:`bucket`; ``rng`` draws for requests
    without a key and for the bandits (seed it in tests). Built once per revision.
    """

    def __init__(self, strategy: Strategy, *, salt: str = "",
                 rng: random.Random | None = None) -> None:
        self.strategy = strategy
        self.salt = salt
        self.rng = rng or random.Random()
        self.arms = serving_arms(strategy)
        self.shadows = tuple(shadow_arms(strategy))
        if not self.arms:
            raise ValueError("the strategy has no arm to serve")
        self._cuts: list[tuple[float, str]] = []
        if isinstance(strategy, ABStrategy):
            self._cuts = _cuts({a: strategy.weights[a] for a in self.arms})

    def _position(self, routing_key: str | None, sticky: bool = True) -> float:
        if routing_key is not None and sticky:
            return bucket(routing_key, self.salt)
        return self.rng.random() * 100.0

    def choose(self, routing_key: str | None = None,
               stats: Mapping[str, ArmStats] | None = None) -> Route:
        """The route of one request (``stats``: the bandit's shared arm statistics)."""
        s = self.strategy
        if isinstance(s, SingleStrategy):
            return Route(s.arm)
        if isinstance(s, ShadowStrategy):
            return Route(s.primary, self.shadows)
        if isinstance(s, CanaryStrategy):
            if s.percent <= 0:
                return Route(s.stable)
            if s.percent >= 100:
                return Route(s.canary)
            inside = self._position(routing_key, s.sticky) < s.percent
            return Route(s.canary if inside else s.stable)
        if isinstance(s, ABStrategy):
            position = self._position(routing_key)
            for cut, arm in self._cuts:
                if position < cut:
                    return Route(arm)
            return Route(self._cuts[-1][1])
        stats = stats or {}
        if s.algorithm == "thompson":
            return Route(thompson_choice(self.arms, stats, self.rng))
        return Route(epsilon_greedy_choice(self.arms, stats, s.epsilon, self.rng))


def _cuts(weights: Mapping[str, float]) -> list[tuple[float, str]]:
    """Upper bounds in [0, 100] of each arm's interval, in the weights' order."""
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("the A/B weights must add up to more than 0")
    cuts, acc = [], 0.0
    for arm, weight in weights.items():
        acc += weight / total * 100.0
        cuts.append((acc, arm))
    return cuts
