"""A synthetic, seeded credit-risk data set: one row per loan application.

The label ``default`` comes from a logistic model of plausible risk drivers (debt-to-income,
late payments, short credit history, loan size relative to income, purpose, home ownership)
plus noise, with the intercept calibrated so that about 20% of applicants default. Incomes
differ by ``gender`` (the protected attribute, not a model feature), so models can show a
disparity through proxies that fairness checks find. ``application_date`` spans two years and
loan amounts drift upwards over it, which later steps use for point-in-time features and drift.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shipyard import errors

__all__ = [
    "make_credit_data",
    "NUMERIC_FEATURES",
    "CATEGORICAL_FEATURES",
    "FEATURES",
    "LABEL",
    "PROTECTED_ATTRIBUTE",
    "ID_COLUMN",
    "TIME_COLUMN",
]

NUMERIC_FEATURES = [
    "age", "income", "debt", "debt_to_income", "credit_history_months", "num_open_accounts",
    "num_late_payments", "loan_amount", "employment_years",
]
CATEGORICAL_FEATURES = ["loan_purpose", "home_ownership"]
#: The columns models train on (the protected attribute, ids and dates are left out).
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES
LABEL = "default"
PROTECTED_ATTRIBUTE = "gender"
ID_COLUMN = "customer_id"
TIME_COLUMN = "application_date"

_PURPOSES = {  # name: (share of applications, effect on the log-odds of default)
    "debt_consolidation": (0.34, 0.25), "credit_card": (0.22, 0.10),
    "home_improvement": (0.12, -0.25), "car": (0.12, -0.15), "medical": (0.07, 0.35),
    "small_business": (0.06, 0.60), "education": (0.07, 0.05),
}
_HOME = {"RENT": 0.25, "MORTGAGE": -0.10, "OWN": -0.30}  # effect on the log-odds
_TARGET_DEFAULT_RATE = 0.20
_START = np.datetime64("2023-01-01")
_DAYS = 730


def make_credit_data(n_rows: int = 5000, seed: int = 7) -> pd.DataFrame:
    """``n_rows`` loan applications, the same for the same ``seed``, sorted by date.

    Columns: customer_id, application_date, age, gender, income, employment_years,
    home_ownership, debt, debt_to_income, credit_history_months, num_open_accounts,
    num_late_payments, loan_amount, loan_purpose and the label ``default`` (0/1, ~20%).
    Categorical columns have the pandas ``category`` dtype.
    """
    if not isinstance(n_rows, int) or n_rows < 1:
        raise errors.InvalidInput(f"n_rows must be a positive integer, got {n_rows!r}",
                                  field="n_rows")
    rng = np.random.default_rng(seed)
    people = _people(rng, n_rows)
    credit = _credit(rng, people)
    df = pd.DataFrame({**people, **credit})
    df[LABEL] = _default_label(rng, df)
    df = df.sort_values(TIME_COLUMN, kind="stable").reset_index(drop=True)
    df.insert(0, ID_COLUMN, [f"C{100000 + i}" for i in range(n_rows)])
    for col in (PROTECTED_ATTRIBUTE, *CATEGORICAL_FEATURES):
        df[col] = df[col].astype("category")
    return df[[ID_COLUMN, TIME_COLUMN, "age", PROTECTED_ATTRIBUTE, "income",
               "employment_years", "home_ownership", "debt", "debt_to_income",
               "credit_history_months", "num_open_accounts", "num_late_payments",
               "loan_amount", "loan_purpose", LABEL]]


def _people(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    days = rng.integers(0, _DAYS, n)
    age = np.clip(rng.normal(42, 12, n), 21, 75).round().astype(int)
    gender = rng.choice(np.array(["F", "M"]), n, p=[0.48, 0.52])
    employment = np.minimum(age - 18, rng.gamma(2.0, 3.5, n)).round().astype(int)
    log_income = (10.65 + 0.012 * (age - 40) - 0.0004 * (age - 40) ** 2
                  + 0.015 * employment - 0.18 * (gender == "F") + rng.normal(0, 0.42, n))
    income = (np.exp(log_income) / 100).round() * 100
    p_own = 1 / (1 + np.exp(-(-3.2 + 0.05 * age)))
    p_mortgage = np.clip(0.25 + 0.25 * (income > 55_000), 0, 1 - p_own)
    draw = rng.random(n)
    home = np.where(draw < p_own, "OWN", np.where(draw < p_own + p_mortgage, "MORTGAGE", "RENT"))
    return {TIME_COLUMN: (_START + days.astype("timedelta64[D]")).astype("datetime64[ns]"),
            "age": age,
            PROTECTED_ATTRIBUTE: gender, "income": income, "employment_years": employment,
            "home_ownership": home}


def _credit(rng: np.random.Generator, people: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    age, income = people["age"], people["income"]
    n = len(age)
    dti = np.clip(rng.beta(2.0, 5.0, n) * 0.9, 0.0, 0.85)
    debt = (dti * income / 10).round() * 10
    history = np.minimum((age - 18) * 12, rng.gamma(3.0, 30.0, n)).round().astype(int)
    accounts = rng.poisson(1.5 + income / 30_000)
    late = rng.poisson(0.25 + 1.6 * dti + 0.4 * (history < 36))
    # 0 at the first application day, 1 two years later: loans grow ~12% over that time
    elapsed = (people[TIME_COLUMN] - _START).astype("timedelta64[D]").astype(int) / _DAYS
    loan = np.clip(rng.lognormal(np.log(0.25 * income), 0.5) * (1 + 0.12 * elapsed),
                   1_000, 60_000)
    names = list(_PURPOSES)
    purpose = rng.choice(np.array(names), n, p=[_PURPOSES[k][0] for k in names])
    return {"debt": debt, "debt_to_income": (debt / income).round(4),
            "credit_history_months": history, "num_open_accounts": accounts,
            "num_late_payments": late, "loan_amount": (loan / 50).round() * 50,
            "loan_purpose": purpose}


def _default_label(rng: np.random.Generator, df: pd.DataFrame) -> np.ndarray:
    logit = (
        4.0 * (df["debt_to_income"] - 0.25)
        + 0.60 * df["num_late_payments"]
        - 0.012 * df["credit_history_months"]
        + 1.6 * (df["loan_amount"] / df["income"])
        - 0.05 * df["employment_years"]
        - 0.90 * np.log(df["income"] / 45_000)
        + 0.15 * (df["num_open_accounts"] > 6)
        + df["loan_purpose"].map(lambda p: _PURPOSES[p][1])
        + df["home_ownership"].map(_HOME)
        + rng.normal(0, 0.4, len(df))
    ).to_numpy(dtype=float)
    intercept = _calibrate_intercept(logit, _TARGET_DEFAULT_RATE)
    p = 1 / (1 + np.exp(-(logit + intercept)))
    return (rng.random(len(df)) < p).astype(int)


def _calibrate_intercept(logit: np.ndarray, rate: float) -> float:
    """The intercept that makes the mean predicted probability equal ``rate`` (bisection)."""
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if np.mean(1 / (1 + np.exp(-(logit + mid)))) < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
