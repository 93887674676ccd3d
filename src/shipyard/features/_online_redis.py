"""The production online store: Redis, one hash per entity key.

Layout: ``{prefix}:{view}:{version}:{key}`` is a hash with one field per feature and
``$ts`` (the event time), and ``{prefix}:{view}:{version}`` holds the view's join keys as
JSON. A compound key joins its parts with ``:`` (``\\`` and ``:`` inside a part are escaped).

Values are stored compactly by the feature's type, so that they round-trip exactly: integers
and timestamps (µs since the epoch) as 8-byte little-endian ints, floats as 8-byte doubles,
bools as one byte, strings as UTF-8, bytes as they are; NULL is an absent field.

Writes run a small Lua script over batches of entities: a row replaces the stored hash only
when its event time is ``>=`` the stored one, atomically per key. The commands are encoded
with Arrow and numpy, not argument by argument in Python (that alone would cost tens of
seconds per million rows), and pipelined on one connection. A single key is read with one
``HMGET``; many keys with one script call that packs each key's values into one reply
string (redis-py's pure-Python parser would otherwise spend most of the time on the
thousand small replies of a pipeline).

Every key of a script call is in the same database; on Redis Cluster the keys of a call
would need one hash slot, which this layout does not give (not supported yet).
"""

from __future__ import annotations

import json
import struct
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shipyard import errors
from shipyard.features._definitions import FeatureView, ValueType
from shipyard.features._online import (
    OnlineRecord,
    PreparedRows,
    check_arity,
    check_version,
    from_epoch_us,
    normalize_entity_keys,
    prepare_rows,
    resolve_features,
)

__all__ = ["RedisOnlineStore"]

_TS_FIELD = b"$ts"
_ARGS_PER_CALL = 20_000  # arguments of one EVAL: bounds the time Redis spends in one script
_IN_FLIGHT = 4  # EVAL calls sent ahead of their replies
_INT = struct.Struct("<q")
_FLOAT = struct.Struct("<d")
_FIXED_WIDTH = {ValueType.INT32: 8, ValueType.INT64: 8, ValueType.FLOAT32: 8,
                ValueType.FLOAT64: 8, ValueType.TIMESTAMP: 8, ValueType.BOOL: 1}
_DECODERS: dict[ValueType, Callable[[bytes], Any]] = {
    ValueType.INT32: lambda b: _INT.unpack(b)[0],
    ValueType.INT64: lambda b: _INT.unpack(b)[0],
    ValueType.FLOAT32: lambda b: _FLOAT.unpack(b)[0],
    ValueType.FLOAT64: lambda b: _FLOAT.unpack(b)[0],
    ValueType.TIMESTAMP: lambda b: from_epoch_us(_INT.unpack(b)[0]),
    ValueType.BOOL: lambda b: b == b"\x01",
    ValueType.STRING: lambda b: b.decode("utf-8"),
    ValueType.BYTES: lambda b: b,
}

# ARGV: mode ('f': every value present and unprefixed; 'g': values prefixed by one byte,
# empty = NULL), the number of features, then per key: '$ts', ts, name, value, ...
_WRITE_SCRIPT = b"""
local generic = ARGV[1] == 'g'
local width = 2 * tonumber(ARGV[2]) + 2
local written = 0
for i = 1, #KEYS do
  local o = 2 + (i - 1) * width
  local ts = ARGV[o + 2]
  local old = redis.call('HGET', KEYS[i], '$ts')
  if (not old) or struct.unpack('<i8', old) <= struct.unpack('<i8', ts) then
    if generic then
      local set, del = {'$ts', ts}, {}
      for a = o + 3, o + width, 2 do
        local v = ARGV[a + 1]
        if v == '' then
          del[#del + 1] = ARGV[a]
        else
          set[#set + 1] = ARGV[a]
          set[#set + 1] = string.sub(v, 2)
        end
      end
      redis.call('HSET', KEYS[i], unpack(set))
      if old and #del > 0 then redis.call('HDEL', KEYS[i], unpack(del)) end
    else
      redis.call('HSET', KEYS[i], unpack(ARGV, o + 1, o + width))
    end
    written = written + 1
  end
end
return written
"""


# KEYS: entity hashes, ARGV: fields. One string per key: each value as a little-endian
# int32 length and its bytes (-1: absent), so many keys cost one reply, not one per value.
_READ_SCRIPT = b"""
local out = {}
for i = 1, #KEYS do
  local values = redis.call('HMGET', KEYS[i], unpack(ARGV))
  local parts = {}
  for j = 1, #ARGV do
    local v = values[j]
    parts[j] = v and (struct.pack('<i4', #v) .. v) or '\\255\\255\\255\\255'
  end
  out[i] = table.concat(parts)
end
return out
"""
_READ_BATCH = 1000
_LENGTH = struct.Struct("<i")


def _arg(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class RedisOnlineStore:
    """An online store on Redis (``redis://host:port/db?prefix=name``)."""

    def __init__(self, url: str) -> None:
        try:
            import redis
        except ModuleNotFoundError as exc:
            raise errors.MissingDependency("the Redis online store needs the redis package: "
                                           "pip install 'shipyard-mlops[redis]'") from exc
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        self.prefix = (query.pop("prefix", None) or ["shipyard"])[-1]
        if not self.prefix:
            raise errors.InvalidInput("the Redis key prefix may not be empty", field="prefix")
        rest = urllib.parse.urlencode(query, doseq=True)
        try:
            self._client = redis.Redis.from_url(parts._replace(query=rest).geturl())
        except ValueError as exc:
            raise errors.InvalidInput(f"invalid Redis URL: {exc}", field="online_store") from exc
        self.url = _redacted(url)
        self._redis_errors = (redis.RedisError,)
        self._read_script = self._client.register_script(_READ_SCRIPT)
        self._join_keys: dict[tuple[str, int], list[str]] = {}

    def __enter__(self) -> RedisOnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _base(self, view: str, version: int) -> bytes:
        return f"{self.prefix}:{view}:{version}".encode()

    # -- writes ----------------------------------------------------------------------------

    def write(self, view: FeatureView, rows: pa.Table | pd.DataFrame, join_keys: Sequence[str],
              timestamp_field: str | None = None, *, version: int = 1) -> int:
        check_version(version)
        prepared = prepare_rows(view, rows, join_keys, timestamp_field)
        if not len(prepared):
            return 0
        with self._translate():
            self._ensure_meta(view.name, version, list(join_keys))
            keys = _blocks([_arg_fragments(_redis_keys(self._base(view.name, version),
                                                      prepared.keys))])
            dtypes = {f.name: f.dtype for f in view.schema_}
            generic, rows_data = _row_blocks(prepared, dtypes)
            self._send(keys, rows_data, generic, len(prepared.features), len(prepared))
        return len(prepared)

    def _ensure_meta(self, view: str, version: int, join_keys: list[str]) -> None:
        """Record the view's join keys (on every write: another process may have deleted
        the view meanwhile), refusing other join keys than those recorded."""
        meta = self._base(view, version)
        text = json.dumps(join_keys)
        if not self._client.set(meta, text, nx=True) and \
                self._join_keys.get((view, version)) != join_keys:
            stored = json.loads(self._client.get(meta) or text)
            if stored != join_keys:
                raise errors.InvalidInput(f"view {view!r} version {version} is keyed by "
                                          f"{stored}, not {join_keys}", field="join_keys")
        self._join_keys[(view, version)] = join_keys

    def _send(self, keys: tuple[memoryview, np.ndarray], rows: tuple[memoryview, np.ndarray],
              generic: bool, n_features: int, n: int) -> None:
        per_key = 2 * n_features + 2
        batch = max(1, _ARGS_PER_CALL // per_key)
        header = _arg(b"EVAL") + _arg(_WRITE_SCRIPT)
        mode = _arg(b"g" if generic else b"f") + _arg(b"%d" % n_features)
        (key_data, key_offsets), (row_data, row_offsets) = keys, rows
        pool = self._client.connection_pool
        conn = pool.get_connection()
        try:
            pending = 0
            for i in range(0, n, batch):
                j = min(n, i + batch)
                count = j - i
                head = b"*%d\r\n" % (3 + count + 2 + count * per_key) + header + \
                    _arg(b"%d" % count)
                conn.send_packed_command([
                    head, key_data[key_offsets[i]:key_offsets[j]], mode,
                    row_data[row_offsets[i]:row_offsets[j]]])
                pending += 1
                while pending > _IN_FLIGHT:
                    conn.read_response()
                    pending -= 1
            while pending:
                conn.read_response()
                pending -= 1
        except BaseException:
            conn.disconnect()  # replies may be left unread on the socket
            raise
        finally:
            pool.release(conn)

    # -- reads -----------------------------------------------------------------------------

    def read(self, view: FeatureView, feature_names: Sequence[str] | None,
             entity_keys: Sequence[Any], *, version: int = 1) -> list[OnlineRecord | None]:
        features = resolve_features(view, feature_names)
        keys = normalize_entity_keys(entity_keys)
        if not keys:
            return []
        with self._translate():
            join_keys = self._join_keys.get((view.name, version))
            if join_keys is None:
                stored = self._client.get(self._base(view.name, version))
                if stored is None:
                    return [None] * len(keys)
                join_keys = self._join_keys[(view.name, version)] = json.loads(stored)
            check_arity(view, keys, len(join_keys))
            base = self._base(view.name, version) + b":"
            fields = [_TS_FIELD, *(f.encode() for f in features)]
            if len(keys) == 1:
                replies: list[Any] = [self._client.hmget(base + _redis_key(keys[0]), fields)]
            else:
                replies = []
                for start in range(0, len(keys), _READ_BATCH):
                    blobs = self._read_script(
                        keys=[base + _redis_key(k) for k in keys[start:start + _READ_BATCH]],
                        args=fields)
                    replies.extend(_split(blob, len(fields)) for blob in blobs)
        dtypes = {f.name: f.dtype for f in view.schema_}
        decoders = [(f, _DECODERS[dtypes[f]]) for f in features]
        return [None if reply[0] is None else OnlineRecord(
            {name: None if v is None else decode(v)
             for (name, decode), v in zip(decoders, reply[1:], strict=True)},
            from_epoch_us(_INT.unpack(reply[0])[0])) for reply in replies]

    # -- housekeeping ----------------------------------------------------------------------

    def delete_view(self, view: FeatureView | str, *, version: int | None = None) -> None:
        name = view if isinstance(view, str) else view.name
        pattern = _glob_escape(f"{self.prefix}:{name}:") + \
            ("*" if version is None else f"{version}:*")
        with self._translate():
            batch: list[bytes] = []
            for key in self._client.scan_iter(match=pattern, count=5000):
                batch.append(key)
                if len(batch) >= 5000:
                    self._client.unlink(*batch)
                    batch.clear()
            if version is not None:
                batch.append(self._base(name, version))
            if batch:
                self._client.unlink(*batch)
        for cached in [k for k in self._join_keys if k[0] == name]:
            del self._join_keys[cached]

    def close(self) -> None:
        self._client.close()
        self._client.connection_pool.disconnect()

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except self._redis_errors as exc:
            raise errors.ShipyardError(f"online store {self.url}: {exc}") from exc


# -- encoding ------------------------------------------------------------------------------------


def _split(blob: bytes, count: int) -> list[bytes | None]:
    """The values packed by the read script (length-prefixed, -1 = absent)."""
    values: list[bytes | None] = []
    pos = 0
    for _ in range(count):
        (size,) = _LENGTH.unpack_from(blob, pos)
        pos += 4
        if size < 0:
            values.append(None)
        else:
            values.append(blob[pos:pos + size])
            pos += size
    return values


def _redacted(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _key_part(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else str(value)).encode("utf-8")


def _redis_key(key: tuple[Any, ...]) -> bytes:
    """The key suffix of one entity key, as :func:`_redis_keys` writes it."""
    if len(key) == 1:
        return _key_part(key[0])
    return b":".join(_key_part(v).replace(b"\\", b"\\\\").replace(b":", b"\\:") for v in key)


def _redis_keys(base: bytes, keys: list[pa.Array]) -> pa.Array:
    """The full Redis key of every row (``base:key``), vectorized."""
    parts = [k.cast(pa.string()).cast(pa.binary()) if pa.types.is_integer(k.type)
             else k.cast(pa.binary()) for k in keys]
    if len(parts) > 1:
        parts = [pc.replace_substring(pc.replace_substring(p, b"\\", b"\\\\"), b":", b"\\:")
                 for p in parts]
    joined = parts[0] if len(parts) == 1 else \
        pc.binary_join_element_wise(*parts, pa.scalar(b":"))
    return pc.binary_join_element_wise(pa.scalar(base + b":"), joined, pa.scalar(b""))


def _arg_fragments(values: pa.Array) -> pa.Array:
    """Each value as one RESP bulk string (``$len\\r\\nvalue\\r\\n``); NULL stays NULL."""
    lengths = pc.binary_length(values).cast(pa.string()).cast(pa.binary())
    return pc.binary_join_element_wise(pa.scalar(b"$"), lengths, pa.scalar(b"\r\n"), values,
                                       pa.scalar(b"\r\n"), pa.scalar(b""))


def _blocks(fragments: list[Any]) -> tuple[memoryview, np.ndarray]:
    """The bytes of each row's fragments joined, and the offset of every row in them."""
    joined = fragments[0] if len(fragments) == 1 else \
        pc.binary_join_element_wise(*fragments, pa.scalar(b""))
    joined = pa.concat_arrays([joined.cast(pa.large_binary())])  # int64 offsets, offset 0
    _, offsets, data = joined.buffers()
    starts = np.frombuffer(offsets, dtype=np.int64, count=len(joined) + 1)
    return memoryview(data) if data is not None else memoryview(b""), starts


def _fixed_bytes(array: pa.Array, dtype: ValueType) -> np.ndarray:
    """Fixed-width values as an (n, width) uint8 matrix (NULL slots hold zeros)."""
    if array.null_count:
        array = array.fill_null(False if dtype is ValueType.BOOL else 0)
    if dtype is ValueType.TIMESTAMP:
        array = array.cast(pa.int64())
    values = array.to_numpy(zero_copy_only=False)
    if dtype is ValueType.BOOL:
        return values.astype(np.uint8).reshape(-1, 1)
    little = values.astype("<f8" if dtype in (ValueType.FLOAT32, ValueType.FLOAT64) else "<i8")
    return np.ascontiguousarray(little).view(np.uint8).reshape(-1, 8)


def _row_blocks(prepared: PreparedRows,
                dtypes: dict[str, ValueType]) -> tuple[bool, tuple[memoryview, np.ndarray]]:
    """The per-key arguments of the write script (``$ts ts name value ...``) of every row.

    When every value is fixed-width and present, rows are equally wide and built as one
    numpy matrix; otherwise each value gets a one-byte prefix (empty = NULL) and rows are
    joined with Arrow.
    """
    n = len(prepared)
    ts = _int64_bytes(prepared.event_us)
    fast = all(dtypes[f] in _FIXED_WIDTH and not a.null_count
               for f, a in prepared.features.items())
    if fast:
        pieces: list[np.ndarray] = [_const(_arg(_TS_FIELD), n), _framed(ts)]
        for name, array in prepared.features.items():
            pieces.append(_const(_arg(name.encode()), n))
            pieces.append(_framed(_fixed_bytes(array, dtypes[name])))
        matrix = np.hstack(pieces)
        width = matrix.shape[1]
        return False, (memoryview(matrix.reshape(-1).data),
                       np.arange(n + 1, dtype=np.int64) * width)
    fragments: list[Any] = [pa.scalar(_arg(_TS_FIELD)), _arg_fragments(_binary_of(ts))]
    for name, array in prepared.features.items():
        dtype = dtypes[name]
        if dtype in _FIXED_WIDTH:
            raw = pc.if_else(array.is_valid(), _binary_of(_fixed_bytes(array, dtype)),
                             pa.scalar(None, pa.binary()))
        else:
            raw = array.cast(pa.binary())
        prefixed = pc.binary_join_element_wise(pa.scalar(b"\x01"), raw, pa.scalar(b""))
        fragments.append(pa.scalar(_arg(name.encode())))
        fragments.append(_arg_fragments(prefixed).fill_null(_arg(b"")))
    return True, _blocks(fragments)


def _int64_bytes(array: pa.Array) -> np.ndarray:
    return np.ascontiguousarray(
        array.to_numpy(zero_copy_only=False).astype("<i8")).view(np.uint8).reshape(-1, 8)


def _const(fragment: bytes, n: int) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(fragment, dtype=np.uint8), (n, len(fragment)))


def _framed(values: np.ndarray) -> np.ndarray:
    """Fixed-width values (n, w) as RESP bulk strings: ``$w\\r\\n`` + value + ``\\r\\n``."""
    n, width = values.shape
    head = np.frombuffer(b"$%d\r\n" % width, dtype=np.uint8)
    out = np.empty((n, len(head) + width + 2), dtype=np.uint8)
    out[:, :len(head)] = head
    out[:, len(head):len(head) + width] = values
    out[:, len(head) + width:] = np.frombuffer(b"\r\n", dtype=np.uint8)
    return out


def _binary_of(matrix: np.ndarray) -> pa.Array:
    """An (n, w) uint8 matrix as a binary array of n values of w bytes."""
    n, width = matrix.shape
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), n, [None, pa.py_buffer(np.ascontiguousarray(matrix))])
    return fixed.cast(pa.binary())
