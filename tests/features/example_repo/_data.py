"""Writes the example repository's Parquet sources (not a repository file: it starts with _).

``write_example_data(repo_dir)`` creates ``repo_dir/data/customer_profile.parquet`` and
``transaction_stats.parquet`` for a few customers over a month, deterministically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

N_CUSTOMERS = 20
START = pd.Timestamp("2024-01-01", tz="UTC")


def write_example_data(repo_dir: Path, n_customers: int = N_CUSTOMERS, days: int = 30) -> Path:
    rng = np.random.default_rng(7)
    data = repo_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    ids = np.arange(1001, 1001 + n_customers, dtype="int64")
    profile = pd.DataFrame({
        "customer_id": np.concatenate([ids, ids]),
        "event_timestamp": [START] * n_customers + [START + pd.Timedelta(days=days // 2)]
        * n_customers,
        "income": np.round(rng.uniform(20_000, 120_000, 2 * n_customers), 2),
        "age": rng.integers(21, 70, 2 * n_customers).astype("int64"),
        "employment_years": np.round(rng.uniform(0, 30, 2 * n_customers), 1),
    })
    profile.to_parquet(data / "customer_profile.parquet", index=False)
    stamps = pd.date_range(START, periods=days, freq="D")
    grid = pd.MultiIndex.from_product([ids, stamps], names=["customer_id", "event_timestamp"])
    stats = grid.to_frame(index=False)
    stats["txn_count_7d"] = rng.poisson(12, len(stats)).astype("int64")
    stats["txn_amount_7d"] = np.round(rng.gamma(2.0, 150.0, len(stats)), 2)
    stats["late_payments_90d"] = rng.poisson(0.3, len(stats)).astype("int64")
    stats.to_parquet(data / "transaction_stats.parquet", index=False)
    return data
