"""The buffered BatchWriter: batches, back-pressure, kept errors; on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from shipyard import errors
from shipyard.tracking import BatchWriter, Run, TrackingService


@pytest.fixture
def run(tracking: TrackingService) -> Run:
    return tracking.create_run(tracking.create_experiment("writer").experiment_id)


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    """Wait for a background effect (a generous bound, not a speed assertion)."""
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)


def _batches(tracking: TrackingService, run_id: str) -> int:
    return sum(e["action"] == "run.log_batch" for e in tracking.audit_events("run", run_id))


def test_records_wait_in_the_buffer_until_flush(tracking: TrackingService, run: Run) -> None:
    writer = BatchWriter(tracking, flush_interval=3600, buffer_size=1000)
    writer.add_metrics(run.run_id, [("m", float(i), i, i) for i in range(10)])
    writer.add_params(run.run_id, {"p": "1"})
    writer.add_tags(run.run_id, {"t": "x"})
    assert writer.pending() == 12
    assert tracking.get_run(run.run_id).metrics == {}
    writer.flush()
    assert writer.pending() == 0
    stored = tracking.get_run(run.run_id)
    assert (stored.metrics, stored.params, stored.tags) == ({"m": 9.0}, {"p": "1"}, {"t": "x"})
    assert len(tracking.get_metric_history(run.run_id, "m")) == 10
    assert _batches(tracking, run.run_id) == 1
    writer.close()


def test_full_buffer_is_written_in_the_background(tracking: TrackingService,
                                                  run: Run) -> None:
    writer = BatchWriter(tracking, flush_interval=3600, buffer_size=50)
    writer.add_metrics(run.run_id, [("m", 1.0, i, i) for i in range(60)])
    _wait_for(lambda: len(tracking.get_metric_history(run.run_id, "m")) == 60,
              "the background flush")
    writer.close()


def test_interval_flush(tracking: TrackingService, run: Run) -> None:
    writer = BatchWriter(tracking, flush_interval=0.05, buffer_size=10_000)
    writer.add_metrics(run.run_id, [("m", 1.0, 0, 1)])
    _wait_for(lambda: tracking.get_run(run.run_id).metrics == {"m": 1.0}, "the interval flush")
    writer.close()


def test_back_pressure_writes_in_the_caller(tracking: TrackingService, run: Run) -> None:
    writer = BatchWriter(tracking, flush_interval=3600, buffer_size=10)
    writer.add_metrics(run.run_id, [("m", 1.0, i, i) for i in range(25)])
    # 25 >= 2 x 10: the call itself wrote the buffer before returning.
    assert writer.pending() == 0
    assert len(tracking.get_metric_history(run.run_id, "m")) == 25
    writer.close()


def test_conflicting_param_in_the_buffer_raises_at_the_call(tracking: TrackingService,
                                                            run: Run) -> None:
    writer = BatchWriter(tracking, flush_interval=3600)
    writer.add_params(run.run_id, {"p": "1"})
    writer.add_params(run.run_id, {"p": "1"})
    with pytest.raises(errors.Conflict):
        writer.add_params(run.run_id, {"p": "2", "q": "3"})
    writer.flush()
    assert tracking.get_run(run.run_id).params == {"p": "1"}
    writer.close()


def test_write_errors_are_kept_per_run_and_raised_once(tracking: TrackingService,
                                                       run: Run) -> None:
    writer = BatchWriter(tracking, flush_interval=3600)
    tracking.log_param(run.run_id, "p", "stored")
    ghost = "0" * 32
    writer.add_metrics(ghost, [("m", 1.0, 0, 1)])
    writer.add_params(run.run_id, {"p": "other"})  # conflicts with the database only
    with pytest.raises(errors.NotFound):
        writer.flush(ghost)
    with pytest.raises(errors.Conflict, match="immutable"):
        writer.flush(run.run_id)
    writer.flush()  # both errors were reported already
    assert tracking.get_run(run.run_id).params == {"p": "stored"}
    writer.close()


def test_flush_of_any_run_raises_the_first_error(tracking: TrackingService) -> None:
    writer = BatchWriter(tracking, flush_interval=3600)
    writer.add_metrics("1" * 32, [("m", 1.0, 0, 1)])
    with pytest.raises(errors.NotFound):
        writer.flush()
    writer.flush()
    writer.close()


def test_concurrent_threads_lose_nothing(tracking: TrackingService, run: Run) -> None:
    writer = BatchWriter(tracking, flush_interval=0.01, buffer_size=100)

    def log(thread: int) -> None:
        for i in range(500):
            writer.add_metrics(run.run_id, [(f"t{thread}", float(i), i, i)])

    threads = [threading.Thread(target=log, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    stored = tracking.get_run(run.run_id).metrics
    assert stored == {f"t{t}": 499.0 for t in range(4)}
    assert all(len(tracking.get_metric_history(run.run_id, f"t{t}")) == 500 for t in range(4))


def test_unexpected_error_in_the_background_is_reported_not_swallowed(
        tracking: TrackingService, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tracking.create_run(run.experiment_id)
    real_log_batch = tracking.log_batch

    def flaky(run_id: str, **kwargs: object) -> None:  # a driver error nobody translated
        if run_id == run.run_id:
            raise RuntimeError("connection reset by peer")
        real_log_batch(run_id, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tracking, "log_batch", flaky)
    writer = BatchWriter(tracking, flush_interval=0.01)
    writer.add_metrics(run.run_id, [("m", 1.0, 0, 1)])
    writer.add_metrics(other.run_id, [("m", 2.0, 0, 1)])
    _wait_for(lambda: writer.pending() == 0, "the background drain")
    writer.close()
    with pytest.raises(errors.ShipyardError, match="connection reset"):
        writer.flush()
    assert tracking.get_run(other.run_id).metrics == {"m": 2.0}  # the other run still written
