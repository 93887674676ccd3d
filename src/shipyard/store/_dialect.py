"""The only SQL that differs between SQLite and PostgreSQL: upserts and insert-or-ignore.

Statements are built once per (dialect, table, columns) and cached: building an
``INSERT … ON CONFLICT`` construct (``.excluded`` makes a copy of every column) costs more
than executing it.

For the hottest writes (metric points, audit events, heartbeats) :class:`Prepared` goes one
step further: the statement is compiled to the driver's SQL once per dialect, and
:func:`execute_prepared` runs it with ``executemany`` on the DBAPI cursor of the caller's
transaction, skipping SQLAlchemy's per-call cache-key, compile-cache and parameter
processing. Driver errors are raised as SQLAlchemy's exception classes, as
``Connection.execute`` would raise them, so ``Database``'s error translation is unchanged.
These statements bypass SQLAlchemy's cursor events, so ``echo=True`` does not log them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

__all__ = ["insert_ignore", "upsert", "upsert_latest_metric", "Prepared", "execute_prepared",
           "dialect_insert", "build_insert_ignore", "build_upsert", "build_upsert_latest_metric"]

_cache: dict[tuple[Any, ...], Any] = {}


def _cached(key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
    stmt = _cache.get(key)
    if stmt is None:
        stmt = _cache.setdefault(key, build())  # a race builds twice; both are equal
    return stmt


def dialect_insert(dialect_name: str, table: sa.Table) -> Any:
    """The dialect's INSERT construct (both have ``on_conflict_do_*`` with the same API)."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    if dialect_name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
    raise ValueError(f"unsupported database dialect {dialect_name}")


def build_insert_ignore(dialect_name: str, table: sa.Table, keys: Sequence[str]) -> Any:
    return dialect_insert(dialect_name, table).on_conflict_do_nothing(index_elements=list(keys))


def build_upsert(dialect_name: str, table: sa.Table, keys: Sequence[str],
            update: Sequence[str]) -> Any:
    stmt = dialect_insert(dialect_name, table)
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in update}
    )


def build_upsert_latest_metric(dialect_name: str, table: sa.Table) -> Any:
    stmt = dialect_insert(dialect_name, table)
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


def insert_ignore(conn: Connection, table: sa.Table, keys: Sequence[str]) -> Any:
    """``INSERT … ON CONFLICT (keys) DO NOTHING``."""
    name, keys = conn.dialect.name, tuple(keys)
    return _cached(("ignore", name, table, keys), lambda: build_insert_ignore(name, table, keys))


def upsert(conn: Connection, table: sa.Table, keys: Sequence[str], update: Sequence[str]) -> Any:
    """``INSERT … ON CONFLICT (keys) DO UPDATE SET update = excluded.update``."""
    name, keys, update = conn.dialect.name, tuple(keys), tuple(update)
    return _cached(("upsert", name, table, keys, update),
                   lambda: build_upsert(name, table, keys, update))


def upsert_latest_metric(conn: Connection, table: sa.Table) -> Any:
    """Upsert into ``latest_metrics``, keeping the point with the largest (step, timestamp)."""
    name = conn.dialect.name
    return _cached(("latest", name, table), lambda: build_upsert_latest_metric(name, table))


# -- prepared statements --------------------------------------------------------------------

class Prepared:
    """A statement compiled once per dialect, run on the DBAPI cursor by
    :func:`execute_prepared` with one tuple of values per row, in ``columns`` order.

    ``build(dialect_name)`` returns the SQLAlchemy construct; every bound parameter in it is
    named after an entry of ``columns`` (INSERT values are, by default; name the others with
    ``sa.bindparam``) and constants are literal SQL (``sa.literal_column("'active'")``).
    Values must be what the driver takes as they are (``str``, ``int``, ``float``, ``bool``,
    ``None``): SQLAlchemy's type processing is skipped.
    """

    def __init__(self, build: Callable[[str], Any], columns: Sequence[str]) -> None:
        self.build = build
        self.columns = tuple(columns)
        self._compiled: dict[Any, tuple[str, Callable[[Sequence[Sequence[Any]]], Any]]] = {}
        self._lock = threading.Lock()

    def compiled(self, dialect: Dialect) -> tuple[str, Callable[[Sequence[Sequence[Any]]], Any]]:
        """(SQL, rows → the driver's parameters) for ``dialect``."""
        key = (type(dialect), dialect.paramstyle)  # drivers of one database differ
        found = self._compiled.get(key)
        if found is None:
            with self._lock:
                found = self._compiled.get(key)
                if found is None:
                    found = self._compiled[key] = self._compile(dialect)
        return found

    def _compile(self, dialect: Dialect) -> tuple[str, Callable[[Sequence[Sequence[Any]]], Any]]:
        stmt = self.build(dialect.name)
        # column_keys: an INSERT of exactly these columns (an UPDATE would SET them all);
        # for_executemany: no implicit RETURNING of the new primary key (PostgreSQL).
        keys = list(self.columns) if isinstance(stmt, sa.Insert) else None
        compiled = stmt.compile(dialect=dialect, column_keys=keys, for_executemany=True)
        names = list(compiled.binds)
        unknown = set(names) - set(self.columns)
        if unknown:
            raise ValueError(f"prepared statement has parameters {sorted(unknown)} that are "
                             f"not among its columns {list(self.columns)}")
        columns = self.columns
        if dialect.positional:
            order = [columns.index(n) for n in compiled.positiontup or []]
            if order == list(range(len(columns))):
                def convert(rows: Sequence[Sequence[Any]]) -> Any:
                    return rows
            else:
                def convert(rows: Sequence[Sequence[Any]]) -> Any:
                    return [tuple(row[i] for i in order) for row in rows]
        else:
            def convert(rows: Sequence[Sequence[Any]]) -> Any:
                return [dict(zip(columns, row, strict=True)) for row in rows]
        return compiled.string, convert


def execute_prepared(conn: Connection, prepared: Prepared, rows: Sequence[Sequence[Any]], *,
                     fetch: bool = False) -> Any:
    """Run ``prepared`` once per row in ``conn``'s transaction (``executemany``).

    Returns the number of rows changed or, with ``fetch=True`` (one row of parameters), the
    result rows as tuples.
    """
    if not rows:
        return [] if fetch else 0
    sql, convert = prepared.compiled(conn.dialect)
    params = convert(rows)
    if not conn.in_transaction():
        conn.begin()  # as Connection.execute would (autobegin); the caller commits
    dbapi = conn.dialect.loaded_dbapi
    cursor = conn.connection.cursor()
    try:
        if len(params) == 1:
            cursor.execute(sql, params[0])
        else:
            cursor.executemany(sql, params)
        return cursor.fetchall() if fetch else cursor.rowcount
    except dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(sql, params, exc, dbapi.Error,
                                         dialect=conn.dialect) from exc
    finally:
        cursor.close()
