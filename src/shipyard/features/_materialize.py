"""Materialization: copy the latest feature values of a time window into an online store.

:func:`materialize` reads the source rows with ``start <= event_timestamp < end``, keeps the
latest row per entity key (ties on the event time go to the later created timestamp, a NULL
created timestamp counting as the oldest, then to the later row of the source), checks the
expectations over the whole window, writes in chunks with a progress bar, profiles the
features into ``feature_statistics`` and records the window in
``feature_materializations`` (``running`` → ``done``, or ``failed``).
:func:`materialize_incremental` starts where the last ``done`` window of the view version
and store ended, so a window that crashed (left ``running``) is simply covered again.
Online writes keep the newest row per key, so re-running any window is harmless.

:func:`push` writes fresh rows online at once (and, with ``to_offline=True``, appends them
to the view's Parquet folder first, so the offline store stays the source of truth).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from shipyard import errors
from shipyard._progress import progress_bar
from shipyard.features._definitions import DataFrameSource, FeatureView, FileSource
from shipyard.features._expectations import Expectation, enforce
from shipyard.features._online import OnlineStore, as_table, epoch_us, prepare_rows
from shipyard.features._statistics import compute_statistics, save_statistics
from shipyard.store import Database, now_ms, tables

__all__ = ["MaterializationResult", "SourceReader", "materialize", "materialize_incremental",
           "last_materialized", "push", "read_source_window", "latest_per_key"]

#: ``source_reader(view, start, end)``: the source rows with ``start <= ts < end``
#: (``start=None``: from the beginning).
SourceReader = Callable[[FeatureView, datetime | None, datetime], pa.Table]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class MaterializationResult:
    """What one window did."""

    view: str
    version: int
    online_store: str
    start: datetime | None
    end: datetime
    rows_read: int
    entities_written: int
    rows_dropped: int = 0  # rows of the window with a NULL join key (never served)


def materialize(db: Database, store: OnlineStore, store_url: str | None, view: FeatureView,
                view_version: int, source_reader: SourceReader | None,
                start: datetime | None, end: datetime, progress: bool = True, *,
                join_keys: Sequence[str] | None = None,
                expectations: Sequence[Expectation] | None = None,
                chunk_size: int = 50_000) -> MaterializationResult:
    """Write the latest row per entity key of ``[start, end)`` to ``store``.

    ``join_keys`` default to the view's entity names (an entity's default join key);
    ``store_url`` (default ``store.url``) names the store in ``feature_materializations``.
    Raises ``InvalidInput`` (:class:`~shipyard.features.ExpectationsFailed` for broken
    expectations) before anything is written.
    """
    start, end = (None if start is None else _utc(start)), _utc(end)
    if start is not None and start >= end:
        raise errors.InvalidInput(f"empty window: start {start.isoformat()} is not before end "
                                  f"{end.isoformat()}", field="start")
    if chunk_size < 1:
        raise errors.InvalidInput("chunk_size must be positive", field="chunk_size")
    store_url = store_url or store.url
    keys = list(join_keys or view.entities)
    window = _begin_window(db, view.name, view_version, store_url, start, end)
    try:
        table = as_table((source_reader or read_source_window)(view, start, end))
        ts_field = view.source.timestamp_field
        created = view.source.created_timestamp_field
        window_rows, dropped = _clean_window(table, keys, ts_field, created, start, end)
        prepare_rows(view, window_rows.slice(0, 0), keys, ts_field)  # types, before any write
        enforce(window_rows, expectations, keys)
        # the profile is computed while the latest rows are picked and written (two chunk
        # writes in flight: one encodes while the other waits on the store); all of it
        # mostly runs outside the GIL
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="materialize") as pool:
            stats = pool.submit(compute_statistics, window_rows, view.features) \
                if window_rows.num_rows else None
            latest = latest_per_key(window_rows, keys, ts_field, created)
            _write_chunks(pool, store, view, view_version, latest, keys, chunk_size, progress)
            if stats is not None:
                save_statistics(db, view, view_version, stats.result(), "materialization")
    except BaseException:
        with contextlib.suppress(Exception):  # the original error matters more
            _finish_window(db, window, "failed", 0)
        raise
    _finish_window(db, window, "done", window_rows.num_rows)
    return MaterializationResult(view.name, view_version, store_url, start, end,
                                 window_rows.num_rows, latest.num_rows, dropped)


def materialize_incremental(db: Database, store: OnlineStore, store_url: str | None,
                            view: FeatureView, view_version: int,
                            source_reader: SourceReader | None, end: datetime,
                            progress: bool = True, **options: Any) -> MaterializationResult:
    """Materialize from the end of the last ``done`` window (of this view version and store)
    to ``end``. Without one, start at ``end - ttl`` (older rows would be expired), or at the
    beginning when the view has no TTL. ``options`` are :func:`materialize`'s keywords."""
    store_url = store_url or store.url
    end = _utc(end)
    start = last_materialized(db, view.name, view_version, store_url)
    if start is None and view.ttl is not None:
        start = end - view.ttl
    if start is not None and start >= end:  # already up to date
        return MaterializationResult(view.name, view_version, store_url, start, end, 0, 0)
    return materialize(db, store, store_url, view, view_version, source_reader, start, end,
                       progress, **options)


def last_materialized(db: Database, view: str, version: int, store_url: str) -> datetime | None:
    """The end of the latest ``done`` window of a view version in a store."""
    t = tables.feature_materializations
    with db.read() as conn:
        end_ms = conn.execute(sa.select(sa.func.max(t.c.end_time)).where(
            t.c.view_name == view, t.c.view_version == version, t.c.online_store == store_url,
            t.c.status == "done")).scalar()
    return None if end_ms is None else _EPOCH + timedelta(milliseconds=end_ms)


def push(store: OnlineStore, view: FeatureView, rows: Any, *,
         join_keys: Sequence[str] | None = None, timestamp_field: str | None = None,
         version: int = 1, expectations: Sequence[Expectation] | None = None,
         to_offline: bool = False) -> int:
    """Write ``rows`` online now (the latest per key wins); returns the number of rows.

    With ``to_offline=True`` the rows are first appended to the view's ``FileSource`` folder
    as a new Parquet file. Nothing is written when a row is invalid or breaks expectations.
    """
    table = as_table(rows)
    keys = list(join_keys or view.entities)
    ts_field = timestamp_field or view.source.timestamp_field
    prepare_rows(view, table, keys, ts_field)  # every check, before any write
    enforce(table, expectations, keys)
    if not table.num_rows:
        return 0
    if to_offline:
        append_offline(view, table, keys, ts_field)
    created = view.source.created_timestamp_field
    latest = latest_per_key(table, keys, ts_field,
                            created if created in table.column_names else None)
    store.write(view, latest, keys, ts_field, version=version)
    return table.num_rows


# -- steps -------------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    if not isinstance(moment, datetime):
        raise errors.InvalidInput(f"expected a datetime, got {moment!r}", field="end")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _begin_window(db: Database, view: str, version: int, store_url: str,
                  start: datetime | None, end: datetime) -> int:
    with db.write() as conn:
        result = conn.execute(tables.feature_materializations.insert().values(
            view_name=view, view_version=version, online_store=store_url,
            start_time=None if start is None else _ms(start), end_time=_ms(end), rows=0,
            status="running", created_time=now_ms()))
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def _finish_window(db: Database, window: int, status: str, rows: int) -> None:
    t = tables.feature_materializations
    with db.write() as conn:
        conn.execute(t.update().where(t.c.id == window).values(status=status, rows=rows))


def _clean_window(table: pa.Table, keys: list[str], ts_field: str, created: str | None,
                  start: datetime | None, end: datetime) -> tuple[pa.Table, int]:
    """The rows inside ``[start, end)`` with every join key, and how many lacked one.

    Rows without an event timestamp belong to no window and are left out silently."""
    missing = [c for c in [*keys, ts_field, created] if c and c not in table.column_names]
    if missing:
        raise errors.InvalidInput(f"the source rows lack the column(s) "
                                  f"{', '.join(map(repr, missing))}", field=missing[0])
    for name in (ts_field, created):
        if name and not pa.types.is_timestamp(table.column(name).type):
            raise errors.InvalidInput(f"source column {name!r} must hold timestamps, not "
                                      f"{table.column(name).type}", field=name)
    column = table.column(ts_field)
    micros = epoch_us(column)
    inside = pc.less(micros, _us(end))
    if start is not None:
        inside = pc.and_(inside, pc.greater_equal(micros, _us(start)))
    dropped = 0
    for key in keys:
        null_key = table.column(key).is_null()
        dropped += pc.sum(pc.and_(null_key, inside.fill_null(False))).as_py() or 0
        inside = pc.and_(inside, pc.invert(null_key))
    return _keep(table, inside), dropped


def _keep(table: pa.Table, mask: Any) -> pa.Table:
    """``table.filter(mask)`` (NULL = drop), without a copy when every row stays."""
    if pc.all(mask.fill_null(False)).as_py() is not False:
        return table
    return table.filter(mask)


def latest_per_key(table: pa.Table, join_keys: Sequence[str], timestamp_field: str,
                   created_field: str | None = None) -> pa.Table:
    """One row per entity key: the greatest (event, created) timestamp; on a full tie the
    later row. Rows must have non-NULL keys and event timestamps.

    The result is sorted by key: B-tree stores (SQLite) insert sorted keys several times
    faster than random ones."""
    if table.num_rows < 2:
        return table
    # a stable sort: the last row of each key run wins; a NULL created time sorts first
    columns = {f"k{i}": table.column(k) for i, k in enumerate(join_keys)}
    columns["event"] = epoch_us(table.column(timestamp_field))
    if created_field:
        columns["created"] = epoch_us(table.column(created_field)).fill_null(
            int(np.iinfo(np.int64).min))
    order = pc.sort_indices(pa.table(columns),
                            sort_keys=[(name, "ascending") for name in columns])
    n = len(order)
    last = np.zeros(n, dtype=bool)
    last[-1] = True
    for key in join_keys:
        ordered = table.column(key).take(order)
        last[:-1] |= pc.not_equal(ordered.slice(1), ordered.slice(0, n - 1)).to_numpy(
            zero_copy_only=False)
    return table.take(order.to_numpy()[last])


def _write_chunks(pool: ThreadPoolExecutor, store: OnlineStore, view: FeatureView,
                  version: int, rows: pa.Table, keys: list[str], chunk_size: int,
                  progress: bool) -> None:
    in_flight: deque[Future[int]] = deque()
    with progress_bar(progress, rows.num_rows, f"materialize {view.name} v{version}") \
            as advance:
        try:
            for offset in range(0, rows.num_rows, chunk_size):
                in_flight.append(pool.submit(store.write, view, rows.slice(offset, chunk_size),
                                             keys, view.source.timestamp_field,
                                             version=version))
                if len(in_flight) >= 2:
                    advance(in_flight.popleft().result())
            while in_flight:
                advance(in_flight.popleft().result())
        finally:
            for future in in_flight:
                future.cancel()


# -- sources -----------------------------------------------------------------------------------


def read_source_window(view: FeatureView, start: datetime | None, end: datetime) -> pa.Table:
    """The rows of a ``FileSource`` (Parquet file or folder, local or remote) or an in-memory
    ``DataFrameSource`` with ``start <= event_timestamp < end``."""
    source = view.source
    ts_field = source.timestamp_field
    if isinstance(source, DataFrameSource):
        if source.frame is None:
            raise errors.Conflict(f"data frame source {source.name!r} has no frame in memory: "
                                  "pass the offline store's source_reader")
        table = as_table(source.frame)
    elif isinstance(source, FileSource):
        table = _read_parquet_window(source.path, ts_field, start, end)
    else:
        raise errors.InvalidInput(f"read_source_window reads FileSource and DataFrameSource, not "
                                  f"{type(source).__name__}: pass a source_reader",
                                  field="source")
    if ts_field not in table.column_names:
        raise errors.InvalidInput(f"the source of view {view.name!r} has no timestamp column "
                                  f"{ts_field!r}", field="source")
    micros = epoch_us(table.column(ts_field))
    inside = pc.less(micros, _us(_utc(end)))
    if start is not None:
        inside = pc.and_(inside, pc.greater_equal(micros, _us(_utc(start))))
    return _keep(table, inside)


def _pushdown(field: pa.Field, start: datetime | None, end: datetime) -> Any:
    """A filter no stricter than the window (the exact one runs in microseconds after)."""
    import pyarrow.dataset as ds

    def bound(moment: datetime) -> pa.Scalar:
        naive = _utc(moment).replace(tzinfo=None)
        return pa.scalar(naive, pa.timestamp("us")).cast(
            pa.timestamp(field.type.unit, field.type.tz), safe=False)

    expression = ds.field(field.name) <= bound(end)
    if start is not None:
        expression = expression & (ds.field(field.name) >= bound(start))
    return expression


def _read_parquet_window(path: str, ts_field: str, start: datetime | None,
                         end: datetime) -> pa.Table:
    """The rows of every Parquet file at ``path`` near the window, file by file (files may
    disagree on the timestamp's unit or zone; the column comes back as µs UTC)."""
    import pyarrow.dataset as ds

    filesystem: Any = None
    if "://" in path and not path.startswith("file://"):
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        remote, root = _remote_fs(path)
        files = sorted(f for f in remote.find(root) if f.endswith(".parquet")) \
            if remote.isdir(root) else ([root] if remote.isfile(root) else [])
        filesystem = PyFileSystem(FSSpecHandler(remote))
    else:
        local = Path(path.removeprefix("file://")).expanduser()
        files = sorted(str(p) for p in local.rglob("*.parquet")) if local.is_dir() else \
            ([str(local)] if local.is_file() else [])
    if not files:
        raise errors.InvalidInput(f"no Parquet files at {path!r}", field="source")
    parts = []
    for file in files:
        dataset = ds.dataset(file, format="parquet", filesystem=filesystem)
        if ts_field not in dataset.schema.names or \
                not pa.types.is_timestamp(dataset.schema.field(ts_field).type):
            raise errors.InvalidInput(f"Parquet file {file!r} has no timestamp column "
                                      f"{ts_field!r}", field="source")
        part = dataset.to_table(filter=_pushdown(dataset.schema.field(ts_field), start, end))
        index = part.column_names.index(ts_field)
        parts.append(part.set_column(index, ts_field, epoch_us(part.column(ts_field)).cast(
            pa.timestamp("us", tz="UTC"))))
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="permissive")


def _conform(table: pa.Table, schema: pa.Schema, view: str) -> pa.Table:
    """``table`` with the column types of the folder's files (so one dataset reads both)."""
    columns = []
    for field in table.schema:
        column = table.column(field.name)
        if field.name in schema.names and schema.field(field.name).type != field.type:
            target = schema.field(field.name).type
            try:
                column = column.cast(target, safe=not pa.types.is_timestamp(target))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise errors.InvalidInput(f"pushed column {field.name!r} ({field.type}) does not "
                                          f"fit the {target} of view {view!r}'s Parquet files",
                                          field=field.name) from exc
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _remote_fs(path: str) -> tuple[Any, str]:
    import fsspec

    protocol, root = path.split("://", 1)
    options: dict[str, Any] = {}
    if protocol in ("s3", "s3a"):
        from shipyard.config import get_settings

        endpoint = get_settings().s3_endpoint_url
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
    try:
        return fsspec.filesystem(protocol, **options), root
    except ImportError as exc:
        raise errors.MissingDependency(f"{protocol}:// paths need their fsspec driver "
                                       f"(s3: pip install 'shipyard-mlops[s3]'): {exc}") from exc


def append_offline(view: FeatureView, table: pa.Table, keys: list[str], ts_field: str) -> str:
    """Add ``table`` to the view's ``FileSource`` folder as one new Parquet file; its path."""
    import pyarrow.parquet as pq

    source = view.source
    if not isinstance(source, FileSource) or source.path.endswith(".parquet"):
        raise errors.InvalidInput(f"push to_offline needs a FileSource folder; view "
                                  f"{view.name!r} has {source.kind} source "
                                  f"{getattr(source, 'path', '')!r}", field="to_offline")
    columns = [*keys, ts_field]
    created = source.created_timestamp_field
    if created is not None and created in table.column_names:
        columns.append(created)
    table = table.select([*columns, *view.features])
    name = f"push-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
    if "://" in source.path and not source.path.startswith("file://"):
        filesystem, root = _remote_fs(source.path)
        target = f"{root.rstrip('/')}/{name}"
        with filesystem.open(target, "wb") as fh:  # an object store publishes on close
            pq.write_table(table, fh)
        return f"{source.path.rstrip('/')}/{name}"
    folder = Path(source.path.removeprefix("file://")).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    existing = next(iter(sorted(folder.rglob("*.parquet"))), None)
    if existing is not None:
        table = _conform(table, pq.read_schema(existing), view.name)
    tmp = folder / f".{name}.tmp"
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, folder / name)
    finally:
        tmp.unlink(missing_ok=True)
    return str(folder / name)
