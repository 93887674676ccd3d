"""The only SQL that differs between SQLite and PostgreSQL: upserts and insert-or-ignore."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["insert_ignore", "upsert", "upsert_latest_metric"]


def _insert(conn: Connection, table: sa.Table) -> Any:
    """The dialect's INSERT construct (both have ``on_conflict_do_*`` with the same API)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
    raise ValueError(f"unsupported database dialect {conn.dialect.name}")


def insert_ignore(conn: Connection, table: sa.Table, keys: Sequence[str]) -> Any:
    """``INSERT … ON CONFLICT (keys) DO NOTHING``."""
    return _insert(conn, table).on_conflict_do_nothing(index_elements=list(keys))


def upsert(conn: Connection, table: sa.Table, keys: Sequence[str], update: Sequence[str]) -> Any:
    """``INSERT … ON CONFLICT (keys) DO UPDATE SET update = excluded.update``."""
    stmt = _insert(conn, table)
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in update}
    )


def upsert_latest_metric(conn: Connection, table: sa.Table) -> Any:
    """Upsert into ``latest_metrics``, keeping the point with the largest (step, timestamp)."""
    stmt = _insert(conn, table)
    ex = stmt.excluded
    newer = sa.or_(
        ex.step > table.c.step,
        sa.and_(ex.step == table.c.step, ex.timestamp >= table.c.timestamp),
    )
    return stmt.on_conflict_do_update(
        index_elements=["run_id", "key"],
        set_={"value": ex.value, "is_nan": ex.is_nan, "step": ex.step,
              "timestamp": ex.timestamp},
        where=newer,
    )
