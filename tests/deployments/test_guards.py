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
