"""The spec objects, strategy parsing and description, guard text and YAML spec files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shipyard import errors
from shipyard.deployments import (
    ABStrategy,
    Arm,
    BanditStrategy,
    CanaryStrategy,
    Deployment,
    ShadowStrategy,
    SingleStrategy,
    describe_strategy,
    load_spec_file,
    parse_guard,
    parse_strategy,
    strategy_arms,
)


def test_strategies_parse_by_kind_and_are_frozen() -> None:
    canary = parse_strategy({"kind": "canary", "stable": "a", "canary": "b", "percent": 5,
                             "steps": [5, 50, 100]})
    assert isinstance(canary, CanaryStrategy) and canary.step_interval_s == 300
    assert canary.sticky and canary.next_percent() == 50 and not canary.at_last_step
    with pytest.raises(ValidationError):
        canary.percent = 10  # type: ignore[misc]
    assert parse_strategy(canary) == canary
    assert isinstance(parse_strategy({"kind": "single", "arm": "a"}), SingleStrategy)
    with pytest.raises(ValidationError):
        parse_strategy({"kind": "blue-green"})


def test_canary_steps_end_at_the_last_step() -> None:
    canary = CanaryStrategy(stable="a", canary="b", percent=100, steps=[10, 100])
    assert canary.next_percent() is None and canary.at_last_step
    assert CanaryStrategy(stable="a", canary="b", percent=10).at_last_step  # no steps


@pytest.mark.parametrize(("strategy", "arms", "words"), [
    (SingleStrategy(arm="a"), ["a"], "single: all traffic to a"),
    (ShadowStrategy(primary="a", shadows=["b", "c"]), ["a", "b", "c"], "b, c get a copy"),
    (CanaryStrategy(stable="a", canary="b", percent=10, steps=[10, 50]), ["a", "b"],
     "canary: 10% to b (stable a), steps 10→50 every 300s, sticky by key"),
    (ABStrategy(weights={"a": 3, "b": 1}), ["a", "b"], "ab: a 75%, b 25%"),
    (BanditStrategy(arms=["a", "b"], algorithm="epsilon_greedy", epsilon=0.2), ["a", "b"],
     "bandit (epsilon_greedy, epsilon 0.2) over a, b"),
])
def test_arms_and_description(strategy, arms, words) -> None:  # noqa: ANN001
    assert strategy_arms(strategy) == arms
    assert words in describe_strategy(strategy)


def test_ab_shares_are_normalised() -> None:
    assert ABStrategy(weights={"a": 50, "b": 150}).shares() == {"a": 0.25, "b": 0.75}


@pytest.mark.parametrize("bad", [
    {"kind": "canary", "stable": "a", "canary": "b", "percent": -1},
    {"kind": "canary", "stable": "a", "canary": "b", "percent": 10, "steps": [10, 101]},
    {"kind": "ab", "weights": {"a": 1, "b": -1}},
    {"kind": "ab", "weights": {"a": 1}},
    {"kind": "bandit", "arms": ["a", "b"], "epsilon": 1.5},
    {"kind": "bandit", "arms": ["a", "b"], "algorithm": "ucb"},
    {"kind": "shadow", "primary": "a", "shadows": []},
])
def test_field_bounds(bad: dict) -> None:
    with pytest.raises(ValidationError):
        parse_strategy(bad)


def test_deployment_helpers() -> None:
    dep = Deployment(name="d", model="m", arms=[Arm(name="champion", ref="@champion", version=1),
                                               Arm(name="challenger", ref="3", version=3)],
                     strategy=ABStrategy(weights={"challenger": 1, "champion": 1}),
                     revision=1, status="active", created_at=0, updated_at=0, created_by="x")
    assert dep.arm("challenger").version == 3 and dep.arm_names == ["champion", "challenger"]
    assert dep.stable_arm == "champion"  # A/B: the first declared arm
    assert dep.serving_arms == ["challenger", "champion"]
    assert dep.arm("champion").alias == "champion" and dep.arm("challenger").alias is None
    assert Arm(name="x", ref="latest", version=2).alias is None
    with pytest.raises(KeyError):
        dep.arm("nope")


def test_parse_guard() -> None:
    assert parse_guard("latency_p99_ms<=50") == {"metric": "latency_p99_ms", "op": "<=",
                                                 "threshold": 50.0}
    assert parse_guard("accuracy >= 0.9 @ 500")["min_samples"] == 500
    assert parse_guard("accuracy>=0.9", min_samples=7)["min_samples"] == 7
    for bad in ("error_rate<0.01", "cpu<=3", "error_rate<=abc", ""):
        with pytest.raises(errors.InvalidInput):
            parse_guard(bad)


def test_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("model: credit\narms: {champion: '@champion', challenger: 3}\n"
                    "strategy: {kind: canary, stable: champion, canary: challenger, "
                    "percent: 10}\nguards: ['error_rate<=0.01', "
                    "{metric: accuracy, op: '>=', threshold: 0.9}]\nauto: false\n")
    spec = load_spec_file(path)
    assert spec["arms"] == {"champion": "@champion", "challenger": 3}
    assert spec["guards"][0] == {"metric": "error_rate", "op": "<=", "threshold": 0.01}
    assert spec["auto"] is False


@pytest.mark.parametrize("text", ["- a\n- b\n", "model: m\ncolour: blue\n", "a: [1,\n"])
def test_bad_spec_files_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(errors.InvalidInput) as info:
        load_spec_file(path)
    assert info.value.field == "file"
    with pytest.raises(errors.InvalidInput, match="cannot read"):
        load_spec_file(tmp_path / "missing.yaml")


def test_parse_relative_guards() -> None:
    assert parse_guard("accuracy>=stable-0.02@50") == {
        "metric": "accuracy", "op": ">=", "threshold": -0.02, "compare": "difference",
        "min_samples": 50}
    assert parse_guard("accuracy>=stable")["threshold"] == 0.0
    assert parse_guard("reward_mean >= stable + 0.1")["threshold"] == 0.1
    assert parse_guard("latency_p99_ms<=stable*1.2") == {
        "metric": "latency_p99_ms", "op": "<=", "threshold": 1.2, "compare": "ratio"}
    assert "compare" not in parse_guard("accuracy>=0.7")  # absolute: stored as before


@pytest.mark.parametrize(("text", "message"), [
    ("accuracy>=stable/2", "'stable/2' is not a limit"),
    ("accuracy>=stable--0.02", "'stable--0.02' is not a limit"),
    ("accuracy>=stablest", "'stablest' is not a limit"),
    ("accuracy>=stable-x", "'x' is not a number"),
    ("latency_p99_ms<=stable*0", "the ratio must be above 0"),
    ("latency_p99_ms<=stable*-1.2", "the ratio must be above 0"),
    ("accuracy>=nan", "'nan' is not a finite number"),
    ("accuracy>=stable-inf", "'inf' is not a finite number"),
    ("accuracy>=", "write METRIC<=LIMIT"),
    ("cpu>=stable", "unknown metric 'cpu'"),
])
def test_bad_relative_guards_name_the_guard(text: str, message: str) -> None:
    with pytest.raises(errors.InvalidInput) as info:
        parse_guard(text)
    assert info.value.message.startswith(f"invalid guard {text!r}: ")
    assert message in info.value.message and info.value.field == "guards"


def test_a_spec_stored_before_relative_guards_still_reads() -> None:
    """Guards stored without ``compare`` (every deployment made before it existed) are
    absolute: the field's default, so no migration is needed."""
    stored = {"name": "d", "model": "m", "arms": [{"name": "a", "ref": "1", "version": 1}],
              "strategy": {"kind": "single", "arm": "a"},
              "guards": [{"metric": "accuracy", "op": ">=", "threshold": 0.7,
                          "min_samples": 25}],
              "auto": True, "revision": 1, "status": "active", "created_at": 0,
              "updated_at": 0, "created_by": "me"}
    [guard] = Deployment.model_validate(stored).guards
    assert guard.compare == "absolute" and not guard.relative and guard.holds(0.7)
    assert str(guard) == "accuracy>=0.7"


def test_relative_guards_in_a_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("model: credit\nguards: ['accuracy>=stable-0.02@200', "
                    "{metric: latency_p99_ms, op: '<=', threshold: 1.2, compare: ratio}]\n")
    guards = load_spec_file(path)["guards"]
    assert guards[0] == {"metric": "accuracy", "op": ">=", "threshold": -0.02,
                         "compare": "difference", "min_samples": 200}
    assert guards[1]["compare"] == "ratio"
