"""Online stores: the latest feature values per entity key, for low-latency serving.

One small protocol, :class:`OnlineStore`, with one module per backend (``_online_sqlite``
embedded, ``_online_redis`` production); a URL picks the backend (:func:`open_online_store`)
and a backend's dependency is imported only when it is used.

Every backend keeps, per feature view version and entity key, the row with the greatest
event timestamp: a row replaces the stored one only when its event timestamp is ``>=`` the
stored one, so rewriting the same rows is idempotent and the order of writes does not
matter. Validation of the rows (columns present, types that fit the view's schema, no NULL
keys or timestamps) happens once, here, in :func:`prepare_rows`; backends only save and load.

Values come back as Python objects of the feature's type: ``int``, ``float``, ``str``,
``bool``, ``bytes``, tz-aware UTC ``datetime`` (microsecond precision) or ``None``. NaN is a
missing value (``None``), as in pandas.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shipyard import errors
from shipyard.features._definitions import FeatureView, ValueType

__all__ = [
    "OnlineRecord",
    "OnlineStore",
    "PreparedRows",
    "open_online_store",
    "default_online_url",
    "prepare_rows",
    "resolve_features",
    "normalize_entity_keys",
    "from_epoch_us",
    "epoch_us",
    "as_table",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TS_US = pa.timestamp("us", tz="UTC")

#: The Arrow type each value type is stored as (int32 widens, float32 keeps its value).
STORAGE_TYPES: dict[ValueType, pa.DataType] = {
    ValueType.INT32: pa.int64(),
    ValueType.INT64: pa.int64(),
    ValueType.FLOAT32: pa.float64(),
    ValueType.FLOAT64: pa.float64(),
    ValueType.STRING: pa.string(),
    ValueType.BOOL: pa.bool_(),
    ValueType.TIMESTAMP: _TS_US,
    ValueType.BYTES: pa.binary(),
}


@dataclass(frozen=True, slots=True)
class OnlineRecord:
    """The stored values of one entity key and the event timestamp of the row they came from."""

    values: dict[str, Any]
    event_timestamp: datetime


@runtime_checkable
class OnlineStore(Protocol):
    """The latest feature values per (view, version, entity key)."""

    #: The store's URL without credentials (recorded with each materialization window).
    url: str

    def write(self, view: FeatureView, rows: pa.Table | pd.DataFrame, join_keys: Sequence[str],
              timestamp_field: str | None = None, *, version: int = 1) -> int:
        """Upsert ``rows``: each replaces the stored row of its key unless that one is newer.

        ``rows`` holds the join keys, the event timestamp (default: the view source's
        ``timestamp_field``) and every feature of the view. Returns the number of rows given.
        """
        ...

    def read(self, view: FeatureView, feature_names: Sequence[str] | None,
             entity_keys: Sequence[Any], *, version: int = 1) -> list[OnlineRecord | None]:
        """The stored features of each key (a tuple in join-key order; a scalar for one key).

        ``feature_names=None`` reads every feature of the view. Unknown keys give ``None``.
        """
        ...

    def delete_view(self, view: FeatureView | str, *, version: int | None = None) -> None:
        """Forget the view's rows: one version, or every version when ``version`` is None."""
        ...

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...


def default_online_url() -> str:
    """``sqlite:///<SHIPYARD_HOME>/online.db``."""
    from shipyard.config import get_settings

    return f"sqlite:///{get_settings().home / 'online.db'}"


def open_online_store(url: str | None = None) -> OnlineStore:
    """The online store at ``url``: ``sqlite:///path`` or ``redis://host:port/db``.

    Redis URLs take an optional ``?prefix=name`` for the keys (default ``shipyard``).
    """
    url = url or default_online_url()
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        from shipyard.features._online_sqlite import SQLiteOnlineStore

        return SQLiteOnlineStore(url)
    if scheme in ("redis", "rediss", "unix"):
        from shipyard.features._online_redis import RedisOnlineStore

        return RedisOnlineStore(url)
    raise errors.InvalidInput(f"unsupported online store URL {url.split('@')[-1]!r}: use "
                              "sqlite:///path or redis://host:port/db", field="online_store")


# -- shared validation -----------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedRows:
    """Rows checked against a view: keys, event times (µs UTC) and storage-typed features."""

    keys: list[pa.Array]
    event_us: pa.Array
    features: dict[str, pa.Array]

    def __len__(self) -> int:
        return len(self.event_us)


def prepare_rows(view: FeatureView, rows: Any, join_keys: Sequence[str],
                 timestamp_field: str | None = None) -> PreparedRows:
    """Check ``rows`` against ``view`` and convert every column to its storage type."""
    table = as_table(rows)
    ts_field = timestamp_field or view.source.timestamp_field
    keys = list(join_keys)
    if not keys:
        raise errors.InvalidInput(f"view {view.name!r}: no join keys given", field="join_keys")
    names = set(table.column_names)
    missing = [c for c in [*keys, ts_field, *view.features] if c not in names]
    if missing:
        raise errors.InvalidInput(
            f"rows for view {view.name!r} lack the column(s) {', '.join(map(repr, missing))} "
            f"(they have: {', '.join(table.column_names)})", field=missing[0])
    table = table.select([*keys, ts_field, *view.features]).combine_chunks()
    key_arrays = [_key_column(view, k, _chunk(table.column(k))) for k in keys]
    event = _chunk(table.column(ts_field))
    if not pa.types.is_timestamp(event.type):
        raise errors.InvalidInput(f"timestamp column {ts_field!r} must hold timestamps, not "
                                  f"{event.type}", field=ts_field)
    if event.null_count:
        raise errors.InvalidInput(f"timestamp column {ts_field!r} has {event.null_count} NULL "
                                  "value(s)", field=ts_field)
    event_us = epoch_us(event)
    features = {f.name: _feature_column(view, f.name, f.dtype, _chunk(table.column(f.name)))
                for f in view.schema_}
    return PreparedRows(key_arrays, event_us, features)


def as_table(rows: Any) -> pa.Table:
    """``rows`` (pandas DataFrame, Arrow table or record batch) as an Arrow table."""
    if isinstance(rows, pa.Table):
        return rows
    if isinstance(rows, pa.RecordBatch):
        return pa.Table.from_batches([rows])
    if isinstance(rows, pd.DataFrame):
        try:
            return pa.Table.from_pandas(rows, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise errors.InvalidInput(f"rows cannot be converted to Arrow: {exc}",
                                      field="rows") from exc
    raise errors.InvalidInput("rows must be a pandas DataFrame or a pyarrow Table, not "
                              f"{type(rows).__name__}", field="rows")


def _chunk(column: pa.ChunkedArray) -> pa.Array:
    array = column.chunk(0) if column.num_chunks == 1 else pa.concat_arrays(column.chunks)
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array


def _key_column(view: FeatureView, name: str, array: pa.Array) -> pa.Array:
    if array.null_count:
        raise errors.InvalidInput(f"join key {name!r} of view {view.name!r} has "
                                  f"{array.null_count} NULL value(s)", field=name)
    kind = array.type
    if pa.types.is_integer(kind):
        return array.cast(pa.int64())
    if pa.types.is_boolean(kind):
        return array.cast(pa.int64())
    if pa.types.is_floating(kind):  # pandas turns integer keys with gaps into floats
        with contextlib.suppress(pa.ArrowInvalid):
            return array.cast(pa.int64())
    if pa.types.is_timestamp(kind):
        return epoch_us(array)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return array.cast(pa.string())
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or \
            pa.types.is_fixed_size_binary(kind):
        return array.cast(pa.binary())
    raise errors.InvalidInput(f"join key {name!r} of view {view.name!r} has type {kind}: use "
                              "integers, strings, bytes, bools or timestamps (floats only "
                              "with whole values)", field=name)


def _feature_column(view: FeatureView, name: str, dtype: ValueType, array: pa.Array) -> pa.Array:
    kind = array.type
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
    fits = {
        ValueType.INT32: numeric, ValueType.INT64: numeric,
        ValueType.FLOAT32: numeric, ValueType.FLOAT64: numeric,
        ValueType.STRING: pa.types.is_string(kind) or pa.types.is_large_string(kind),
        ValueType.BOOL: pa.types.is_boolean(kind),
        ValueType.TIMESTAMP: pa.types.is_timestamp(kind),
        ValueType.BYTES: pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
        or pa.types.is_fixed_size_binary(kind),
    }[dtype] or pa.types.is_null(kind)
    if not fits:
        raise errors.InvalidInput(f"feature {name!r} of view {view.name!r} is {dtype.value} but "
                                  f"the column has type {kind}", field=name)
    if pa.types.is_floating(kind) and array.null_count < len(array) and \
            pc.any(pc.is_nan(array)).as_py():
        array = pc.if_else(pc.is_nan(array), pa.scalar(None, kind), array)
    try:
        if dtype is ValueType.TIMESTAMP and not pa.types.is_null(kind):
            return epoch_us(array).cast(_TS_US)
        if dtype is ValueType.FLOAT32:
            array = array.cast(pa.float32())
        return array.cast(STORAGE_TYPES[dtype])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise errors.InvalidInput(f"feature {name!r} of view {view.name!r}: values do not fit "
                                  f"{dtype.value}: {exc}", field=name) from exc


def epoch_us(array: pa.Array) -> pa.Array:
    """Timestamps (naive = UTC) as int64 microseconds since the epoch (finer parts dropped)."""
    unit = array.type.unit
    ints = array.cast(pa.timestamp(unit)).cast(pa.int64()) if array.type.tz else \
        array.cast(pa.int64())
    if unit in ("s", "ms"):
        return pc.multiply(ints, 1_000_000 if unit == "s" else 1000)
    if unit == "us":
        return ints
    # nanoseconds: floor division (Arrow's truncates toward zero, wrong before 1970)
    quotient = pc.divide(ints, 1000)
    remainder = pc.subtract(ints, pc.multiply(quotient, 1000))
    return pc.if_else(pc.less(remainder, 0), pc.subtract(quotient, 1), quotient)


def resolve_features(view: FeatureView, feature_names: Sequence[str] | None) -> list[str]:
    """The requested feature names (all of the view's when None), checked against it."""
    if feature_names is None:
        return view.features
    if isinstance(feature_names, str):
        feature_names = [feature_names]
    known = set(view.features)
    unknown = [f for f in feature_names if f not in known]
    if unknown:
        raise errors.InvalidInput(f"view {view.name!r} has no feature(s) "
                                  f"{', '.join(map(repr, unknown))}", field="features")
    return list(feature_names)


def normalize_entity_keys(entity_keys: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Each key as a tuple of plain Python values in storage form (bools, datetimes → ints)."""
    return [(k,) if type(k) is int or type(k) is str  # the common case, as it is
            else tuple(_key_value(v) for v in (k if isinstance(k, tuple | list) else (k,)))
            for k in entity_keys]


def _key_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        micros = (value - _EPOCH) // timedelta(microseconds=1)
        return int(micros)
    if isinstance(value, int | str | bytes):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise errors.InvalidInput(f"entity key value {value!r} has type {type(value).__name__}: "
                              "use integers, strings, bytes, bools or timestamps",
                              field="entity_keys")


def from_epoch_us(micros: int) -> datetime:
    """A tz-aware UTC datetime from microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=micros)


def check_arity(view: FeatureView, keys: list[tuple[Any, ...]], stored: int) -> None:
    """Every key must have one value per join key the view was written with."""
    for key in keys:
        if len(key) != stored:
            raise errors.InvalidInput(f"entity key {key!r} has {len(key)} value(s) but view "
                                      f"{view.name!r} is keyed by {stored} join key(s)",
                                      field="entity_keys")


def check_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise errors.InvalidInput(f"invalid view version {version!r}", field="version")
    return version
