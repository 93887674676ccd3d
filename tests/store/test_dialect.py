"""The dialect-specific statements behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import math

import sqlalchemy as sa

from shipyard.store import Database, insert_ignore, tables, upsert, upsert_latest_metric

RUN = "a" * 32


def _make_run(db: Database) -> None:
    with db.write() as conn:
        conn.execute(tables.experiments.insert().values(
            experiment_id=1, name="e", lifecycle_stage="active", creation_time=0,
            last_update_time=0))
        conn.execute(tables.runs.insert().values(
            run_id=RUN, experiment_id=1, status="RUNNING", start_time=0,
            lifecycle_stage="active"))


def test_insert_ignore_keeps_the_first_row(database: Database) -> None:
    _make_run(database)
    P = tables.params
    with database.write() as conn:
        stmt = insert_ignore(conn, P, ["run_id", "key"])
        conn.execute(stmt, [{"run_id": RUN, "key": "k", "value": "first"}])
        conn.execute(stmt, [{"run_id": RUN, "key": "k", "value": "second"},
                            {"run_id": RUN, "key": "j", "value": "other"}])
    with database.read() as conn:
        rows = dict(conn.execute(sa.select(P.c.key, P.c.value)).all())
    assert rows == {"k": "first", "j": "other"}


def test_upsert_replaces_the_value(database: Database) -> None:
    _make_run(database)
    T = tables.tags
    with database.write() as conn:
        stmt = upsert(conn, T, ["run_id", "key"], ["value"])
        conn.execute(stmt, [{"run_id": RUN, "key": "k", "value": "old"}])
        conn.execute(stmt, [{"run_id": RUN, "key": "k", "value": "new"}])
    with database.read() as conn:
        assert conn.execute(sa.select(T.c.key, T.c.value)).all() == [("k", "new")]


def test_latest_metric_keeps_the_largest_step_then_timestamp(database: Database) -> None:
    _make_run(database)
    LM = tables.latest_metrics

    def put(value: float | None, step: int, ts: int, nan: bool = False) -> None:
        with database.write() as conn:
            conn.execute(upsert_latest_metric(conn, LM), [
                {"run_id": RUN, "key": "m", "value": value, "is_nan": nan, "step": step,
                 "timestamp": ts}])

    def latest() -> tuple[float | None, bool, int, int]:
        with database.read() as conn:
            row = conn.execute(sa.select(LM.c.value, LM.c.is_nan, LM.c.step,
                                         LM.c.timestamp)).one()
        return row.value, row.is_nan, row.step, row.timestamp

    put(1.0, step=5, ts=100)
    put(2.0, step=4, ts=999)  # older step: ignored
    assert latest() == (1.0, False, 5, 100)
    put(3.0, step=5, ts=50)  # same step, older timestamp: ignored
    assert latest() == (1.0, False, 5, 100)
    put(4.0, step=5, ts=100)  # a tie replaces (last write wins)
    assert latest() == (4.0, False, 5, 100)
    put(None, step=6, ts=0, nan=True)
    assert latest() == (None, True, 6, 0)
    put(math.inf, step=7, ts=0)
    assert latest() == (math.inf, False, 7, 0)
