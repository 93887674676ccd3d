"""Core metadata storage: one SQL implementation for SQLite and PostgreSQL.

Public API: :class:`Database` (engine, transactions, migrations), the Core tables in
:mod:`shipyard.store.tables`, audit events and lineage edges.
"""

from . import _schema as tables
from ._audit import add_edge, edges_of, now_ms, record_event
from ._db import HEAD_REVISION, Database
from ._dialect import insert_ignore, upsert, upsert_latest_metric

__all__ = [
    "Database",
    "HEAD_REVISION",
    "tables",
    "record_event",
    "add_edge",
    "edges_of",
    "now_ms",
    "insert_ignore",
    "upsert",
    "upsert_latest_metric",
]
