"""compare_arms against scipy: Welch's t-test and a two-proportion z-test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from shipyard import errors
from shipyard.deployments import ArmStats, compare_arms
from shipyard.deployments._stats import student_t_ppf, student_t_sf


def _arm(name: str, values: list[float]) -> ArmStats:
    return ArmStats(arm=name, rewards=len(values), reward_sum=math.fsum(values),
                    reward_sq_sum=math.fsum(v * v for v in values))


def _welch_ci(a: np.ndarray, b: np.ndarray, confidence: float) -> tuple[float, float]:
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(1 - (1 - confidence) / 2, df) * math.sqrt(va + vb)
    diff = b.mean() - a.mean()
    return diff - half, diff + half


@pytest.mark.parametrize("df", [1, 2.5, 7, 30, 250, 10_000])
@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 1.96, 4.5, 12.0, -2.2])
def test_t_tail_matches_scipy(t: float, df: float) -> None:
    assert student_t_sf(t, df) == pytest.approx(stats.t.sf(t, df), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("df", [1, 3, 12.5, 99, 5000])
@pytest.mark.parametrize("q", [0.6, 0.9, 0.975, 0.995, 0.025])
def test_t_quantile_matches_scipy(q: float, df: float) -> None:
    assert student_t_ppf(q, df) == pytest.approx(stats.t.ppf(q, df), rel=1e-8)


def test_welch_on_known_samples() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(1.0, 1.0, 400), rng.normal(1.2, 2.0, 300)
    got = compare_arms(_arm("a", list(a)), _arm("b", list(b)), kind="mean")
    want = stats.ttest_ind(b, a, equal_var=False)
    assert got.test == "welch_t" and (got.n_a, got.n_b) == (400, 300)
    assert got.diff == pytest.approx(b.mean() - a.mean())
    assert got.p_value == pytest.approx(want.pvalue, rel=1e-7)
    assert (got.ci_low, got.ci_high) == pytest.approx(_welch_ci(a, b, 0.95), rel=1e-7)
    ci = want.confidence_interval(0.95)  # scipy's own interval, for b - a
    assert (got.ci_low, got.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-7)


_samples = st.lists(st.floats(-100, 100, allow_nan=False).map(lambda v: round(v, 3)),
                    min_size=3, max_size=60)


@settings(max_examples=80, deadline=None)
@given(_samples, _samples, st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_welch_matches_scipy_for_any_samples(a: list[float], b: list[float],
                                             confidence: float) -> None:
    xa, xb = np.array(a), np.array(b)
    if xa.std() < 1e-3 or xb.std() < 1e-3:
        return  # (near-)constant arms: scipy's answer is nan
    got = compare_arms(a, b, kind="mean", confidence=confidence)
    want = stats.ttest_ind(xb, xa, equal_var=False)
    assert got.p_value == pytest.approx(want.pvalue, rel=1e-6, abs=1e-12)
    low, high = _welch_ci(xa, xb, confidence)
    assert got.ci_low == pytest.approx(low, rel=1e-6, abs=1e-9)
    assert got.ci_high == pytest.approx(high, rel=1e-6, abs=1e-9)
    # from summed state (what the router keeps) the answer is the same
    summed = compare_arms(_arm("a", a), _arm("b", b), kind="mean", confidence=confidence)
    assert summed.p_value == pytest.approx(got.p_value, rel=1e-4, abs=1e-9)


def _z_test(sa: int, na: int, sb: int, nb: int, confidence: float) -> tuple[float, ...]:
    pa, pb = sa / na, sb / nb
    pooled = (sa + sb) / (na + nb)
    z = (pb - pa) / math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    se = math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    half = stats.norm.ppf(1 - (1 - confidence) / 2) * se
    return 2 * stats.norm.sf(abs(z)), pb - pa - half, pb - pa + half


@settings(max_examples=120, deadline=None)
@given(st.integers(5, 5000), st.integers(5, 5000), st.floats(0.01, 0.99),
       st.floats(0.01, 0.99), st.sampled_from([0.9, 0.95, 0.99]))
def test_two_proportions_match_scipy(na: int, nb: int, ra: float, rb: float,
                                     confidence: float) -> None:
    sa, sb = max(1, min(na - 1, round(na * ra))), max(1, min(nb - 1, round(nb * rb)))
    a = ArmStats(arm="a", successes=sa, failures=na - sa)
    b = ArmStats(arm="b", successes=sb, failures=nb - sb)
    got = compare_arms(a, b, kind="proportion", confidence=confidence)
    p, low, high = _z_test(sa, na, sb, nb, confidence)
    assert got.test == "two_proportion_z" and (got.n_a, got.n_b) == (na, nb)
    assert got.diff == pytest.approx(sb / nb - sa / na)
    assert got.p_value == pytest.approx(p, rel=1e-9, abs=1e-300)
    assert (got.ci_low, got.ci_high) == pytest.approx((low, high), rel=1e-9, abs=1e-12)


def test_raw_zero_one_values_are_proportions() -> None:
    a, b = [1] * 30 + [0] * 70, [1] * 45 + [0] * 55
    got = compare_arms(a, b, kind="proportion")
    assert got.p_value == pytest.approx(_z_test(30, 100, 45, 100, 0.95)[0])
    assert got.significant() and not got.significant(alpha=0.01)


def test_identical_constant_arms_have_no_difference() -> None:
    got = compare_arms([2.0, 2.0, 2.0], [2.0, 2.0], kind="mean")
    assert (got.diff, got.ci_low, got.ci_high, got.p_value) == (0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize(("a", "b", "kind", "field"), [
    ([1.0], [1.0, 2.0], "mean", "a"),
    ([1.0, 2.0], [], "mean", "b"),
    ([0, 1, 2], [0, 1], "proportion", "a"),
    (ArmStats(arm="x"), ArmStats(arm="y", successes=1), "proportion", "a"),
    ([1.0, 2.0], [1.0, 2.0], "median", "kind"),
])
def test_bad_input_names_the_field(a, b, kind, field) -> None:  # noqa: ANN001
    with pytest.raises(errors.InvalidInput) as info:
        compare_arms(a, b, kind=kind)
    assert info.value.field == field


def test_confidence_must_be_a_probability() -> None:
    with pytest.raises(errors.InvalidInput, match="confidence"):
        compare_arms([1.0, 2.0], [1.0, 3.0], confidence=1.5)
