"""The feature-store step: a feature repository for the credit data, point-in-time training
data, materialization to the online store, and a customer's features read back.

Two views with different cadences: ``customer_profile`` (income, debt, employment — a
snapshot taken now and then, kept for a year) and ``credit_activity`` (open accounts and
late payments — a daily aggregate, kept for a week).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from shipyard import errors
from shipyard.features import load_repo
from shipyard.fluent import get_historical_features, start_run

from ._data import ID_COLUMN, TIME_COLUMN

if TYPE_CHECKING:
    from ._run import QuickstartContext

__all__ = ["build_features", "REPO_SOURCE"]

REPO_SOURCE = '''"""Credit-risk features of the Shipyard quickstart."""

from datetime import timedelta
from pathlib import Path

from shipyard.features import Entity, Feature, FeatureService, FeatureView, FileSource, ValueType

DATA = Path(__file__).parent / "data"

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING,
                  description="A loan applicant.", owner="credit-risk")

customer_profile = FeatureView(
    name="customer_profile", entities=["customer"], ttl=timedelta(days=365), owner="credit-risk",
    description="Snapshot of declared income, debt and employment.",
    schema=[Feature(name="income", dtype=ValueType.FLOAT64),
            Feature(name="debt", dtype=ValueType.FLOAT64),
            Feature(name="employment_years", dtype=ValueType.FLOAT64)],
    source=FileSource(path=str(DATA / "customer_profile.parquet"),
                      created_timestamp_field="created"))

credit_activity = FeatureView(
    name="credit_activity", entities=["customer"], ttl=timedelta(days=7), owner="credit-risk",
    description="Daily aggregate of the credit bureau file.",
    schema=[Feature(name="num_open_accounts", dtype=ValueType.INT64),
            Feature(name="num_late_payments", dtype=ValueType.INT64)],
    source=FileSource(path=str(DATA / "credit_activity.parquet")))

credit_model_features = FeatureService(
    name="credit_model_features", owner="credit-risk",
    features=["customer_profile", "credit_activity"])
'''


def _write_sources(df: pd.DataFrame, data: Path, seed: int) -> None:
    """Feature rows observed before each application: profile snapshots and daily activity."""
    rng = np.random.default_rng(seed)
    data.mkdir(parents=True, exist_ok=True)
    applied = pd.to_datetime(df[TIME_COLUMN]).dt.tz_localize("UTC")
    lag = pd.to_timedelta(rng.integers(1, 90, len(df)), unit="D")
    profile = pd.DataFrame({ID_COLUMN: df[ID_COLUMN].to_numpy(),
                            "event_timestamp": applied - lag,
                            "created": applied - lag + pd.Timedelta(hours=2),
                            "income": df["income"].to_numpy(dtype=float),
                            "debt": df["debt"].to_numpy(dtype=float),
                            "employment_years": df["employment_years"].to_numpy(dtype=float)})
    profile.to_parquet(data / "customer_profile.parquet", index=False)
    days = [applied - pd.Timedelta(days=d) for d in (1, 3, 6)]
    activity = pd.concat([pd.DataFrame({
        ID_COLUMN: df[ID_COLUMN].to_numpy(), "event_timestamp": day,
        "num_open_accounts": df["num_open_accounts"].to_numpy(dtype="int64"),
        "num_late_payments": df["num_late_payments"].to_numpy(dtype="int64")})
        for day in days], ignore_index=True)
    # the newest snapshot of every customer is "today", so the online store has fresh values
    latest = activity.groupby(ID_COLUMN).tail(1).copy()
    latest["event_timestamp"] = pd.Timestamp.now(tz="UTC").floor("h")
    pd.concat([activity, latest], ignore_index=True).to_parquet(
        data / "credit_activity.parquet", index=False)
    latest_profile = profile.groupby(ID_COLUMN).tail(1).copy()
    latest_profile["event_timestamp"] = pd.Timestamp.now(tz="UTC").floor("h")
    latest_profile["created"] = latest_profile["event_timestamp"]
    pd.concat([profile, latest_profile], ignore_index=True).to_parquet(
        data / "customer_profile.parquet", index=False)


def build_features(ctx: QuickstartContext) -> None:
    """Write and apply the repository, build training data, materialize, read one back."""
    if ctx.data is None:
        raise errors.Conflict("the features step needs data: run the data step first")
    repo = ctx.home / "feature_repo"
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "credit.py").write_text(REPO_SOURCE)
    _write_sources(ctx.data, repo / "data", ctx.seed)
    plan = ctx.client.features.apply(load_repo(repo))
    ctx.console.print(f"Feature repository {repo}: {plan.summary()}")
    entity_df = ctx.data[[ID_COLUMN, TIME_COLUMN]].rename(
        columns={TIME_COLUMN: "event_timestamp"})
    entity_df["event_timestamp"] = pd.to_datetime(entity_df["event_timestamp"]).dt.tz_localize(
        "UTC")
    with start_run("credit-risk-features", run_name="training-data",
                   client=ctx.client) as run:
        training = get_historical_features(entity_df, feature_service="credit_model_features",
                                           client=ctx.client)
        run.log_metric("rows", len(training))
    matched = training["income"].notna().mean()
    ctx.console.print(f"Point-in-time training data: {len(training):,} rows, "
                      f"{matched:.0%} with a profile known at application time "
                      f"(recorded as an input of run {run.run_id[:8]})")
    results = ctx.client.feature_store.materialize(datetime.now(UTC), progress=False)
    written = sum(r.entities_written for r in results)
    ctx.console.print(f"Materialized {written:,} entity rows into "
                      f"{ctx.client.feature_store.online.url}")
    customer = str(ctx.data[ID_COLUMN].iloc[0])
    online = ctx.client.feature_store.get_online_features(
        [{ID_COLUMN: customer}], feature_service="credit_model_features")
    values = ", ".join(f"{k}={v} ({online.statuses[0][k]})"
                       for k, v in online.rows[0].items() if k != ID_COLUMN)
    ctx.console.print(f"Online features of customer {customer}: {values}")
    ctx.extras["feature_repo"] = repo
