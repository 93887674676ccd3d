"""What only the Redis online store has: its key layout, packed rows, and merged rows.

The shared behaviour (round trips, newest wins, keys, versions) is in test_online_stores.py.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from shipyard import errors
from shipyard.features import Feature, FeatureView, FileSource, _online_redis
from shipyard.features._online_redis import RedisOnlineStore

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
_US = pa.timestamp("us", "UTC")
WIDE = {"n": "int64", "x": "float64", "s": "string", "b": "bool", "t": "timestamp",
        "raw": "bytes"}


def _view(schema: dict[str, str], name: str = "stats") -> FeatureView:
    return FeatureView(name=name, entities=["customer_id"],
                       schema=[Feature(name=n, dtype=t) for n, t in schema.items()],
                       source=FileSource(path="unused"))


def _rows(view: FeatureView, keys: list[Any], times: list[datetime],
          **values: list[Any]) -> pa.Table:
    types = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(),
             "bool": pa.bool_(), "timestamp": _US, "bytes": pa.binary()}
    columns: dict[str, pa.Array] = {"customer_id": pa.array(keys, pa.int64()),
                                    "event_timestamp": pa.array(times, _US)}
    for feature in view.schema_:
        columns[feature.name] = pa.array(values[feature.name], types[feature.dtype.value])
    return pa.table(columns)


@pytest.fixture
def url(redis_online_url: str) -> str:
    return redis_online_url


@pytest.fixture
def store(url: str) -> Iterator[RedisOnlineStore]:
    s = RedisOnlineStore(url)
    yield s
    s.close()


@pytest.fixture
def client(url: str) -> Iterator[Any]:
    import redis

    c = redis.Redis.from_url(url.split("?")[0])
    yield c
    c.close()


def _prefix(url: str) -> str:
    return url.split("prefix=")[1]


def _values(store: RedisOnlineStore, view: FeatureView, keys: list[Any]) -> list[Any]:
    return [None if r is None else r.values for r in store.read(view, None, keys)]


# -- layout --------------------------------------------------------------------------------------

def test_each_entity_is_one_string_under_the_layout_marker(
        store: RedisOnlineStore, client: Any, url: str) -> None:
    view = _view({"x": "float64", "n": "int64"})
    store.write(view, _rows(view, [7, 8], [T0, T0], x=[1.5, None], n=[3, 4]), ["customer_id"])
    prefix = _prefix(url)
    keys = sorted(client.scan_iter(match=f"{prefix}:*"))
    assert keys == [f"{prefix}:stats:1~2".encode(), f"{prefix}:stats:1~2:7".encode(),
                    f"{prefix}:stats:1~2:8".encode()]
    assert client.type(f"{prefix}:stats:1~2:7") == b"string"
    row = client.get(f"{prefix}:stats:1~2:8")
    micros = (T0 - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert struct.unpack_from("<q", row)[0] == micros
    tag = row[8:12]
    assert row[12:14] == b"\x01\x00"  # x is NULL, n is not
    assert struct.unpack_from("<dq", row, 14) == (0.0, 4)
    assert len(row) == 12 + 2 + 16
    meta = client.hgetall(f"{prefix}:stats:1~2")
    assert json.loads(meta[b"keys"]) == ["customer_id"]
    assert json.loads(meta[b"s:" + tag]) == [["x", "float64"], ["n", "int64"]]


def test_keys_of_the_earlier_layout_are_never_read_and_are_deleted(
        store: RedisOnlineStore, client: Any, url: str) -> None:
    prefix = _prefix(url)
    view = _view({"x": "float64"})
    # what the one-hash-per-key layout left behind: join keys as a string, a hash per key
    client.set(f"{prefix}:stats:1", json.dumps(["customer_id"]))
    client.hset(f"{prefix}:stats:1:5", mapping={"$ts": struct.pack("<q", 0),
                                                 "x": struct.pack("<d", 9.0)})
    client.set(f"{prefix}:stats:10", json.dumps(["customer_id"]))  # another version
    # not read as missing values: the caller is told to re-materialize
    for keys in ([5], [5, 6]):
        with pytest.raises(errors.Conflict, match="earlier Shipyard") as info:
            store.read(view, None, keys)
        assert "materialize" in info.value.message
    assert _values(store, _view({"x": "float64"}, name="other"), [5]) == [None]
    store.write(view, _rows(view, [6], [T0], x=[1.0]), ["customer_id"])
    assert _values(store, view, [5, 6]) == [None, {"x": 1.0}]
    assert client.type(f"{prefix}:stats:1:5") == b"hash"  # left alone until deleted
    store.delete_view(view, version=1)
    assert sorted(client.scan_iter(match=f"{prefix}:*")) == [f"{prefix}:stats:10".encode()]
    store.delete_view("stats")
    assert list(client.scan_iter(match=f"{prefix}:*")) == []


def test_event_times_compare_exactly_beyond_double_precision(store: RedisOnlineStore) -> None:
    view = _view({"x": "float64"})
    late = datetime(2290, 1, 1, tzinfo=UTC)  # ~1e16 µs: past 2**53, a double's integers
    store.write(view, _rows(view, [1], [late + timedelta(microseconds=1)], x=[2.0]),
                ["customer_id"])
    store.write(view, _rows(view, [1], [late], x=[1.0]), ["customer_id"])
    (record,) = store.read(view, None, [1])
    assert record is not None and record.values == {"x": 2.0}
    assert record.event_timestamp == late + timedelta(microseconds=1)
    store.write(view, _rows(view, [1], [datetime(1900, 1, 1, tzinfo=UTC)], x=[0.0]),
                ["customer_id"])
    assert _values(store, view, [1]) == [{"x": 2.0}]


# -- rows of several layouts ---------------------------------------------------------------------

WIDE_VALUES: dict[str, list[Any]] = {
    "n": [-(2**63)], "x": [0.25], "s": ["ünï:\\"], "b": [True],
    "t": [datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)], "raw": [b"\x00\r\n"]}
WIDE_PY = {name: values[0] for name, values in WIDE_VALUES.items()}


def test_a_writer_lacking_features_keeps_their_stored_values(store: RedisOnlineStore) -> None:
    wide, narrow = _view(WIDE), _view({"s": "string", "x": "float64"})
    store.write(wide, _rows(wide, [1, 2], [T0, T0], **{k: v * 2 for k, v in
                                                       WIDE_VALUES.items()}), ["customer_id"])
    # newer rows of the narrow view: replace x and s (a NULL too), keep the rest
    store.write(narrow, _rows(narrow, [1, 3], [T0 + timedelta(1)] * 2, s=[None, "new"],
                              x=[7.5, 8.5]), ["customer_id"])
    one, two, three = store.read(wide, None, [1, 2, 3])
    assert one is not None and two is not None and three is not None
    assert one.values == {**WIDE_PY, "s": None, "x": 7.5}
    assert one.event_timestamp == T0 + timedelta(1)
    assert two.values == WIDE_PY and two.event_timestamp == T0
    assert three.values == {**dict.fromkeys(WIDE), "s": "new", "x": 8.5}
    assert _values(store, narrow, [1, 3]) == [{"s": None, "x": 7.5}, {"s": "new", "x": 8.5}]
    # an older narrow row changes nothing; a merged row merges again, then a wide one replaces
    store.write(narrow, _rows(narrow, [1], [T0], s=["old"], x=[0.0]), ["customer_id"])
    assert _values(store, wide, [1]) == [{**WIDE_PY, "s": None, "x": 7.5}]
    store.write(narrow, _rows(narrow, [1], [T0 + timedelta(2)], s=["again"], x=[None]),
                ["customer_id"])
    assert _values(store, wide, [1]) == [{**WIDE_PY, "s": "again", "x": None}]
    store.write(wide, _rows(wide, [1], [T0 + timedelta(3)], **{k: [None] for k in WIDE}),
                ["customer_id"])
    assert _values(store, wide, [1]) == [dict.fromkeys(WIDE)]


def test_merges_of_one_key_repeated_in_a_batch(store: RedisOnlineStore) -> None:
    wide, narrow = _view(WIDE), _view({"n": "int64"})
    store.write(wide, _rows(wide, [4], [T0], **WIDE_VALUES), ["customer_id"])
    times = [T0 + timedelta(hours=h) for h in (1, 3, 2)]
    store.write(narrow, _rows(narrow, [4, 4, 4], times, n=[1, 3, 2]), ["customer_id"])
    (record,) = store.read(wide, None, [4])
    assert record is not None and record.values == {**WIDE_PY, "n": 3}
    assert record.event_timestamp == T0 + timedelta(hours=3)


def test_a_feature_whose_type_changed_reads_none_until_rewritten(
        store: RedisOnlineStore) -> None:
    before, after = _view({"x": "float64", "n": "int64"}), _view({"x": "float64", "n": "string"})
    store.write(before, _rows(before, [1], [T0], x=[1.0], n=[5]), ["customer_id"])
    assert _values(store, after, [1]) == [{"x": 1.0, "n": None}]
    store.write(after, _rows(after, [1], [T0], x=[2.0], n=["five"]), ["customer_id"])
    assert _values(store, after, [1]) == [{"x": 2.0, "n": "five"}]
    assert _values(store, before, [1]) == [{"x": 2.0, "n": None}]


def test_rows_over_a_layout_recorded_meanwhile_are_written_again(
        store: RedisOnlineStore, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    wide, narrow = _view(WIDE), _view({"x": "float64"})
    other = RedisOnlineStore(url)  # another process, with the wide definition
    try:
        other.write(wide, _rows(wide, [1], [T0], **WIDE_VALUES), ["customer_id"])
    finally:
        other.close()
    record_meta = store._record_meta
    calls: list[int] = []

    def stale_first(*args: Any) -> Any:  # as if read before the wide layout was recorded
        calls.append(1)
        stored = record_meta(*args)
        return [] if len(calls) == 1 else stored

    monkeypatch.setattr(store, "_record_meta", stale_first)
    store.write(narrow, _rows(narrow, [1, 2], [T0 + timedelta(1)] * 2, x=[3.0, 4.0]),
                ["customer_id"])
    assert len(calls) == 2
    assert _values(store, wide, [1, 2]) == [{**WIDE_PY, "x": 3.0},
                                            {**dict.fromkeys(WIDE), "x": 4.0}]


def test_a_row_of_a_layout_nobody_recorded_is_replaced(
        store: RedisOnlineStore, client: Any, url: str) -> None:
    view = _view({"x": "float64", "n": "int64"})
    store.write(view, _rows(view, [1], [T0], x=[1.0], n=[1]), ["customer_id"])
    meta = f"{_prefix(url)}:stats:1~2"
    for field in client.hkeys(meta):
        if field.startswith(b"s:"):
            client.hdel(meta, field)
    narrow = _view({"x": "float64"})
    store.write(narrow, _rows(narrow, [1], [T0 + timedelta(1)], x=[2.0]), ["customer_id"])
    assert _values(store, view, [1]) == [{"x": 2.0, "n": None}]


def test_a_layout_is_learnt_from_redis_by_a_fresh_process(
        store: RedisOnlineStore, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    view = _view(WIDE)
    store.write(view, _rows(view, [1], [T0], **WIDE_VALUES), ["customer_id"])
    monkeypatch.setattr(_online_redis, "_PARSED", {})
    fresh = RedisOnlineStore(url)
    try:
        assert _values(fresh, view, [1, 2]) == [WIDE_PY, None]
    finally:
        fresh.close()


# -- batches -------------------------------------------------------------------------------------

def test_batches_beyond_one_script_call(store: RedisOnlineStore) -> None:
    view = _view({"x": "float64", "s": "string"})
    n = 2 * _online_redis._KEYS_PER_CALL + 100
    keys = [i % (n - 50) for i in range(n)]  # the last 50 repeat keys of the first call
    times = [T0 + timedelta(seconds=i) for i in range(n)]
    assert store.write(view, _rows(view, keys, times, x=[float(i) for i in range(n)],
                                   s=[None if i % 7 == 0 else str(i) for i in range(n)]),
                       ["customer_id"]) == n
    wanted = [-1, *range(n - 50), n]
    got = store.read(view, None, wanted)
    assert got[0] is None and got[-1] is None
    for key, record in zip(wanted[1:-1], got[1:-1], strict=True):
        i = key + n - 50 if key < 50 else key  # the newer of the key's rows
        assert record is not None
        assert record.values == {"x": float(i), "s": None if i % 7 == 0 else str(i)}
        assert record.event_timestamp == T0 + timedelta(seconds=i)


def test_many_fixed_width_rows_with_missing_keys_and_nulls(store: RedisOnlineStore) -> None:
    view = _view({"x": "float64", "n": "int64", "b": "bool"})
    store.write(view, _rows(view, list(range(100)), [T0] * 100, x=[i / 2 for i in range(100)],
                            n=list(range(100)), b=[i % 2 == 0 for i in range(100)]),
                ["customer_id"])
    keys = [3, 1000, 4, 5, 1001]
    assert _values(store, view, keys) == [{"x": 1.5, "n": 3, "b": False}, None,
                                          {"x": 2.0, "n": 4, "b": True},
                                          {"x": 2.5, "n": 5, "b": False}, None]
    as_numpy = store.read(view, ["n"], np.array(keys))
    from_iterator = store.read(view, ["n"], iter(keys))
    assert [r and r.values for r in as_numpy] == [r and r.values for r in from_iterator] == [
        {"n": 3}, None, {"n": 4}, {"n": 5}, None]
    records = store.read(view, ["b", "x"], keys)
    assert [None if r is None else list(r.values.items()) for r in records] == [
        [("b", False), ("x", 1.5)], None, [("b", True), ("x", 2.0)],
        [("b", False), ("x", 2.5)], None]
    store.write(view, _rows(view, [4], [T0 + timedelta(1)], x=[None], n=[None], b=[None]),
                ["customer_id"])
    assert _values(store, view, [3, 4]) == [{"x": 1.5, "n": 3, "b": False},
                                            {"x": None, "n": None, "b": None}]
    assert [r.values if r else None for r in store.read(view, ["n"], [5])] == [{"n": 5}]


def test_mget_and_the_read_script_give_the_same_records(store: RedisOnlineStore) -> None:
    """Many keys are read with MGET when hiredis parses replies, else with the read script:
    both reach the same decoder and give the same records (missing keys, NULLs, strings)."""
    view = _view({"x": "float64", "s": "string", "n": "int64"})
    store.write(view, _rows(view, list(range(60)), [T0] * 60, x=[i / 4 for i in range(60)],
                            s=[None if i % 5 == 0 else f"v{i}" for i in range(60)],
                            n=[i if i % 3 else None for i in range(60)]), ["customer_id"])
    keys = [7, 999, *range(0, 60, 2), 1000]

    def records(with_mget: bool) -> list[Any]:
        store.read_with_mget = with_mget
        return [None if r is None else (r.values, r.event_timestamp)
                for r in store.read(view, None, keys)]

    by_mget, by_script = records(True), records(False)
    assert by_mget == by_script
    assert by_mget[1] is None and by_mget[-1] is None
    assert by_mget[0] == ({"x": 1.75, "s": "v7", "n": 7}, T0)
    assert by_mget[2] == ({"x": 0.0, "s": None, "n": None}, T0)


def test_a_bad_url_is_invalid_input() -> None:
    with pytest.raises(errors.InvalidInput, match="Redis URL"):
        RedisOnlineStore("redis://127.0.0.1:notaport/0")
    with pytest.raises(errors.InvalidInput, match="prefix may not be empty") as info:
        RedisOnlineStore("redis://127.0.0.1:6379/0?prefix=")
    assert info.value.field == "prefix"
