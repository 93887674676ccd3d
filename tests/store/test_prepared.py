"""Prepared statements on the DBAPI cursor behave like Connection.execute, on both backends."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from shipyard import errors
from shipyard.store import Database, insert_ignore, tables, upsert, upsert_latest_metric
from shipyard.store._dialect import Prepared, execute_prepared

E = tables.experiments
INSERT = Prepared(lambda d: E.insert(), ["experiment_id", "name", "lifecycle_stage",
                                         "creation_time", "last_update_time"])
# Parameters in an order other than the SQL's, and a constant in the WHERE clause.
RENAME = Prepared(
    lambda d: E.update().where(E.c.experiment_id == sa.bindparam("b_id"),
                               E.c.lifecycle_stage == sa.literal_column("'active'"))
    .values(name=sa.bindparam("b_name")),
    ["b_id", "b_name"])
NAME = Prepared(lambda d: sa.select(E.c.name).where(E.c.experiment_id == sa.bindparam("b_id")),
                ["b_id"])


def _names(db: Database) -> list[str]:
    with db.read() as conn:
        return list(conn.execute(sa.select(E.c.name).order_by(E.c.experiment_id)).scalars())


def test_insert_update_and_select(database: Database) -> None:
    with database.write() as conn:
        assert execute_prepared(conn, INSERT, [(1, "a", "active", 0, 0),
                                               (2, "b", "deleted", 0, 0)]) == 2
        assert execute_prepared(conn, RENAME, [(1, "a2")]) == 1
        assert execute_prepared(conn, RENAME, [(2, "b2")]) == 0  # not active
        assert execute_prepared(conn, NAME, [(1,)], fetch=True) == [("a2",)]
        assert execute_prepared(conn, NAME, [(3,)], fetch=True) == []
        assert execute_prepared(conn, INSERT, []) == 0
    assert _names(database) == ["a2", "b"]


def test_driver_errors_are_translated_as_with_execute(database: Database) -> None:
    with database.write() as conn:
        execute_prepared(conn, INSERT, [(1, "a", "active", 0, 0)])
    with pytest.raises(errors.Conflict), database.write() as conn:
        execute_prepared(conn, INSERT, [(2, "b", "active", 0, 0), (3, "a", "active", 0, 0)])
    assert _names(database) == ["a"]  # the whole transaction rolled back


def test_a_connection_outside_a_transaction_begins_one(database: Database) -> None:
    with database.engine.connect() as conn:
        execute_prepared(conn, INSERT, [(1, "a", "active", 0, 0)])
        assert conn.in_transaction()
        conn.rollback()
    assert _names(database) == []


def test_unknown_parameters_are_refused(database: Database) -> None:
    bad = Prepared(lambda d: sa.select(E.c.name).where(E.c.name == "x"), ["b_id"])
    with pytest.raises(ValueError, match="not among its columns"), database.read() as conn:
        execute_prepared(conn, bad, [(1,)], fetch=True)


def test_statements_are_built_once(database: Database) -> None:
    with database.read() as conn:
        assert upsert(conn, tables.tags, ["run_id", "key"], ["value"]) is upsert(
            conn, tables.tags, ("run_id", "key"), ("value",))
        assert insert_ignore(conn, tables.params, ["run_id", "key"]) is insert_ignore(
            conn, tables.params, ["run_id", "key"])
        assert upsert_latest_metric(conn, tables.latest_metrics) is upsert_latest_metric(
            conn, tables.latest_metrics)
        assert upsert(conn, tables.tags, ["run_id", "key"], ["value"]) is not upsert(
            conn, tables.experiment_tags, ["experiment_id", "key"], ["value"])
