"""The embedded online store: one SQLite file, one table per feature view version.

Each table has the join keys (``"$k0"``, ``"$k1"`` …) as its primary key, the event time in
``"$ts"`` (µs since the epoch) and one natively typed column per feature, stored
``WITHOUT ROWID`` so a lookup is one B-tree descent. Writes are ``executemany`` upserts
whose ``WHERE excluded."$ts" >= "$ts"`` keeps the newest row. The file runs in WAL mode;
the store keeps one connection for writes and one for reads (each behind a lock), so reads
go on while a materialization writes, from this process or another.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from shipyard import errors
from shipyard.features._definitions import FeatureView, ValueType
from shipyard.features._online import (
    OnlineRecord,
    check_arity,
    check_version,
    from_epoch_us,
    normalize_entity_keys,
    prepare_rows,
    resolve_features,
)

__all__ = ["SQLiteOnlineStore"]

_META = '"$shipyard_views"'
_TS = '"$ts"'
_READ_BATCH = 500  # keys per SELECT (9 join keys x 500 stays far below SQLite's bound limit)
_SQL_TYPES = {
    ValueType.INT32: "INTEGER", ValueType.INT64: "INTEGER", ValueType.FLOAT32: "REAL",
    ValueType.FLOAT64: "REAL", ValueType.STRING: "TEXT", ValueType.BOOL: "INTEGER",
    ValueType.TIMESTAMP: "INTEGER", ValueType.BYTES: "BLOB",
}
_DECODERS: dict[ValueType, Callable[[Any], Any]] = {
    ValueType.BOOL: bool, ValueType.TIMESTAMP: from_epoch_us,
}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table_name(view: str, version: int) -> str:
    return _q(f"fv${view}${version}")


def _key_columns(n: int) -> list[str]:
    return [f'"$k{i}"' for i in range(n)]


@dataclass
class _Table:
    name: str
    arity: int
    columns: set[str]


@dataclass(frozen=True)
class _Query:
    sql: str
    arity: int
    decoders: list[tuple[str, Callable[[Any], Any] | None]]


class SQLiteOnlineStore:
    """An online store in one SQLite file (``sqlite:///path``)."""

    def __init__(self, url: str) -> None:
        self.path = _path_of(url)
        self.url = f"sqlite:///{self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.ShipyardError(f"cannot create the folder of the online store "
                                       f"{self.url}: {exc.strerror or exc}") from exc
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._writer = self._connect()
        self._reader = self._connect()
        self._tables: dict[tuple[str, int], _Table] = {}
        self._queries: dict[tuple[Any, ...], _Query] = {}
        with self._translate():
            self._writer.execute(f"CREATE TABLE IF NOT EXISTS {_META} (view TEXT NOT NULL, "
                                 "version INTEGER NOT NULL, join_keys TEXT NOT NULL, "
                                 "PRIMARY KEY (view, version)) WITHOUT ROWID")

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                                   check_same_thread=False, cached_statements=512)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA cache_size=-65536")
        except sqlite3.Error as exc:
            raise errors.ShipyardError(f"cannot open the online store {self.url}: {exc}") from exc
        return conn

    def __enter__(self) -> SQLiteOnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ----------------------------------------------------------------------------

    def write(self, view: FeatureView, rows: pa.Table | pd.DataFrame, join_keys: Sequence[str],
              timestamp_field: str | None = None, *, version: int = 1) -> int:
        check_version(version)
        prepared = prepare_rows(view, rows, join_keys, timestamp_field)
        if not len(prepared):
            return 0
        columns = [*(_pylist(k) for k in prepared.keys), _pylist(prepared.event_us),
                   *(_pylist(a) for a in prepared.features.values())]
        with self._write_lock, self._translate():
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                table = self._ensure_table(conn, view, version, list(join_keys))
                conn.executemany(_upsert_sql(table, list(prepared.features)),
                                 zip(*columns, strict=True))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return len(prepared)

    def _ensure_table(self, conn: sqlite3.Connection, view: FeatureView, version: int,
                      join_keys: list[str]) -> _Table:
        row = conn.execute(f"SELECT join_keys FROM {_META} WHERE view = ? AND version = ?",
                           (view.name, version)).fetchone()
        name = _table_name(view.name, version)
        if row is None:
            keys = _key_columns(len(join_keys))
            definitions = [*keys, f"{_TS} INTEGER NOT NULL",
                           *(f"{_q(f.name)} {_SQL_TYPES[f.dtype]}" for f in view.schema_)]
            conn.execute(f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(definitions)}, "
                         f"PRIMARY KEY ({', '.join(keys)})) WITHOUT ROWID")
            conn.execute(f"INSERT INTO {_META} VALUES (?, ?, ?)",
                         (view.name, version, json.dumps(join_keys)))
        elif json.loads(row[0]) != join_keys:
            raise errors.InvalidInput(f"view {view.name!r} version {version} is keyed by "
                                      f"{json.loads(row[0])}, not {join_keys}",
                                      field="join_keys")
        columns = _columns(conn, name)
        for feature in view.schema_:  # features added to the view without a new version
            if feature.name not in columns:
                conn.execute(f"ALTER TABLE {name} ADD COLUMN {_q(feature.name)} "
                             f"{_SQL_TYPES[feature.dtype]}")
                columns.add(feature.name)
        table = _Table(name, len(join_keys), columns)
        self._tables[(view.name, version)] = table
        return table

    # -- reads -----------------------------------------------------------------------------

    def read(self, view: FeatureView, feature_names: Sequence[str] | None,
             entity_keys: Sequence[Any], *, version: int = 1) -> list[OnlineRecord | None]:
        features = resolve_features(view, feature_names)
        keys = normalize_entity_keys(entity_keys)
        if not keys:
            return []
        # (the hot path of serving: _translate's work inline, without a generator)
        with self._read_lock:
            try:
                try:
                    return self._read(view, features, keys, version)
                except sqlite3.OperationalError as exc:
                    if "no such" not in str(exc):  # table dropped or altered elsewhere
                        raise
                    self._forget(view.name)
                    return self._read(view, features, keys, version)
            except sqlite3.Error as exc:
                raise self._translated(exc) from exc

    def _read(self, view: FeatureView, features: list[str], keys: list[tuple[Any, ...]],
              version: int) -> list[OnlineRecord | None]:
        table = self._tables.get((view.name, version))
        if table is None or not table.columns.issuperset(features):
            table = self._load_table(view.name, version)
            if table is None:
                return [None] * len(keys)
            complete = table.columns.issuperset(features)
        else:
            complete = True
        check_arity(view, keys, table.arity)
        found: dict[tuple[Any, ...], OnlineRecord] = {}
        for start in range(0, len(keys), _READ_BATCH):
            batch = keys[start:start + _READ_BATCH]
            query = self._query(view, table, features, len(batch), complete)
            params = [v for key in batch for v in key] if table.arity > 1 else \
                [key[0] for key in batch]
            for row in self._reader.execute(query.sql, params):
                values = {name: (v if decode is None or v is None else decode(v))
                          for (name, decode), v in zip(query.decoders, row[query.arity + 1:],
                                                       strict=True)}
                found[row[:query.arity]] = OnlineRecord(values, from_epoch_us(row[query.arity]))
        return [found.get(key) for key in keys]

    def _query(self, view: FeatureView, table: _Table, features: list[str], n: int,
               complete: bool) -> _Query:
        # a feature the table lacks (never written) reads as NULL
        absent = () if complete else tuple(f for f in features if f not in table.columns)
        cache_key = (table.name, tuple(features), n, absent)
        query = self._queries.get(cache_key)
        if query is not None:
            return query
        dtypes = {f.name: f.dtype for f in view.schema_}
        keys = _key_columns(table.arity)
        selected = ["NULL" if f in absent else _q(f) for f in features]
        if table.arity == 1:
            where = f"{keys[0]} IN ({', '.join('?' * n)})"
        else:
            one = f"({', '.join('?' * table.arity)})"
            where = f"({', '.join(keys)}) IN (VALUES {', '.join([one] * n)})"
        sql = f"SELECT {', '.join([*keys, _TS, *selected])} FROM {table.name} WHERE {where}"
        query = _Query(sql, table.arity, [(f, _DECODERS.get(dtypes[f])) for f in features])
        if len(self._queries) > 4096:
            self._queries.clear()
        self._queries[cache_key] = query
        return query

    def _load_table(self, view: str, version: int) -> _Table | None:
        row = self._reader.execute(f"SELECT join_keys FROM {_META} WHERE view = ? AND "
                                   "version = ?", (view, version)).fetchone()
        if row is None:
            return None
        name = _table_name(view, version)
        table = _Table(name, len(json.loads(row[0])), _columns(self._reader, name))
        self._tables[(view, version)] = table
        self._queries = {k: q for k, q in self._queries.items() if k[0] != name}
        return table

    # -- housekeeping ----------------------------------------------------------------------

    def delete_view(self, view: FeatureView | str, *, version: int | None = None) -> None:
        name = view if isinstance(view, str) else view.name
        with self._write_lock, self._translate():
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                versions = [v for (v,) in conn.execute(
                    f"SELECT version FROM {_META} WHERE view = ?", (name,))
                    if version is None or v == version]
                for v in versions:
                    conn.execute(f"DROP TABLE IF EXISTS {_table_name(name, v)}")
                    conn.execute(f"DELETE FROM {_META} WHERE view = ? AND version = ?", (name, v))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        with self._read_lock:
            self._forget(name)

    def _forget(self, view: str) -> None:
        for key in [k for k in self._tables if k[0] == view]:
            table = self._tables.pop(key)
            self._queries = {k: q for k, q in self._queries.items() if k[0] != table.name}

    def close(self) -> None:
        with self._write_lock:
            self._writer.close()
        with self._read_lock:
            self._reader.close()

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._translated(exc) from exc

    def _translated(self, exc: sqlite3.Error) -> errors.ShipyardError:
        if isinstance(exc, sqlite3.IntegrityError):
            return errors.InvalidInput(f"online store {self.url}: {exc}")
        return errors.ShipyardError(f"online store {self.url}: {exc}")


def _path_of(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise errors.InvalidInput(f"invalid SQLite online store URL {url!r}: use sqlite:///path",
                                  field="online_store")
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    if not path or path == ":memory:":
        raise errors.InvalidInput("the SQLite online store needs a file path (sqlite:///path)",
                                  field="online_store")
    return Path(path).expanduser().absolute()


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")
            if not row[1].startswith("$")}


def _upsert_sql(table: _Table, features: list[str]) -> str:
    keys = _key_columns(table.arity)
    columns = [*keys, _TS, *(_q(f) for f in features)]
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[table.arity:])
    return (f"INSERT INTO {table.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))}) ON CONFLICT ({', '.join(keys)}) "
            f"DO UPDATE SET {updates} WHERE excluded.{_TS} >= {table.name}.{_TS}")


def _pylist(array: pa.Array) -> list[Any]:
    """Python values for SQLite (timestamps as µs ints); numpy's tolist when there are no NULLs."""
    if pa.types.is_timestamp(array.type):
        array = array.cast(pa.int64())
    kind = array.type
    if not array.null_count and (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                                 or pa.types.is_boolean(kind)):
        return array.to_numpy(zero_copy_only=False).tolist()
    return array.to_pylist()
