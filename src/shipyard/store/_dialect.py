"""The only SQL that differs between SQLite and PostgreSQL: upserts and insert-or-ignore."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["insert_ignore", "upsert", "upsert_latest_metric"]


def _insert(conn: Connection, table: sa.Table):  # type: ignore[no-untyped-def]
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only the two dialects are supported
        raise NotImplementedError(f"unsupported database dialect {conn.dialect.name}")
    return insert(table)


def insert_ignore(conn: Connection, table: sa.Table, keys: Sequence[str]):  # type: ignore[no-untyped-def]
    """``INSERT … ON CONFLICT (keys) DO NOTHING``."""
    return _insert(conn, table).on_conflict_do_nothing(index_elements=list(keys))


def upsert(conn: Connection, table: sa.Table, keys: Sequence[str], update: Sequence[str]):  # type: ignore[no-untyped-def]
    """``INSERT … ON CONFLICT (keys) DO UPDATE SET update = excluded.update``."""
    stmt = _insert(conn, table)
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in update}
    )


def upsert_latest_metric(conn: Connection, table: sa.Table):  # type: ignore[no-untyped-def]
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
