"""Params, metrics and tags through the tracking service, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard import errors
from shipyard.store import tables
from shipyard.tracking import Run, TrackingService


@pytest.fixture
def run(tracking: TrackingService) -> Run:
    exp = tracking.create_experiment("logging")
    return tracking.create_run(exp.experiment_id)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _count(tracking: TrackingService, table: sa.Table) -> int:
    with tracking.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


# -- params -------------------------------------------------------------------------------------

def test_params_are_stringified_and_immutable(tracking: TrackingService, run: Run) -> None:
    tracking.log_param(run.run_id, "lr", 0.1)
    tracking.log_batch(run.run_id, params={"depth": 3, "model": "gbm", "none": None,
                                           "flag": True})
    tracking.log_param(run.run_id, "lr", "0.1")  # the same value again: fine
    tracking.log_param(run.run_id, "lr", 0.1)
    assert tracking.get_run(run.run_id).params == {
        "lr": "0.1", "depth": "3", "model": "gbm", "none": "None", "flag": "True"}
    before = len(tracking.audit_events())
    with pytest.raises(errors.Conflict, match="immutable") as info:
        tracking.log_param(run.run_id, "lr", 0.2)
    assert info.value.field == "param"
    assert tracking.get_run(run.run_id).params["lr"] == "0.1"
    assert len(tracking.audit_events()) == before


def test_conflicting_param_rolls_back_the_whole_batch(tracking: TrackingService,
                                                      run: Run) -> None:
    tracking.log_param(run.run_id, "a", 1)
    with pytest.raises(errors.Conflict):
        tracking.log_batch(run.run_id, metrics=[("m", 1.0, 0, 1)],
                           params={"new": "x", "a": 2}, tags={"t": "v"})
    stored = tracking.get_run(run.run_id)
    assert (stored.params, stored.metrics, stored.tags) == ({"a": "1"}, {}, {})
    assert _count(tracking, tables.metrics) == 0


def test_long_param_value(tracking: TrackingService, run: Run) -> None:
    tracking.log_param(run.run_id, "long", "x" * 6000)
    with pytest.raises(errors.InvalidInput, match="6001"):
        tracking.log_param(run.run_id, "longer", "x" * 6001)
    assert tracking.get_run(run.run_id).params == {"long": "x" * 6000}


# -- metrics ------------------------------------------------------------------------------------

def test_metric_history_and_latest(tracking: TrackingService, run: Run) -> None:
    tracking.log_metric(run.run_id, "loss", 0.9, step=0, timestamp=1000)
    tracking.log_metric(run.run_id, "loss", 0.5, step=2, timestamp=3000)
    tracking.log_metric(run.run_id, "loss", 0.7, step=1, timestamp=2000)  # late, older step
    tracking.log_batch(run.run_id, metrics=[("acc", 0.8, 5, 10), ("acc", 0.9, 5, 11)])
    history = tracking.get_metric_history(run.run_id, "loss")
    assert [(m.step, m.value, m.timestamp) for m in history] == [
        (0, 0.9, 1000), (1, 0.7, 2000), (2, 0.5, 3000)]
    assert tracking.get_run(run.run_id).metrics == {"loss": 0.5, "acc": 0.9}
    assert tracking.get_metric_history(run.run_id, "missing") == []


def test_timestamp_zero_is_kept(tracking: TrackingService, run: Run) -> None:
    tracking.log_metric(run.run_id, "m", 1.0, step=0, timestamp=0)
    assert [m.timestamp for m in tracking.get_metric_history(run.run_id, "m")] == [0]


def test_metric_without_timestamp_gets_now(tracking: TrackingService, run: Run) -> None:
    tracking.log_metric(run.run_id, "m", 1.0)
    (point,) = tracking.get_metric_history(run.run_id, "m")
    assert point.timestamp >= run.start_time


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, 5e-324,
                                   -1.5, np.float32(0.25), np.int64(7), np.nan, 10**15])
def test_special_values_round_trip(tracking: TrackingService, run: Run, value: float) -> None:
    tracking.log_metric(run.run_id, "v", value, step=1)
    latest = tracking.get_run(run.run_id).metrics["v"]
    (point,) = tracking.get_metric_history(run.run_id, "v")
    assert _same(latest, float(value))
    assert _same(point.value, float(value))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=5),
       step=st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_any_float_round_trips(tracking: TrackingService, run: Run, values: list[float],
                               step: int) -> None:
    key = f"m{uuid.uuid4().hex[:8]}"
    points = [(key, v, step, 1000 + i) for i, v in enumerate(values)]
    tracking.log_batch(run.run_id, metrics=points)
    history = tracking.get_metric_history(run.run_id, key)
    assert len(history) == len(values)
    assert all(_same(m.value, v) and m.step == step for m, v in zip(history, values,
                                                                     strict=True))
    assert _same(tracking.get_run(run.run_id).metrics[key], values[-1])


@pytest.mark.parametrize(
    ("value", "step"),
    [("0.5", 0), (None, 0), (True, 0), ([1.0], 0), (1.0, 1.5), (1.0, "1"), (1.0, math.inf),
     (1.0, math.nan), (1.0, 2**63), (1.0, -(2**63) - 1), pytest.param(10**400, 0, id="huge")],
)
def test_bad_metric_is_invalid_and_writes_nothing(tracking: TrackingService, run: Run,
                                                  value: object, step: object) -> None:
    with pytest.raises(errors.InvalidInput):
        tracking.log_metric(run.run_id, "m", value, step=step)  # type: ignore[arg-type]
    assert _count(tracking, tables.metrics) == 0


@pytest.mark.parametrize("timestamp", ["soon", 1.5, math.inf, 2**63, True])
def test_bad_timestamp_is_invalid(tracking: TrackingService, run: Run,
                                  timestamp: object) -> None:
    with pytest.raises(errors.InvalidInput, match="timestamp"):
        tracking.log_metric(run.run_id, "m", 1.0, timestamp=timestamp)  # type: ignore[arg-type]
    assert _count(tracking, tables.metrics) == 0


def test_integral_float_step_is_accepted(tracking: TrackingService, run: Run) -> None:
    tracking.log_metric(run.run_id, "m", 1.0, step=3.0)  # type: ignore[arg-type]
    tracking.log_metric(run.run_id, "m", 1.0, step=np.int64(4))  # type: ignore[arg-type]
    assert [m.step for m in tracking.get_metric_history(run.run_id, "m")] == [3, 4]


def test_large_batch_in_one_transaction(tracking: TrackingService, run: Run) -> None:
    points = [(f"k{i % 7}", float(i), i, i) for i in range(5000)]
    tracking.log_batch(run.run_id, metrics=points)
    assert _count(tracking, tables.metrics) == 5000
    assert tracking.get_run(run.run_id).metrics == {f"k{i % 7}": float(i) for i in range(5000)}
    batches = [e for e in tracking.audit_events("run", run.run_id)
               if e["action"] == "run.log_batch"]
    assert len(batches) == 1


# -- keys and tags ------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["", "x" * 251, "/abs", "a/../b", "..", "semi;colon",
                                 "new\nline", 5, None, "back\\slash"])
def test_bad_keys_are_refused_for_every_kind(tracking: TrackingService, run: Run,
                                             key: object) -> None:
    for call in (lambda: tracking.log_metric(run.run_id, key, 1.0),  # type: ignore[arg-type]
                 lambda: tracking.log_param(run.run_id, key, 1),  # type: ignore[arg-type]
                 lambda: tracking.set_tag(run.run_id, key, 1)):  # type: ignore[arg-type]
        with pytest.raises(errors.InvalidInput):
            call()
    stored = tracking.get_run(run.run_id)
    assert (stored.params, stored.metrics, stored.tags) == ({}, {}, {})


def test_keys_with_allowed_characters(tracking: TrackingService, run: Run) -> None:
    key = "train/loss-v2.mean: fold 1_" + "x" * 223
    assert len(key) == 250
    tracking.log_metric(run.run_id, key, 1.0)
    assert list(tracking.get_run(run.run_id).metrics) == [key]


def test_tags_set_overwrite_delete(tracking: TrackingService, run: Run) -> None:
    tracking.set_tag(run.run_id, "stage", "dev")
    tracking.set_tag(run.run_id, "stage", "prod")
    tracking.log_batch(run.run_id, tags={"n": 3, "long": "y" * 8000})
    assert tracking.get_run(run.run_id).tags == {"stage": "prod", "n": "3", "long": "y" * 8000}
    tracking.delete_tag(run.run_id, "stage")
    assert "stage" not in tracking.get_run(run.run_id).tags
    with pytest.raises(errors.NotFound):
        tracking.delete_tag(run.run_id, "stage")
    with pytest.raises(errors.InvalidInput):
        tracking.set_tag(run.run_id, "big", "y" * 8001)
    assert set(tracking.get_run(run.run_id).tags) == {"n", "long"}


def test_empty_batch_writes_nothing(tracking: TrackingService, run: Run) -> None:
    before = len(tracking.audit_events())
    tracking.log_batch(run.run_id)
    assert len(tracking.audit_events()) == before
