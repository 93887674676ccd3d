"""Comparing two arms: Welch's t-test on means, a two-proportion z-test on rates. Pure.

Written out here rather than imported from scipy: the router and ``shipyard deployments
analyze`` need two tail probabilities and two quantiles, and importing ``scipy.stats`` costs
more than all of it. The tests check every number against scipy.

``a`` is the baseline, ``b`` the arm compared with it: ``diff = b - a``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shipyard import errors

from ._spec import ArmStats

__all__ = ["Comparison", "compare_arms", "student_t_sf", "student_t_ppf"]

_NORMAL = NormalDist()


class Comparison(BaseModel):
    """``diff = b - a`` with its two-sided confidence interval and test."""

    model_config = ConfigDict(frozen=True)

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: Literal["welch_t", "two_proportion_z"]
    n_a: int
    n_b: int
    mean_a: float = math.nan
    mean_b: float = math.nan
    confidence: float = 0.95

    def significant(self, alpha: float | None = None) -> bool:
        """Whether the difference is significant at ``alpha`` (default 1 − confidence)."""
        return self.p_value < (1 - self.confidence if alpha is None else alpha)


def compare_arms(a: ArmStats | Sequence[float], b: ArmStats | Sequence[float], *,
                 kind: Literal["mean", "proportion"] = "mean",
                 confidence: float = 0.95) -> Comparison:
    """Compare arm ``b`` with arm ``a``.

    Each side is an :class:`ArmStats` (``mean``: its rewards, sum and sum of squares;
    ``proportion``: its successes and failures) or the raw observations (``proportion``:
    values of 0 and 1). ``mean`` runs Welch's t-test (unequal variances); ``proportion`` a
    two-proportion z-test with the pooled rate, and a Wald interval on the difference.
    """
    if not 0 < confidence < 1:
        raise errors.InvalidInput(f"confidence must be between 0 and 1, not {confidence}",
                                  field="confidence")
    if kind == "mean":
        return _welch(_moments(a, "a"), _moments(b, "b"), confidence)
    if kind == "proportion":
        return _proportions(_counts(a, "a"), _counts(b, "b"), confidence)
    raise errors.InvalidInput(f"kind must be 'mean' or 'proportion', not {kind!r}",
                              field="kind")


def _moments(side: ArmStats | Sequence[float], name: str) -> tuple[int, float, float]:
    """(n, mean, sample variance)."""
    if isinstance(side, ArmStats):
        n = side.rewards
        if n < 2:
            raise errors.InvalidInput(f"arm {side.arm!r} has {n} rewards; a comparison of "
                                      "means needs at least 2 per arm", field=name)
        mean = side.reward_sum / n
        var = max(0.0, (side.reward_sq_sum - n * mean * mean) / (n - 1))
        return n, mean, var
    values = [float(v) for v in side]
    n = len(values)
    if n < 2:
        raise errors.InvalidInput(f"{name} has {n} observations; a comparison of means "
                                  "needs at least 2 per arm", field=name)
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return n, mean, var


def _counts(side: ArmStats | Sequence[float], name: str) -> tuple[int, float]:
    """(n, successes)."""
    if isinstance(side, ArmStats):
        n, successes = side.successes + side.failures, side.successes
    else:
        values = [float(v) for v in side]
        if any(v not in (0.0, 1.0) for v in values):
            raise errors.InvalidInput(f"{name}: a comparison of proportions takes values of "
                                      "0 and 1", field=name)
        n, successes = len(values), sum(values)
    if n < 1:
        raise errors.InvalidInput(f"{name} has no observations with a success flag",
                                  field=name)
    return int(round(n)), successes


def _welch(a: tuple[int, float, float], b: tuple[int, float, float],
           confidence: float) -> Comparison:
    (na, ma, va), (nb, mb, vb) = a, b
    diff = mb - ma
    wa, wb = va / na, vb / nb
    se = math.sqrt(wa + wb)
    if se == 0:  # both arms constant: the difference is exact
        return Comparison(diff=diff, ci_low=diff, ci_high=diff,
                          p_value=1.0 if diff == 0 else 0.0, test="welch_t", n_a=na, n_b=nb,
                          mean_a=ma, mean_b=mb, confidence=confidence)
    df = (wa + wb) ** 2 / (wa * wa / (na - 1) + wb * wb / (nb - 1))
    t = diff / se
    p = min(1.0, 2 * student_t_sf(abs(t), df))
    half = student_t_ppf(1 - (1 - confidence) / 2, df) * se
    return Comparison(diff=diff, ci_low=diff - half, ci_high=diff + half, p_value=p,
                      test="welch_t", n_a=na, n_b=nb, mean_a=ma, mean_b=mb,
                      confidence=confidence)


def _proportions(a: tuple[int, float], b: tuple[int, float], confidence: float) -> Comparison:
    (na, sa), (nb, sb) = a, b
    pa, pb = sa / na, sb / nb
    diff = pb - pa
    pooled = (sa + sb) / (na + nb)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    if se_pooled == 0:
        p = 1.0 if diff == 0 else 0.0
    else:
        p = min(1.0, math.erfc(abs(diff / se_pooled) / math.sqrt(2)))  # exact in the tail
    se = math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    half = _NORMAL.inv_cdf(1 - (1 - confidence) / 2) * se
    return Comparison(diff=diff, ci_low=diff - half, ci_high=diff + half, p_value=p,
                      test="two_proportion_z", n_a=na, n_b=nb, mean_a=pa, mean_b=pb,
                      confidence=confidence)


# -- Student's t distribution -------------------------------------------------------------------

def student_t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1 - tail


def student_t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t (bisection on :func:`student_t_sf`; 0 < q < 1)."""
    if q == 0.5:
        return 0.0
    if q < 0.5:
        return -student_t_ppf(1 - q, df)
    target = 1 - q
    lo, hi = 0.0, max(1.0, _NORMAL.inv_cdf(q))
    while student_t_sf(hi, df) > target:
        lo, hi = hi, hi * 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if student_t_sf(mid, df) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return (lo + hi) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):  # the continued fraction converges fast on this side
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1 - math.exp(log_front) * _beta_cf(b, a, 1 - x) / b


def _beta_cf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
                    -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h
