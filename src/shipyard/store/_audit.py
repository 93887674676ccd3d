"""Audit events and lineage edges, written inside the caller's transaction.

Both are append-only. Writing them on the same connection as the change they describe means
a change and its audit event commit or roll back together.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import _schema
from ._dialect import Prepared, execute_prepared, insert_ignore

__all__ = ["record_event", "add_edge", "now_ms"]

_EVENT = Prepared(lambda _dialect: _schema.audit_events.insert(),
                  ["timestamp", "actor", "action", "object_type", "object_id", "details"])


def now_ms() -> int:
    return int(time.time() * 1000)


def record_event(
    conn: Connection,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one audit event (``action`` like ``run.create``) on ``conn``'s transaction."""
    execute_prepared(conn, _EVENT, [(
        now_ms(), actor, action, object_type, str(object_id),
        json.dumps(details, sort_keys=True, default=str) if details else None,
    )])


def add_edge(
    conn: Connection,
    src: tuple[str, str],
    relation: str,
    dst: tuple[str, str],
) -> None:
    """Add a lineage edge ``src -relation-> dst`` (idempotent)."""
    conn.execute(
        insert_ignore(conn, _schema.lineage_edges, ["src_type", "src_id", "relation",
                                                    "dst_type", "dst_id"]),
        {
            "src_type": src[0],
            "src_id": str(src[1]),
            "relation": relation,
            "dst_type": dst[0],
            "dst_id": str(dst[1]),
            "creation_time": now_ms(),
        },
    )


def edges_of(conn: Connection, node: tuple[str, str]) -> list[dict[str, Any]]:
    """Every edge that starts or ends at ``node``."""
    e = _schema.lineage_edges
    rows = conn.execute(
        sa.select(e).where(
            sa.or_(
                sa.and_(e.c.src_type == node[0], e.c.src_id == str(node[1])),
                sa.and_(e.c.dst_type == node[0], e.c.dst_id == str(node[1])),
            )
        )
    ).mappings()
    return [dict(r) for r in rows]
