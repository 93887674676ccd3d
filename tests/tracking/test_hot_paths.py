"""The fast paths of logging keep the rules: ending a run with its last batch, the heartbeat
window, batch validation; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from shipyard import errors
from shipyard.store import tables
from shipyard.tracking import BatchWriter, Run, RunStatus, TrackingService
from shipyard.tracking import _service as service_module
from shipyard.tracking import _validation as v


@pytest.fixture
def run(tracking: TrackingService) -> Run:
    return tracking.create_run(tracking.create_experiment("hot").experiment_id)


def _actions(tracking: TrackingService, run_id: str) -> list[str]:
    return [e["action"] for e in tracking.audit_events("run", run_id)]


def _heartbeat(tracking: TrackingService, run_id: str) -> int:
    R = tables.runs
    with tracking.db.read() as conn:
        return int(conn.execute(sa.select(R.c.heartbeat_time)
                                .where(R.c.run_id == run_id)).scalar_one())


def _mark_deleted_behind_its_back(tracking: TrackingService, run_id: str) -> None:
    """A delete by another process: straight into the database."""
    R = tables.runs
    with tracking.db.write() as conn:
        conn.execute(R.update().where(R.c.run_id == run_id).values(lifecycle_stage="deleted"))


# -- a run's last batch and its end in one transaction ---------------------------------------

def test_log_batch_can_end_the_run(tracking: TrackingService, run: Run) -> None:
    tracking.log_batch(run.run_id, metrics=[("m", 1.0, 0, 5)], params={"p": 1},
                       end_status="FAILED", end_time=1234)
    stored = tracking.get_run(run.run_id)
    assert (stored.status, stored.end_time) == (RunStatus.FAILED, 1234)
    assert (stored.metrics, stored.params) == ({"m": 1.0}, {"p": "1"})
    assert _actions(tracking, run.run_id)[-2:] == ["run.log_batch", "run.set_status"]
    change = json.loads(tracking.audit_events("run", run.run_id)[-1]["details"])
    assert change == {"from": "RUNNING", "to": "FAILED"}


def test_log_batch_with_nothing_to_log_only_ends_the_run(tracking: TrackingService,
                                                          run: Run) -> None:
    tracking.log_batch(run.run_id, end_status=RunStatus.FINISHED)
    assert tracking.get_run(run.run_id).status is RunStatus.FINISHED
    assert _actions(tracking, run.run_id)[-1] == "run.set_status"


def test_a_bad_end_status_writes_nothing(tracking: TrackingService, run: Run) -> None:
    before = tracking.audit_events()
    with pytest.raises(errors.InvalidInput, match="status"):
        tracking.log_batch(run.run_id, metrics=[("m", 1.0, 0, 5)], validated=True,
                           end_status="DONE")
    assert tracking.audit_events() == before
    assert tracking.get_metric_history(run.run_id, "m") == []


def test_writer_finish_writes_the_buffer_and_ends_the_run(tracking: TrackingService,
                                                          run: Run) -> None:
    other = tracking.create_run(run.experiment_id)
    writer = BatchWriter(tracking, flush_interval=3600)
    writer.add_metrics(run.run_id, [("m", float(i), i, i) for i in range(5)])
    writer.add_params(run.run_id, {"p": "1"})
    writer.add_metrics(other.run_id, [("m", 1.0, 0, 0)])
    writer.finish(run.run_id, RunStatus.KILLED)
    assert writer.pending() == 0
    stored = tracking.get_run(run.run_id)
    assert (stored.status, stored.metrics, stored.params) == (
        RunStatus.KILLED, {"m": 4.0}, {"p": "1"})
    assert _actions(tracking, run.run_id)[-2:] == ["run.log_batch", "run.set_status"]
    assert tracking.get_run(other.run_id).metrics == {"m": 1.0}  # flushed, as flush() does
    assert tracking.get_run(other.run_id).status is RunStatus.RUNNING
    writer.finish(other.run_id, RunStatus.FINISHED)  # nothing buffered: just the end
    assert tracking.get_run(other.run_id).status is RunStatus.FINISHED
    writer.close()


def test_writer_finish_ends_a_run_whose_records_fail(tracking: TrackingService,
                                                     run: Run) -> None:
    writer = BatchWriter(tracking, flush_interval=3600)
    tracking.delete_run(run.run_id)
    writer.add_metrics(run.run_id, [("m", 1.0, 0, 0)])
    with pytest.raises(errors.Conflict, match="deleted"):
        writer.finish(run.run_id, RunStatus.FINISHED)
    assert tracking.get_run(run.run_id).status is RunStatus.FINISHED
    assert tracking.get_metric_history(run.run_id, "m") == []
    writer.flush()  # the error was reported once
    writer.close()


# -- the heartbeat window --------------------------------------------------------------------

def test_writes_within_the_window_skip_the_heartbeat(tracking: TrackingService,
                                                     run: Run) -> None:
    tracking.log_metric(run.run_id, "m", 1.0)
    first = _heartbeat(tracking, run.run_id)
    _mark_deleted_behind_its_back(tracking, run.run_id)
    tracking.log_metric(run.run_id, "m", 2.0)  # within TOUCH_WINDOW_S: not checked again
    assert _heartbeat(tracking, run.run_id) == first
    assert len(tracking.get_metric_history(run.run_id, "m")) == 2


def test_writes_after_the_window_check_the_run_again(tracking: TrackingService, run: Run,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tracking.log_metric(run.run_id, "m", 1.0)
    _mark_deleted_behind_its_back(tracking, run.run_id)
    monkeypatch.setattr(service_module, "TOUCH_WINDOW_S", 0.0)
    with pytest.raises(errors.Conflict, match="deleted"):
        tracking.log_metric(run.run_id, "m", 2.0)


def test_a_delete_by_any_service_of_this_process_is_seen_at_once(
        tracking: TrackingService, run: Run) -> None:
    other = TrackingService(tracking.db, tracking.artifacts, actor="someone-else")
    tracking.log_metric(run.run_id, "m", 1.0)
    other.delete_run(run.run_id)
    with pytest.raises(errors.Conflict, match="deleted"):
        tracking.log_metric(run.run_id, "m", 2.0)
    other.restore_run(run.run_id)
    tracking.log_metric(run.run_id, "m", 3.0)
    assert tracking.get_run(run.run_id).metrics == {"m": 3.0}


def test_unknown_run_is_not_found(tracking: TrackingService) -> None:
    with pytest.raises(errors.NotFound):
        tracking.log_metric("0" * 32, "m", 1.0)


# -- create_run's experiment check -------------------------------------------------------------

def test_create_run_experiment_checks(tracking: TrackingService) -> None:
    exp = tracking.create_experiment("checked")
    assert tracking.create_run(f"00{exp.experiment_id}").experiment_id == exp.experiment_id
    assert tracking.create_run(int(exp.experiment_id)).experiment_id == exp.experiment_id
    with pytest.raises(errors.NotFound):
        tracking.create_run("987654")
    with pytest.raises(errors.InvalidInput):
        tracking.create_run("not-a-number")
    tracking.delete_experiment(exp.experiment_id)
    with pytest.raises(errors.Conflict, match="'checked' is deleted"):
        tracking.create_run(exp.experiment_id)


# -- validation of a batch -----------------------------------------------------------------------

POINTS: list[tuple[Any, Any, Any, Any]] = [
    ("a", 1.5, 0, 10), ("a", 2, 1, 11), ("b", math.nan, None, 12), ("b", -math.inf, 3, 13),
    ("c", np.float32(0.5), np.int64(4), np.int64(14)), ("c", np.float64(0.25), 5, 15),
    ("d", Fraction(1, 4), 6.0, 16), ("d", 2**70, 7, 17), ("e", float("nan"), 2**63 - 1, 0),
]

BAD: list[tuple[Any, Any, Any, Any]] = [
    ("", 1.0, 0, 0), ("a;b", 1.0, 0, 0), (None, 1.0, 0, 0), (["a"], 1.0, 0, 0),
    ("a", "1", 0, 0), ("a", True, 0, 0), ("a", Decimal("0.25"), 0, 0), ("a", None, 0, 0),
    ("a", 10**400, 0, 0),
    ("a", 1.0, 0.5, 0), ("a", 1.0, True, 0), ("a", 1.0, 2**63, 0), ("a", 1.0, 0, 1.5),
    ("a", 1.0, 0, "now"), ("a", 1.0, 0, -(2**63) - 1), ("a", 1.0, 0, None),
]


def _one_by_one(points: list[tuple[Any, Any, Any, Any]]) -> list[tuple[str, float, int, int]]:
    return [(v.check_key("metric", k), *v.check_metric(k, val, step), v.check_timestamp(k, ts))
            for k, val, step, ts in points]


def _same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    return len(a) == len(b) and all(
        x[0] == y[0] and x[2:] == y[2:] and type(x[1]) is type(y[1]) is float
        and (x[1] == y[1] or (math.isnan(x[1]) and math.isnan(y[1])))
        for x, y in zip(a, b, strict=True))


def test_batch_checks_give_what_the_point_checks_give() -> None:
    assert _same(v.check_metric_points(POINTS), _one_by_one(POINTS))


@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_batch_checks_refuse_what_the_point_checks_refuse(bad: tuple[Any, ...]) -> None:
    with pytest.raises(errors.InvalidInput) as one:
        _one_by_one([bad])
    with pytest.raises(errors.InvalidInput) as batch:
        v.check_metric_points([POINTS[0], bad, POINTS[1]])
    assert str(batch.value) == str(one.value)
