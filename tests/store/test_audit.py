"""Audit events and lineage edges: written in the caller's transaction, append-only."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from shipyard.store import Database, add_edge, edges_of, record_event, tables


def _events(db: Database) -> list[dict[str, object]]:
    with db.read() as conn:
        return [dict(r) for r in conn.execute(
            sa.select(tables.audit_events).order_by(tables.audit_events.c.id)).mappings()]


def test_event_is_recorded_with_its_details(database: Database) -> None:
    with database.write() as conn:
        record_event(conn, actor="ann", action="thing.create", object_type="thing",
                     object_id=42, details={"b": 1, "a": [1, 2]})
        record_event(conn, actor="bob", action="thing.delete", object_type="thing",
                     object_id="42")
    first, second = _events(database)
    assert (first["actor"], first["action"], first["object_type"], first["object_id"]) == (
        "ann", "thing.create", "thing", "42")
    assert json.loads(str(first["details"])) == {"a": [1, 2], "b": 1}
    assert second["details"] is None
    assert second["id"] > first["id"]  # type: ignore[operator]
    assert first["timestamp"] > 1_600_000_000_000  # type: ignore[operator]


def test_event_rolls_back_with_its_change(database: Database) -> None:
    with pytest.raises(RuntimeError), database.write() as conn:
        record_event(conn, actor="ann", action="thing.create", object_type="thing",
                     object_id="1")
        raise RuntimeError("the change failed")
    assert _events(database) == []


def test_edges_are_idempotent_and_found_from_both_ends(database: Database) -> None:
    with database.write() as conn:
        add_edge(conn, ("dataset", "d1"), "input_training", ("run", "r1"))
        add_edge(conn, ("dataset", "d1"), "input_training", ("run", "r1"))
        add_edge(conn, ("run", "r1"), "produced", ("model", "m1"))
        add_edge(conn, ("dataset", "d2"), "input_training", ("run", "r2"))
    with database.read() as conn:
        around_run = edges_of(conn, ("run", "r1"))
        around_dataset = edges_of(conn, ("dataset", "d1"))
    assert sorted((e["src_id"], e["relation"], e["dst_id"]) for e in around_run) == [
        ("d1", "input_training", "r1"), ("r1", "produced", "m1")]
    assert [(e["src_type"], e["dst_type"]) for e in around_dataset] == [("dataset", "run")]
