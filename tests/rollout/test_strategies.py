"""Arm choice per strategy: the traffic split, stickiness, and the bandits' learning."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from shipyard.deployments import (
    ABStrategy,
    ArmStats,
    BanditStrategy,
    CanaryStrategy,
    ShadowStrategy,
    SingleStrategy,
)
from shipyard.rollout import ArmChooser, Route, bucket
from shipyard.rollout._strategies import (
    challenger_of,
    epsilon_greedy_choice,
    mean_reward,
    serving_arms,
    shadow_arms,
    stable_of,
    thompson_choice,
)

KEYS = [f"customer-{i}" for i in range(10_000)]


def canary(percent: float, **kwargs: object) -> CanaryStrategy:
    return CanaryStrategy(stable="stable", canary="canary", percent=percent, **kwargs)


def split(chooser: ArmChooser, keys: list[str | None]) -> Counter[str]:
    return Counter(chooser.choose(k).arm for k in keys)


# -- the stable bucket ------------------------------------------------------------------------

def test_bucket_is_stable_uniform_and_salted() -> None:
    assert bucket("customer-1", "credit") == bucket("customer-1", "credit")
    assert bucket("customer-1", "credit") != bucket("customer-1", "other")
    values = [bucket(k) for k in KEYS]
    assert all(0 <= v < 100 for v in values)
    deciles = Counter(int(v // 10) for v in values)
    assert all(900 <= deciles[d] <= 1100 for d in range(10)), deciles


# -- canary -----------------------------------------------------------------------------------

@pytest.mark.parametrize("percent", [1, 10, 50])
def test_canary_sends_its_percent_of_keys(percent: float) -> None:
    counts = split(ArmChooser(canary(percent), salt="credit"), KEYS)
    share = counts["canary"] / len(KEYS) * 100
    assert abs(share - percent) < 1.5, counts


def test_canary_is_sticky_and_keys_stay_on_the_canary_as_it_steps_up() -> None:
    chooser = ArmChooser(canary(10), salt="credit", rng=random.Random(1))
    first = {k: chooser.choose(k).arm for k in KEYS[:2000]}
    assert first == {k: chooser.choose(k).arm for k in KEYS[:2000]}  # same key, same arm
    later = ArmChooser(canary(25), salt="credit", rng=random.Random(2))
    on_canary = [k for k, arm in first.items() if arm == "canary"]
    assert on_canary and all(later.choose(k).arm == "canary" for k in on_canary)
    assert sum(later.choose(k).arm == "canary" for k in first) > len(on_canary)


def test_canary_without_key_or_not_sticky_draws_per_request() -> None:
    counts = split(ArmChooser(canary(20), rng=random.Random(7)), [None] * 10_000)
    assert 1800 < counts["canary"] < 2200
    loose = ArmChooser(canary(50, sticky=False), rng=random.Random(3))
    assert len({loose.choose("same-key").arm for _ in range(50)}) == 2


def test_canary_bounds() -> None:
    assert split(ArmChooser(canary(0)), KEYS[:500]) == Counter({"stable": 500})
    assert split(ArmChooser(canary(100)), KEYS[:500]) == Counter({"canary": 500})


# -- A/B --------------------------------------------------------------------------------------

def test_ab_splits_by_weights_and_sticks_by_key() -> None:
    chooser = ArmChooser(ABStrategy(weights={"a": 1, "b": 3}), salt="exp",
                         rng=random.Random(0))
    counts = split(chooser, KEYS)
    assert abs(counts["b"] / len(KEYS) - 0.75) < 0.02, counts
    assert all(chooser.choose(k) == chooser.choose(k) for k in KEYS[:500])
    drawn = split(chooser, [None] * 10_000)
    assert abs(drawn["a"] / 10_000 - 0.25) < 0.02, drawn


def test_ab_with_three_arms() -> None:
    chooser = ArmChooser(ABStrategy(weights={"a": 50, "b": 30, "c": 20}), salt="x")
    counts = split(chooser, KEYS)
    for arm, share in (("a", 0.5), ("b", 0.3), ("c", 0.2)):
        assert abs(counts[arm] / len(KEYS) - share) < 0.02, counts


# -- single and shadow ------------------------------------------------------------------------

def test_single_and_shadow_routes() -> None:
    assert ArmChooser(SingleStrategy(arm="one")).choose("k") == Route("one")
    shadow = ShadowStrategy(primary="champ", shadows=["chal", "other"])
    assert ArmChooser(shadow).choose(None) == Route("champ", ("chal", "other"))
    assert serving_arms(shadow) == ["champ"] and shadow_arms(shadow) == ["chal", "other"]
    assert stable_of(shadow) == "champ" and challenger_of(shadow) == "chal"
    assert stable_of(canary(5)) == "stable" and challenger_of(canary(5)) == "canary"
    assert stable_of(ABStrategy(weights={"a": 1, "b": 1})) is None


# -- bandits ----------------------------------------------------------------------------------

def simulate(strategy: BanditStrategy, rates: dict[str, float], rounds: int,
             seed: int) -> Counter[str]:
    """A Bernoulli environment: each pull of arm a pays 1 with probability rates[a]."""
    rng = random.Random(seed)
    chooser = ArmChooser(strategy, rng=random.Random(seed + 1))
    stats = {a: ArmStats(arm=a) for a in rates}
    pulls: Counter[str] = Counter()
    for _ in range(rounds):
        arm = chooser.choose(None, stats).arm
        pulls[arm] += 1
        won = rng.random() < rates[arm]
        s = stats[arm]
        stats[arm] = s.model_copy(update={
            "pulls": s.pulls + 1, "rewards": s.rewards + 1, "reward_sum": s.reward_sum + won,
            "successes": s.successes + won, "failures": s.failures + (not won)})
    return pulls


def test_thompson_concentrates_on_the_better_arm() -> None:
    pulls = simulate(BanditStrategy(arms=["a", "b"]), {"a": 0.05, "b": 0.15}, 3000, seed=4)
    assert pulls["b"] > 0.8 * 3000, pulls
    assert pulls["a"] > 10  # it still explored


def test_epsilon_greedy_concentrates_and_explores() -> None:
    strategy = BanditStrategy(arms=["a", "b", "c"], algorithm="epsilon_greedy", epsilon=0.1)
    pulls = simulate(strategy, {"a": 0.1, "b": 0.5, "c": 0.2}, 3000, seed=5)
    assert pulls["b"] > 0.8 * 3000, pulls
    assert pulls["a"] > 50 and pulls["c"] > 50


def test_thompson_follows_the_shared_counts() -> None:
    stats = {"a": ArmStats(arm="a", successes=5, failures=95),
             "b": ArmStats(arm="b", successes=60, failures=40)}
    rng = random.Random(9)
    picks = Counter(thompson_choice(["a", "b"], stats, rng) for _ in range(1000))
    assert picks["b"] > 990
    # without any data, the draw is a fair coin
    even = Counter(thompson_choice(["a", "b"], {}, rng) for _ in range(4000))
    assert 1800 < even["a"] < 2200


def test_epsilon_greedy_tries_unrewarded_arms_first() -> None:
    stats = {"a": ArmStats(arm="a", rewards=10, reward_sum=9.0)}
    rng = random.Random(0)
    assert {epsilon_greedy_choice(["a", "b"], stats, 0.0, rng) for _ in range(20)} == {"b"}
    assert mean_reward(stats["a"]) == pytest.approx(0.9)
    assert mean_reward(ArmStats(arm="z")) is None
