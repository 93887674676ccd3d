"""The offline point-in-time join equals Feast's DuckDB offline store, row for row.

Feast runs in a virtual environment of its own (``.venv-feast``, made by ``.ci/run``, or
``SHIPYARD_FEAST_PYTHON``), on the same Parquet files. Its DuckDB store and a pandas
``merge_asof`` reference agree with each other; Feast's default file (dask) store is not the
oracle (it drops entity rows whose answer is NULL).
"""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipyard.features import Entity, Feature, FeatureView, FileSource
from shipyard.features._offline import historical_features
from tests.conftest import service_unavailable

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_feast_oracle_worker.py")
TTL = timedelta(days=3)


def _feast_python() -> str:
    python = os.environ.get("SHIPYARD_FEAST_PYTHON") or str(ROOT / ".venv-feast" / "bin" /
                                                           "python")
    if not Path(python).exists():
        service_unavailable(f"no Feast environment at {python}: .ci/run creates it "
                            "(python -m venv .venv-feast && .venv-feast/bin/pip install "
                            "'feast[duckdb]')")
    return python


def _data(work: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_customers, n_rows = 60, 3000
    start = pd.Timestamp("2024-01-01", tz="UTC")
    # whole hours, so event-time ties are common; created times break them
    hours = rng.integers(0, 24 * 30, n_rows)
    features = pd.DataFrame({
        "customer_id": rng.integers(0, n_customers, n_rows).astype("int64"),
        "event_timestamp": start + pd.to_timedelta(hours, unit="h"),
        "created": start + pd.to_timedelta(hours * 60 + rng.integers(0, 10_000, n_rows),
                                           unit="min"),
        "f1": rng.normal(size=n_rows),
        "f2": rng.uniform(size=n_rows),
    })
    features = features.drop_duplicates(["customer_id", "event_timestamp", "created"])
    n_entities = 2000
    entity_hours = rng.integers(0, 24 * 34, n_entities)
    entities = pd.DataFrame({
        "row_id": np.arange(n_entities),
        # ids above n_customers are unknown keys
        "customer_id": rng.integers(0, n_customers + 5, n_entities).astype("int64"),
        "event_timestamp": start + pd.to_timedelta(entity_hours, unit="h"),
    })
    # exact matches on event time and TTL edges
    sample = features.sample(200, random_state=seed)
    entities.loc[:199, "customer_id"] = sample["customer_id"].to_numpy()
    times = sample["event_timestamp"].reset_index(drop=True)
    entities.loc[:99, "event_timestamp"] = times[:100].to_numpy()
    entities.loc[100:199, "event_timestamp"] = (times[100:] + pd.Timedelta(TTL)).to_numpy()
    entities = pd.concat([entities, entities.iloc[:50]], ignore_index=True)  # duplicates
    entities["row_id"] = np.arange(len(entities))
    features.to_parquet(work / "features.parquet", index=False)
    entities.to_parquet(work / "entities.parquet", index=False)
    (work / "ttl_seconds").write_text(str(int(TTL.total_seconds())))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_point_in_time_join_equals_feast_duckdb_store(tmp_path: Path, seed: int) -> None:
    python = _feast_python()
    _data(tmp_path, seed)
    done = subprocess.run([python, str(WORKER), str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "FEAST_USAGE": "False"})
    assert done.returncode == 0, done.stderr[-3000:]
    feast = pd.read_parquet(tmp_path / "feast.parquet").sort_values("row_id")

    view = FeatureView(name="stats", entities=["customer"], ttl=TTL,
                       schema=[Feature(name="f1", dtype="float64"),
                               Feature(name="f2", dtype="float64")],
                       source=FileSource(path=str(tmp_path / "features.parquet"),
                                         created_timestamp_field="created"))
    ours = historical_features(pd.read_parquet(tmp_path / "entities.parquet"),
                               [(view, ["f1", "f2"])],
                               entities={"customer": Entity(name="customer",
                                                            join_keys=["customer_id"])})
    assert list(ours["row_id"]) == list(range(len(ours)))  # every entity row, in order
    assert len(feast) == len(ours)
    for column in ("f1", "f2"):
        np.testing.assert_array_equal(ours[column].isna().to_numpy(),
                                      feast[column].isna().to_numpy(), err_msg=column)
        np.testing.assert_allclose(ours[column].to_numpy(dtype=float),
                                   feast[column].to_numpy(dtype=float), equal_nan=True)
    assert ours["f1"].notna().sum() > 500  # the comparison covers real matches
