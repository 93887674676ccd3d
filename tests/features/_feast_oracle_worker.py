"""Run inside a virtual environment with ``feast[duckdb]``: Feast's DuckDB offline store on
the given data, result written to Parquet. Usage: python _feast_oracle_worker.py WORKDIR.

WORKDIR holds ``features.parquet`` (customer_id, event_timestamp, created, f1, f2),
``entities.parquet`` (row_id, customer_id, event_timestamp) and ``ttl_seconds``; the
result goes to ``feast.parquet``.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.types import Float64

work = Path(sys.argv[1])
repo = work / "feast_repo"
repo.mkdir(exist_ok=True)
(repo / "feature_store.yaml").write_text(
    "project: oracle\nregistry: registry.db\nprovider: local\n"
    "offline_store:\n  type: duckdb\n"
    f"online_store:\n  type: sqlite\n  path: {repo / 'online.db'}\n"
    "entity_key_serialization_version: 3\n")
ttl = timedelta(seconds=int((work / "ttl_seconds").read_text()))
customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
source = FileSource(path=str(work / "features.parquet"), timestamp_field="event_timestamp",
                    created_timestamp_column="created")
view = FeatureView(name="stats", entities=[customer], ttl=ttl, source=source,
                   schema=[Field(name="f1", dtype=Float64), Field(name="f2", dtype=Float64)])
store = FeatureStore(repo_path=str(repo))
store.apply([customer, view])
entity_df = pd.read_parquet(work / "entities.parquet")
result = store.get_historical_features(entity_df=entity_df,
                                       features=["stats:f1", "stats:f2"]).to_df()
result.to_parquet(work / "feast.parquet", index=False)
