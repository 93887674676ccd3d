"""Many writer processes at once, and a writer killed with SIGKILL (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from shipyard.store import Database, tables
from shipyard.tracking import RunStatus, TrackingService

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("_reliability_worker.py")
PROCESSES = 8
METRICS_EACH = 10_000


def _env(backend_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(SHIPYARD_HOME=str(tmp_path / "home"), SHIPYARD_DB=backend_url,
               SHIPYARD_ARTIFACTS=str(tmp_path / "artifacts"), **extra)
    return env


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


def test_many_processes_log_to_one_database(backend_url: str, tmp_path: Path) -> None:
    env = _env(backend_url, tmp_path)
    procs = [subprocess.Popen([sys.executable, str(WORKER), "stress", str(METRICS_EACH)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(PROCESSES)]
    run_ids = []
    for proc in procs:  # every process has started its run: now let them all log at once
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line:
            pytest.fail(f"worker died before starting: {proc.communicate()[1]}")
        run_ids.append(line)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "done"
        assert "Traceback" not in err

    db = Database(backend_url)
    M, LM = tables.metrics, tables.latest_metrics
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(M)).scalar() == (
            PROCESSES * METRICS_EACH)
        per_run = dict(conn.execute(sa.select(M.c.run_id, sa.func.count(sa.distinct(M.c.step)))
                                    .group_by(M.c.run_id)).all())
        latest = conn.execute(sa.select(LM.c.run_id, LM.c.value, LM.c.step)).all()
    assert per_run == {run_id: METRICS_EACH for run_id in run_ids}
    assert sorted(latest) == sorted((r, float(METRICS_EACH - 1), METRICS_EACH - 1)
                                    for r in run_ids)
    service = TrackingService(db, None, actor="check")  # type: ignore[arg-type]
    runs = service.get_runs(run_ids)
    assert {r.status for r in runs} == {RunStatus.FINISHED}
    assert len({r.experiment_id for r in runs}) == 1  # all found the one "stress" experiment


def test_sigkill_leaves_whole_batches_and_the_run_is_failed_later(backend_url: str,
                                                                  tmp_path: Path) -> None:
    from tests.tracking._reliability_worker import FLUSHED_STEPS

    env = _env(backend_url, tmp_path, SHIPYARD_FLUSH_INTERVAL="0.02", SHIPYARD_BUFFER_SIZE="300")
    proc = subprocess.Popen([sys.executable, str(WORKER), "crash"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"worker died early: {proc.communicate()[1]}")
        ids = json.loads(line)
        db = Database(backend_url)
        M = tables.metrics

        def steps_written() -> int:
            with db.read() as conn:
                return int(conn.execute(sa.select(sa.func.max(M.c.step))
                                        .where(M.c.key == "a")).scalar() or 0)

        # Kill it while it is still writing: after some unflushed batches went in too.
        _wait_for(lambda: steps_written() > FLUSHED_STEPS + 2000, "background batches")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    run_id, other_id = ids["run_id"], ids["other_id"]
    LM, A = tables.latest_metrics, tables.audit_events
    # One snapshot for all the reads below (PostgreSQL's default takes one per statement;
    # a SQLite read transaction is one snapshot already).
    snapshot = {"isolation_level": "REPEATABLE READ"} if db.dialect == "postgresql" else {}
    with db.engine.connect().execution_options(**snapshot) as conn, conn.begin():
        counts = dict(conn.execute(sa.select(M.c.key, sa.func.count()).where(
            M.c.run_id == run_id).group_by(M.c.key)).all())
        flushed = conn.execute(sa.select(sa.func.count()).where(
            M.c.run_id == run_id, M.c.step < FLUSHED_STEPS)).scalar()
        max_steps = dict(conn.execute(sa.select(M.c.key, sa.func.max(M.c.step)).where(
            M.c.run_id == run_id).group_by(M.c.key)).all())
        latest = {r.key: (r.step, r.value) for r in conn.execute(
            sa.select(LM).where(LM.c.run_id == run_id))}
        logged = [json.loads(d)["metrics"] for d in conn.execute(sa.select(A.c.details).where(
            A.c.object_id == run_id, A.c.action == "run.log_batch")).scalars()]
        per_step = conn.execute(sa.select(M.c.step, sa.func.count()).where(
            M.c.run_id == run_id).group_by(M.c.step).having(sa.func.count() != 3)).all()
    # Everything flushed before the kill is there, exactly once.
    assert flushed == 3 * FLUSHED_STEPS
    # Whole batches only: each log_metrics call (a, b, c of one step) is all there or absent,
    # the latest values match the history, and the audit events count exactly these rows.
    assert per_step == []
    assert counts["a"] == counts["b"] == counts["c"] > FLUSHED_STEPS
    assert {k: (max_steps[k], float(max_steps[k])) for k in "abc"} == latest
    assert sum(logged) == sum(counts.values())

    service = TrackingService(db, None, actor="check")  # type: ignore[arg-type]
    with db.read() as conn:
        statuses = dict(conn.execute(
            sa.select(tables.runs.c.run_id, tables.runs.c.status)).all())
    assert statuses == {run_id: "RUNNING", other_id: "RUNNING"}
    other = service.get_run(other_id)  # marked FAILED on this read
    assert other.status is RunStatus.FAILED
    assert other.end_time is not None
    assert service.gc_runs() == [run_id]
    assert service.get_run(run_id).status is RunStatus.FAILED
    assert service.get_run(run_id).metrics == {k: float(max_steps[k]) for k in "abc"}
