"""Runs: create, nest, status, rename, delete/restore, dead owners; on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shipyard import errors
from shipyard.store import edges_of
from shipyard.tracking import LifecycleStage, RunStatus, TrackingService

UNKNOWN = "f" * 32


@pytest.fixture
def exp_id(tracking: TrackingService) -> str:
    return tracking.create_experiment("runs").experiment_id


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_create_and_get(tracking: TrackingService, exp_id: str) -> None:
    run = tracking.create_run(exp_id, run_name="first", tags={"k": "v"}, start_time=1234)
    assert len(run.run_id) == 32
    assert run.status is RunStatus.RUNNING
    stored = tracking.get_run(run.run_id)
    assert stored.run_name == "first"
    assert stored.start_time == 1234
    assert stored.end_time is None
    assert stored.experiment_id == exp_id
    assert stored.tags == {"k": "v"}
    assert stored.user_id == "tester"
    assert stored.lifecycle_stage is LifecycleStage.ACTIVE
    assert tracking.get_runs([run.run_id, UNKNOWN]) == [stored]


def test_default_run_name(tracking: TrackingService, exp_id: str) -> None:
    run = tracking.create_run(exp_id)
    assert run.run_name
    assert tracking.get_run(run.run_id).run_name == run.run_name


def test_nested_runs_record_parent_and_lineage(tracking: TrackingService, exp_id: str) -> None:
    parent = tracking.create_run(exp_id)
    child = tracking.create_run(exp_id, parent_run_id=parent.run_id)
    grandchild = tracking.create_run(exp_id, parent_run_id=child.run_id)
    assert tracking.get_run(child.run_id).parent_run_id == parent.run_id
    assert tracking.get_run(grandchild.run_id).parent_run_id == child.run_id
    with tracking.db.read() as conn:
        edges = edges_of(conn, ("run", child.run_id))
    assert sorted((e["src_id"], e["relation"], e["dst_id"]) for e in edges) == sorted([
        (parent.run_id, "parent_of", child.run_id),
        (child.run_id, "parent_of", grandchild.run_id)])


def test_unknown_or_malformed_parent(tracking: TrackingService, exp_id: str) -> None:
    with pytest.raises(errors.NotFound):
        tracking.create_run(exp_id, parent_run_id=UNKNOWN)
    with pytest.raises(errors.InvalidInput):
        tracking.create_run(exp_id, parent_run_id="not-a-run-id")
    assert tracking.search_runs([exp_id], run_view="all")[0] == []
    assert tracking.audit_events("run") == []


@pytest.mark.parametrize("status", [RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED,
                                    "FINISHED", "KILLED"])
def test_terminal_status_sets_end_time(tracking: TrackingService, exp_id: str,
                                       status: RunStatus | str) -> None:
    run = tracking.create_run(exp_id, start_time=1000)
    tracking.end_run(run.run_id, status, end_time=5000)
    stored = tracking.get_run(run.run_id)
    assert stored.status is RunStatus(status)
    assert stored.end_time == 5000
    assert stored.duration_ms == 4000


def test_status_can_return_to_running(tracking: TrackingService, exp_id: str) -> None:
    run = tracking.create_run(exp_id)
    tracking.end_run(run.run_id, RunStatus.SCHEDULED)
    assert tracking.get_run(run.run_id).status is RunStatus.SCHEDULED
    assert tracking.get_run(run.run_id).end_time is None
    tracking.end_run(run.run_id)
    assert tracking.get_run(run.run_id).status is RunStatus.FINISHED


@pytest.mark.parametrize("status", ["finished", "DONE", "", 3])
def test_bad_status(tracking: TrackingService, exp_id: str, status: object) -> None:
    run = tracking.create_run(exp_id)
    with pytest.raises(errors.InvalidInput, match="status"):
        tracking.end_run(run.run_id, status)  # type: ignore[arg-type]
    assert tracking.get_run(run.run_id).status is RunStatus.RUNNING


def test_rename_delete_restore(tracking: TrackingService, exp_id: str) -> None:
    run = tracking.create_run(exp_id)
    tracking.set_run_name(run.run_id, "renamed")
    assert tracking.get_run(run.run_id).run_name == "renamed"
    with pytest.raises(errors.InvalidInput):
        tracking.set_run_name(run.run_id, "")
    tracking.delete_run(run.run_id)
    assert tracking.get_run(run.run_id).lifecycle_stage is LifecycleStage.DELETED
    with pytest.raises(errors.Conflict):
        tracking.delete_run(run.run_id)
    with pytest.raises(errors.Conflict, match="deleted"):
        tracking.log_metric(run.run_id, "m", 1.0)
    assert tracking.get_metric_history(run.run_id, "m") == []
    tracking.restore_run(run.run_id)
    assert tracking.get_run(run.run_id).lifecycle_stage is LifecycleStage.ACTIVE
    with pytest.raises(errors.Conflict):
        tracking.restore_run(run.run_id)
    tracking.log_metric(run.run_id, "m", 1.0)
    assert tracking.get_run(run.run_id).metrics == {"m": 1.0}


@pytest.mark.parametrize("run_id", ["", "abc", "F" * 32, "g" * 32, None, 42, "a" * 33,
                                    "a" * 32 + "\n"])
def test_malformed_run_id(tracking: TrackingService, run_id: object) -> None:
    for call in (tracking.get_run, tracking.delete_run, tracking.end_run):
        with pytest.raises(errors.InvalidInput) as info:
            call(run_id)  # type: ignore[operator]
        assert info.value.field == "run_id"


def test_unknown_run_id(tracking: TrackingService) -> None:
    for call in (tracking.get_run, tracking.delete_run, tracking.restore_run, tracking.end_run):
        with pytest.raises(errors.NotFound, match=UNKNOWN):
            call(UNKNOWN)
    with pytest.raises(errors.NotFound):
        tracking.log_batch(UNKNOWN, metrics=[("m", 1.0, 0, 1)])
    with pytest.raises(errors.NotFound):
        tracking.set_run_name(UNKNOWN, "x")
    with pytest.raises(errors.NotFound):
        tracking.get_metric_history(UNKNOWN, "m")
    assert tracking.audit_events() == []


def test_run_of_a_dead_process_fails_on_read(tracking: TrackingService, exp_id: str) -> None:
    run = tracking.create_run(exp_id, owner_pid=_dead_pid())
    mine = tracking.create_run(exp_id)
    assert tracking.get_run(run.run_id).status is RunStatus.FAILED
    assert tracking.get_run(run.run_id).end_time is not None
    assert tracking.get_run(mine.run_id).status is RunStatus.RUNNING
    events = tracking.audit_events("run", run.run_id)
    assert events[-1]["action"] == "run.set_status"
    assert "owner process died" in str(events[-1]["details"])


def test_gc_runs_fails_only_dead_owners(tracking: TrackingService, exp_id: str) -> None:
    dead = tracking.create_run(exp_id, owner_pid=_dead_pid())
    alive = tracking.create_run(exp_id, owner_pid=os.getpid())
    done = tracking.create_run(exp_id, owner_pid=_dead_pid())
    tracking.end_run(done.run_id)
    assert tracking.gc_runs() == [dead.run_id]
    assert tracking.gc_runs() == []
    statuses = {r.run_id: r.status for r in tracking.get_runs([dead.run_id, alive.run_id,
                                                               done.run_id])}
    assert statuses == {dead.run_id: RunStatus.FAILED, alive.run_id: RunStatus.RUNNING,
                        done.run_id: RunStatus.FINISHED}


def test_gc_runs_of_other_hosts_by_heartbeat(tracking: TrackingService, exp_id: str) -> None:
    from shipyard.store import tables

    run = tracking.create_run(exp_id, start_time=1000)
    with tracking.db.write() as conn:
        conn.execute(tables.runs.update().where(tables.runs.c.run_id == run.run_id)
                     .values(owner_host="elsewhere", heartbeat_time=1000))
    assert tracking.gc_runs() == []  # another host: unknown without a staleness bound
    assert tracking.gc_runs(stale_after_s=3600) == [run.run_id]
    assert tracking.get_run(run.run_id).status is RunStatus.FAILED
