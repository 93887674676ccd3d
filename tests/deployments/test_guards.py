"""evaluate_guards: hold without enough samples, roll back on a breach, promote at the end."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.deployments import Guard, evaluate_guards

ERRORS = Guard(metric="error_rate", op="<=", threshold=0.01, min_samples=100)
LATENCY = Guard(metric="latency_p99_ms", op="<=", threshold=50, min_samples=100)
ACCURACY = Guard(metric="accuracy", op=">=", threshold=0.9, min_samples=20)


def test_every_guard_holding_at_the_last_step_promotes() -> None:
    result = evaluate_guards([ERRORS, LATENCY], {"error_rate": 0.002, "latency_p99_ms": 31,
                                                 "samples": 500})
    assert result.action == "promote"
    assert len(result.reasons) == 2 and all("holds" in r for r in result.reasons)


def test_a_canary_with_steps_left_holds_even_when_healthy() -> None:
    result = evaluate_guards([ERRORS], {"error_rate": 0.0, "samples": 500}, last_step=False)
    assert result.action == "hold" and "steps left" in result.reasons[-1]


def test_too_few_samples_hold() -> None:
    result = evaluate_guards([ERRORS, LATENCY], {"error_rate": 0.0, "latency_p99_ms": 10,
                                                 "samples": 99})
    assert result.action == "hold"
    assert "99 of 100 samples" in result.reasons[0]


def test_per_metric_sample_counts_win_over_the_shared_one() -> None:
    evidence = {"error_rate": 0.0, "error_rate_samples": 150, "accuracy": 0.95,
                "accuracy_samples": 5, "samples": 1000}
    result = evaluate_guards([ERRORS, ACCURACY], evidence)
    assert result.action == "hold"
    assert any("accuracy" in r and "5 of 20" in r for r in result.reasons)


def test_a_missing_measurement_holds() -> None:
    result = evaluate_guards([ACCURACY], {"samples": 1000})
    assert result.action == "hold" and "no measurement" in result.reasons[0]


def test_a_breach_rolls_back_even_while_another_guard_waits() -> None:
    evidence = {"error_rate": 0.05, "error_rate_samples": 200, "latency_p99_ms": 10,
                "latency_p99_ms_samples": 3}
    result = evaluate_guards([LATENCY, ERRORS], evidence)
    assert result.action == "rollback"
    assert result.reasons[0].startswith("error_rate<=0.01: breached")


def test_a_breach_below_min_samples_is_not_yet_a_breach() -> None:
    result = evaluate_guards([ERRORS], {"error_rate": 0.5, "samples": 10})
    assert result.action == "hold"


def test_greater_or_equal_guards_and_dict_guards() -> None:
    guards = [{"metric": "reward_mean", "op": ">=", "threshold": 0.3, "min_samples": 10}]
    assert evaluate_guards(guards, {"reward_mean": 0.31, "samples": 10}).action == "promote"
    assert evaluate_guards(guards, {"reward_mean": 0.29, "samples": 10}).action == "rollback"


def test_no_guards_promote_at_the_last_step_only() -> None:
    assert evaluate_guards([], {}).action == "promote"
    assert evaluate_guards([], {}, last_step=False).action == "hold"


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1), st.integers(0, 1000), st.floats(0, 1), st.integers(0, 1000),
       st.booleans())
def test_the_decision_follows_the_rules(err: float, n_err: int, acc: float, n_acc: int,
                                        last: bool) -> None:
    evidence = {"error_rate": err, "error_rate_samples": n_err, "accuracy": acc,
                "accuracy_samples": n_acc}
    result = evaluate_guards([ERRORS, ACCURACY], evidence, last_step=last)
    breached = (n_err >= 100 and err > 0.01) or (n_acc >= 20 and acc < 0.9)
    waiting = n_err < 100 or n_acc < 20
    expected = "rollback" if breached else "hold" if waiting or not last else "promote"
    assert result.action == expected


@pytest.mark.parametrize("text", ["error_rate<=0.01", "error_rate <= 1e-2"])
def test_guard_str_round_trips_through_parse_guard(text: str) -> None:
    from shipyard.deployments import parse_guard

    assert str(Guard.model_validate(parse_guard(text))) == "error_rate<=0.01"


# -- relative guards: the arm under test against the stable arm ----------------------------------

NO_WORSE = Guard(metric="accuracy", op=">=", threshold=-0.02, min_samples=25,
                 compare="difference")
NOT_SLOWER = Guard(metric="latency_p99_ms", op="<=", threshold=1.2, min_samples=10,
                   compare="ratio")


def acc(value: float | None, n: int) -> dict[str, float | int | None]:
    return {"accuracy": value, "accuracy_samples": n}


def test_a_canary_worse_than_stable_by_more_than_the_margin_breaches() -> None:
    """The quickstart's case: 0.77 passes accuracy>=0.7, but is far below the champion."""
    absolute = Guard(metric="accuracy", op=">=", threshold=0.7, min_samples=25)
    assert evaluate_guards([absolute], acc(0.77, 49)).action == "promote"
    result = evaluate_guards([NO_WORSE], acc(0.77, 49), stable=acc(0.852, 364),
                             arm="challenger", stable_arm="production")
    assert result.action == "rollback"
    assert result.reasons == ["accuracy>=stable-0.02: breached (challenger 0.770 vs "
                              "production 0.852 over 49/364 samples, difference -0.082)"]


def test_a_canary_within_the_margin_holds_and_says_both_values() -> None:
    result = evaluate_guards([NO_WORSE], acc(0.84, 60), stable=acc(0.85, 300))
    assert result.action == "promote"
    assert result.reasons == ["accuracy>=stable-0.02: holds (canary 0.840 vs stable 0.850 "
                              "over 60/300 samples, difference -0.010)"]
    better = evaluate_guards([NO_WORSE], acc(0.9, 60), stable=acc(0.85, 300))
    assert better.action == "promote" and "difference +0.050" in better.reasons[0]


@pytest.mark.parametrize(("canary_n", "stable_n"), [(24, 500), (500, 24), (3, 3)])
def test_a_relative_guard_waits_for_min_samples_on_both_arms(canary_n: int,
                                                             stable_n: int) -> None:
    result = evaluate_guards([NO_WORSE], acc(0.1, canary_n), stable=acc(0.99, stable_n))
    assert result.action == "hold"  # a huge gap, but not enough data on one arm
    assert result.reasons == [f"accuracy>=stable-0.02: samples so far canary {canary_n}, "
                              f"stable {stable_n}; each arm needs 25 (canary 0.100 vs "
                              "stable 0.990)"]


def test_a_relative_guard_waits_for_a_measurement_of_each_arm() -> None:
    no_stable = evaluate_guards([NO_WORSE], acc(0.8, 100), stable=acc(None, 0))
    assert no_stable.action == "hold"
    assert "no measurement of accuracy yet (stable)" in no_stable.reasons[0]
    neither = evaluate_guards([NO_WORSE], acc(None, 0), stable={})
    assert "(canary and stable)" in neither.reasons[0]


def test_the_old_call_without_stable_evidence_still_works() -> None:
    """Absolute guards judge as before; a relative one cannot judge, so it holds (never a
    silent promote)."""
    assert evaluate_guards([ERRORS], {"error_rate": 0.0, "samples": 500}).action == "promote"
    result = evaluate_guards([ERRORS, NO_WORSE], {"error_rate": 0.0, "samples": 500,
                                                  **acc(0.9, 500)})
    assert result.action == "hold"
    assert result.reasons[0] == ("accuracy>=stable-0.02: no evidence of the stable arm to "
                                 "compare with")


def test_a_ratio_guard_compares_with_a_multiple_of_stable() -> None:
    def p99(ms: float, n: int = 50) -> dict[str, float | int | None]:
        return {"latency_p99_ms": ms, "latency_p99_ms_samples": n}

    slow = evaluate_guards([NOT_SLOWER], p99(30.0), stable=p99(20.0))
    assert slow.action == "rollback"
    assert slow.reasons == ["latency_p99_ms<=stable*1.2: breached (canary 30.000 vs stable "
                            "20.000 over 50/50 samples, ratio 1.500)"]
    close = evaluate_guards([NOT_SLOWER], p99(23.0), stable=p99(20.0))
    assert close.action == "promote" and "ratio 1.150" in close.reasons[0]
    zero = Guard(metric="error_rate", op="<=", threshold=2, min_samples=10, compare="ratio")
    rates = ({"error_rate": 0.01, "samples": 50}, {"error_rate": 0.0, "samples": 50})
    stopped = evaluate_guards([zero], rates[0], stable=rates[1])
    assert stopped.action == "rollback"  # 0.01 > 2 × 0: no division by zero either
    assert "ratio n/a: the stable value is 0" in stopped.reasons[0]


def test_relative_and_absolute_guards_mix_and_a_breach_outranks_waiting() -> None:
    canary = {"error_rate": 0.2, "error_rate_samples": 200, **acc(0.9, 3)}
    stable = {"error_rate": 0.0, "error_rate_samples": 600, **acc(0.9, 3)}
    result = evaluate_guards([NO_WORSE, ERRORS], canary, stable=stable)
    assert result.action == "rollback"
    assert result.reasons[0].startswith("error_rate<=0.01: breached")
    assert result.reasons[1].startswith("accuracy>=stable-0.02: samples so far")


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1), st.integers(0, 60), st.floats(0, 1), st.integers(0, 60),
       st.booleans())
def test_the_relative_decision_follows_the_rules(canary: float, n: int, stable: float,
                                                 m: int, last: bool) -> None:
    result = evaluate_guards([NO_WORSE], acc(canary, n), stable=acc(stable, m),
                             last_step=last)
    enough = n >= 25 and m >= 25
    breached = enough and canary - stable < -0.02
    expected = "rollback" if breached else "promote" if enough and last else "hold"
    assert result.action == expected


@pytest.mark.parametrize(("text", "shown"), [
    ("accuracy>=stable-0.02", "accuracy>=stable-0.02"),
    ("accuracy >= stable - 0.02 @ 50", "accuracy>=stable-0.02"),
    ("accuracy>=stable+0.01", "accuracy>=stable+0.01"),
    ("accuracy>=stable", "accuracy>=stable"),
    ("latency_p99_ms<=stable*1.2", "latency_p99_ms<=stable*1.2"),
])
def test_relative_guard_text_round_trips(text: str, shown: str) -> None:
    from shipyard.deployments import parse_guard

    guard = Guard.model_validate(parse_guard(text))
    assert guard.relative and str(guard) == shown
    assert Guard.model_validate(parse_guard(str(guard))) == guard.model_copy(
        update={"min_samples": 100})
