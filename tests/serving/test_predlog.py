"""The prediction log: Parquet by day, written in the background, read back for monitoring."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from shipyard import errors
from shipyard.serving import PredictionLog, read_feedback, read_predictions
from shipyard.serving._predlog import LogEntry

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from .conftest import Registered


def entry(n: int, when: float | None = None, offset: int = 0) -> LogEntry:
    return LogEntry(timestamp=when or time.time(), model_version=3, model_digest="d" * 64,
                    inputs=pd.DataFrame({"x": np.arange(offset, offset + n, dtype=float)}),
                    predictions=np.arange(offset, offset + n) % 2,
                    probabilities=np.full((n, 2), 0.5),
                    prediction_ids=[f"{i:032x}" for i in range(offset, offset + n)],
                    request_ids=["r"] * n, endpoints=["predict"] * n, latency_ms=[1.5] * n)


def test_served_predictions_are_logged_and_readable(app_client: TestClient,
                                                    credit: Registered,
                                                    shipyard_home: Path) -> None:
    X = credit.X.iloc[:4]
    r = app_client.post("/predict", json={"records": X.to_dict("records")})
    ids = r.json()["prediction_ids"]
    r2 = app_client.post("/v2/models/credit/infer", json={"id": "abc", "inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP64",
         "data": X.iloc[:1].to_numpy(float).tolist()}]})
    assert r2.status_code == 200
    # The predict thread queues a batch's log entry right after answering it, so the last
    # entry may reach the log a moment after its response: flush until all five are there.
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    folder = shipyard_home / "predictions" / "credit" / f"date={day}"
    deadline = time.monotonic() + 10
    while True:
        app_client.app.state.serving.predlog.flush()  # type: ignore[attr-defined]
        files = list(folder.glob("*.parquet"))
        log = read_predictions(shipyard_home, "credit") if files else None
        if (log is not None and len(log) >= 5) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert files, "no part file under predictions/credit/date=<today>"
    assert log is not None and len(log) == 5
    assert log["prediction_id"].tolist()[:4] == ids
    assert set(log["model_name"]) == {"credit"} and set(log["model_version"]) == {1}
    assert set(log["model_digest"]) == {app_client.app.state.serving.served.digest}  # type: ignore[attr-defined]
    assert log["endpoint"].tolist() == ["predict"] * 4 + ["v2"]
    assert log["request_id"].iloc[4] == "abc"
    assert log["input.age"].tolist() == X["age"].tolist() + [X["age"].iloc[0]]
    assert log["prediction"].tolist()[:4] == credit.model.predict(X).tolist()
    assert (log["latency_ms"] > 0).all()
    assert str(log["timestamp"].dt.tz) == "UTC"
    assert len(log["probabilities"].iloc[0]) == 2


def test_the_writer_flushes_by_rows_and_by_time(tmp_path: Path) -> None:
    plog = PredictionLog(tmp_path, "m", flush_interval=0.2, flush_rows=10)
    plog.append(entry(12))  # over flush_rows: written at once
    deadline = time.monotonic() + 5
    while plog.rows_written < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert plog.rows_written == 12
    plog.append(entry(3, offset=12))  # under: written when the interval is up
    while plog.rows_written < 15 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert plog.rows_written == 15
    plog.close()
    assert len(read_predictions(tmp_path, "m")) == 15
    with pytest.raises(errors.Conflict):
        plog.append(entry(1))


def test_days_are_partitions_and_since_prunes_them(tmp_path: Path) -> None:
    plog = PredictionLog(tmp_path, "m")
    old = datetime(2024, 1, 1, 23, 59, tzinfo=UTC)
    plog.append(entry(2, when=old.timestamp()))
    plog.append(entry(3, when=(old + timedelta(minutes=2)).timestamp(), offset=2))
    plog.close()
    days = sorted(p.name for p in (tmp_path / "predictions" / "m").iterdir())
    assert days == ["date=2024-01-01", "date=2024-01-02"]
    assert len(read_predictions(tmp_path, "m")) == 5
    assert len(read_predictions(tmp_path, "m", since="2024-01-02")) == 3
    assert len(read_predictions(tmp_path, "m", since=old + timedelta(minutes=1))) == 3
    assert len(read_predictions(tmp_path, "m", since=datetime(2025, 1, 1))) == 0
    with pytest.raises(errors.InvalidInput, match="not an ISO date"):
        read_predictions(tmp_path, "m", since="yesterday")


def test_reading_nothing_and_bad_names(tmp_path: Path) -> None:
    assert read_predictions(tmp_path, "none").empty
    assert read_feedback(tmp_path, "none").empty
    with pytest.raises(errors.InvalidInput, match="invalid model name"):
        read_predictions(tmp_path, "../etc")


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    plog = PredictionLog(tmp_path, "m", max_pending=1, flush_interval=60)
    plog._thread = object()  # type: ignore[assignment]  # no writer: the queue stays full
    plog._ensure_thread = lambda: None  # type: ignore[method-assign]
    assert plog.append(entry(2)) is True
    assert plog.append(entry(3)) is False
    assert plog.dropped == 3


def test_tensor_models_log_inputs_as_lists(tmp_path: Path) -> None:
    plog = PredictionLog(tmp_path, "t")
    plog.append(LogEntry(timestamp=time.time(), model_version=None, model_digest="d",
                         inputs=np.ones((2, 3)), predictions=np.zeros((2, 2)),
                         probabilities=None, prediction_ids=["a" * 32, "b" * 32],
                         request_ids=["r", "r"], endpoints=["v2", "v2"], latency_ms=[1, 1]))
    plog.close()
    log = read_predictions(tmp_path, "t")
    assert log["input"].iloc[0].tolist() == [1.0, 1.0, 1.0]
    assert log["prediction"].iloc[1].tolist() == [0.0, 0.0]


def test_rollout_columns_and_files_written_before_them(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    old_day = tmp_path / "predictions" / "m" / "date=2024-01-01"
    old_day.mkdir(parents=True)
    # A file as the log wrote it before deployment/arm existed.
    pq.write_table(pa.table({
        "prediction_id": ["a" * 32], "timestamp": pa.array([1704067200000],
                                                           pa.timestamp("ms", tz="UTC")),
        "model_name": ["m"], "model_version": [1], "model_digest": ["d"], "request_id": ["r"],
        "endpoint": ["predict"], "latency_ms": [1.0], "input.x": [0.5], "prediction": [1]}),
        old_day / "part-old.parquet")
    only_old = read_predictions(tmp_path, "m")
    assert only_old["deployment"].tolist() == [None] and only_old["arm"].tolist() == [None]
    assert list(only_old.columns[:7]) == ["prediction_id", "timestamp", "model_name",
                                          "model_version", "model_digest", "deployment", "arm"]
    plog = PredictionLog(tmp_path, "m")
    base = entry(2)
    plog.append(LogEntry(**{**base.__dict__, "deployment": "credit-rollout", "arm": "canary",
                            "endpoints": ["shadow", "shadow"]}))
    plog.close()
    log = read_predictions(tmp_path, "m")
    assert log["deployment"].tolist() == [None, "credit-rollout", "credit-rollout"]
    assert log["arm"].tolist() == [None, "canary", "canary"]
    assert log["endpoint"].tolist() == ["predict", "shadow", "shadow"]
    assert read_predictions(tmp_path / "empty", "m").columns[5:7].tolist() == ["deployment",
                                                                               "arm"]
