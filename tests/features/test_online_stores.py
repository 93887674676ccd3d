"""The one suite every online store backend must pass (SQLite file, Redis)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from shipyard import errors
from shipyard.features import Feature, FeatureView, FileSource, ValueType
from shipyard.features._online import OnlineStore, open_online_store

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _view(name: str = "customer_stats", schema: dict[str, str] | None = None,
          entities: list[str] | None = None) -> FeatureView:
    schema = schema or {"income": "float64", "segment": "string"}
    return FeatureView(name=name, entities=entities or ["customer_id"],
                       schema=[Feature(name=n, dtype=t) for n, t in schema.items()],
                       source=FileSource(path="unused"))


@pytest.fixture
def store(online_url: str) -> Iterator[OnlineStore]:
    s = open_online_store(online_url)
    yield s
    s.close()


def _rows(keys: list[Any], ts: list[datetime], **features: list[Any]) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": keys, "event_timestamp": ts, **features})


def _values(store: OnlineStore, view: FeatureView, keys: list[Any],
            **kw: Any) -> list[dict[str, Any] | None]:
    return [None if r is None else r.values for r in store.read(view, None, keys, **kw)]


# -- round trip --------------------------------------------------------------------------------

ALL_TYPES = {
    "i32": "int32", "i64": "int64", "f32": "float32", "f64": "float64", "s": "string",
    "b": "bool", "ts": "timestamp", "raw": "bytes",
}


def test_every_value_type_round_trips_exactly(store: OnlineStore) -> None:
    assert {v.value for v in ValueType} == set(ALL_TYPES.values())
    view = _view(schema=ALL_TYPES)
    table = pa.table({
        "customer_id": pa.array([1, 2, 3], pa.int64()),
        "event_timestamp": pa.array([T0, T0 + timedelta(seconds=1), T0], pa.timestamp("us", "UTC")),
        "i32": pa.array([-(2**31), None, 7], pa.int32()),
        "i64": pa.array([2**62 + 1, None, -1], pa.int64()),
        "f32": pa.array([0.5, None, -1.25], pa.float32()),
        "f64": pa.array([0.1, None, float("inf")], pa.float64()),
        "s": pa.array(["héllo:\\ wörld", None, ""], pa.string()),
        "b": pa.array([True, None, False], pa.bool_()),
        "ts": pa.array([datetime(1969, 7, 20, 20, 17, 40, 123456, tzinfo=UTC), None,
                        datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC)], pa.timestamp("us", "UTC")),
        "raw": pa.array([b"\x00\xff:\r\n", None, b""], pa.binary()),
    })
    assert store.write(view, table, ["customer_id"]) == 3
    first, nothing, last = store.read(view, None, [1, 2, 3])
    assert first is not None and nothing is not None and last is not None
    assert first.values == {
        "i32": -(2**31), "i64": 2**62 + 1, "f32": 0.5, "f64": 0.1, "s": "héllo:\\ wörld",
        "b": True, "ts": datetime(1969, 7, 20, 20, 17, 40, 123456, tzinfo=UTC),
        "raw": b"\x00\xff:\r\n"}
    assert nothing.values == dict.fromkeys(ALL_TYPES)
    assert last.values == {"i32": 7, "i64": -1, "f32": -1.25, "f64": float("inf"), "s": "",
                           "b": False, "ts": datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
                           "raw": b""}
    assert first.event_timestamp == T0 and first.event_timestamp.tzinfo is not None
    assert nothing.event_timestamp == T0 + timedelta(seconds=1)
    for record in (first, nothing, last):
        for name, value in record.values.items():
            assert value is None or type(value) is {
                "int32": int, "int64": int, "float32": float, "float64": float, "string": str,
                "bool": bool, "timestamp": datetime, "bytes": bytes}[ALL_TYPES[name]]


def test_pandas_rows_naive_timestamps_are_utc_and_nan_is_missing(store: OnlineStore) -> None:
    view = _view(schema={"income": "float64", "seen": "timestamp", "n": "int64"})
    rows = _rows([10, 11], [datetime(2024, 1, 1), datetime(2024, 1, 2)],
                 income=[float("nan"), 2.5],
                 seen=pd.to_datetime(["2024-01-01 00:00:00.000001", None]),
                 n=[1.0, None])  # pandas makes this float64 with NaN: ints fit int64
    store.write(view, rows, ["customer_id"])
    a, b = store.read(view, None, [10, 11])
    assert a is not None and b is not None
    assert a.values == {"income": None, "seen": datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
                        "n": 1}
    assert b.values == {"income": 2.5, "seen": None, "n": None}
    assert a.event_timestamp == datetime(2024, 1, 1, tzinfo=UTC)


def test_float32_keeps_its_float32_value(store: OnlineStore) -> None:
    view = _view(schema={"ratio": "float32"})
    store.write(view, _rows([1], [T0], ratio=[0.1]), ["customer_id"])
    (record,) = store.read(view, ["ratio"], [1])
    assert record is not None and record.values["ratio"] == float(pa.scalar(0.1, pa.float32())
                                                                   .as_py())


def test_subset_and_order_of_features(store: OnlineStore) -> None:
    view = _view(schema={"a": "int64", "b": "int64", "c": "int64"})
    store.write(view, _rows([1], [T0], a=[1], b=[2], c=[3]), ["customer_id"])
    (record,) = store.read(view, ["c", "a"], [1])
    assert record is not None and list(record.values.items()) == [("c", 3), ("a", 1)]


# -- newest wins -------------------------------------------------------------------------------

def test_newer_rows_win_and_rewrites_are_idempotent(store: OnlineStore) -> None:
    view = _view()
    keys = ["customer_id"]
    store.write(view, _rows([1], [T0], income=[2.0], segment=["new"]), keys)
    store.write(view, _rows([1], [T0 - timedelta(days=1)], income=[1.0], segment=["old"]), keys)
    assert _values(store, view, [1]) == [{"income": 2.0, "segment": "new"}]
    # an equal event time replaces (the later write of the same instant wins)
    store.write(view, _rows([1], [T0], income=[3.0], segment=["same"]), keys)
    assert _values(store, view, [1]) == [{"income": 3.0, "segment": "same"}]
    for _ in range(2):
        store.write(view, _rows([1], [T0], income=[3.0], segment=["same"]), keys)
    (record,) = store.read(view, None, [1])
    assert record is not None and record.event_timestamp == T0
    assert record.values == {"income": 3.0, "segment": "same"}


def test_write_order_does_not_matter(store: OnlineStore) -> None:
    batches = [_rows([1, 2], [T0 + timedelta(hours=h)] * 2, income=[float(h), -float(h)],
                     segment=[f"s{h}", None if h % 2 else "even"]) for h in range(4)]
    forward, backward = _view("forward"), _view("backward")
    for batch in batches:
        store.write(forward, batch, ["customer_id"])
    for batch in reversed(batches):
        store.write(backward, batch, ["customer_id"])
    assert _values(store, forward, [1, 2]) == _values(store, backward, [1, 2]) == [
        {"income": 3.0, "segment": "s3"}, {"income": -3.0, "segment": None}]


def test_a_newer_null_replaces_a_value(store: OnlineStore) -> None:
    view = _view()
    store.write(view, _rows([1], [T0], income=[1.0], segment=["a"]), ["customer_id"])
    store.write(view, _rows([1], [T0 + timedelta(1)], income=[None], segment=[None]),
                ["customer_id"])
    assert _values(store, view, [1]) == [{"income": None, "segment": None}]
    store.write(view, _rows([1], [T0 + timedelta(2)], income=[4.0], segment=["b"]),
                ["customer_id"])
    assert _values(store, view, [1]) == [{"income": 4.0, "segment": "b"}]


def test_duplicate_keys_in_one_batch_keep_the_newest(store: OnlineStore) -> None:
    view = _view()
    rows = _rows([7, 7, 7], [T0, T0 + timedelta(1), T0 - timedelta(1)],
                 income=[1.0, 2.0, 3.0], segment=["a", "b", "c"])
    store.write(view, rows, ["customer_id"])
    assert _values(store, view, [7]) == [{"income": 2.0, "segment": "b"}]


# -- keys --------------------------------------------------------------------------------------

def test_compound_join_keys(store: OnlineStore) -> None:
    view = _view("pairs", {"amount": "float64"}, entities=["customer", "merchant"])
    rows = pd.DataFrame({
        "customer_id": [1, 1, 2, 3, 3],
        "merchant": ["m1", "m2", "m1", "a:b", "a"],
        "merchant_part": ["", "", "", "c", "b:c"],
        "event_timestamp": [T0] * 5,
        "amount": [1.0, 2.0, 3.0, 4.0, 5.0],
    })
    keys = ["customer_id", "merchant", "merchant_part"]
    store.write(view, rows, keys)
    got = _values(store, view, [(1, "m2", ""), (2, "m1", ""), (1, "m1", ""), (2, "m2", ""),
                                (3, "a:b", "c"), (3, "a", "b:c"), (3, "a", "b")])
    assert got == [{"amount": 2.0}, {"amount": 3.0}, {"amount": 1.0}, None,
                   {"amount": 4.0}, {"amount": 5.0}, None]
    with pytest.raises(errors.InvalidInput, match="3 join key"):
        store.read(view, None, [(1, "m1")])
    with pytest.raises(errors.InvalidInput, match="keyed by"):
        store.write(view, rows, ["customer_id", "merchant"])


def test_string_bool_and_timestamp_keys(store: OnlineStore) -> None:
    view = _view("typed_keys", {"x": "int64"}, entities=["k"])
    rows = pd.DataFrame({"k": ["a", "b:c", "ü"], "event_timestamp": [T0] * 3, "x": [1, 2, 3]})
    store.write(view, rows, ["k"])
    assert _values(store, view, ["ü", "b:c", "zz", ("a",)]) == [{"x": 3}, {"x": 2}, None,
                                                                 {"x": 1}]
    moments = pd.DataFrame({"k": pd.to_datetime(["2024-01-01", "1960-05-05"], utc=True),
                            "flag": [True, False], "event_timestamp": [T0] * 2, "x": [5, 6]})
    when = _view("when_keys", {"x": "int64"}, entities=["k", "flag"])
    store.write(when, moments, ["k", "flag"])
    assert _values(store, when, [(datetime(1960, 5, 5, tzinfo=UTC), False),
                                 (datetime(2024, 1, 1), True),
                                 (datetime(2024, 1, 1), False)]) == [{"x": 6}, {"x": 5}, None]


def test_missing_keys_unknown_views_and_many_keys_in_one_read(store: OnlineStore) -> None:
    view = _view()
    assert store.read(view, None, [1, 2]) == [None, None]  # nothing written yet
    n = 1200
    store.write(view, _rows(list(range(n)), [T0] * n, income=[float(i) for i in range(n)],
                            segment=[str(i) for i in range(n)]), ["customer_id"])
    wanted = [n + 5, *range(n - 1, -1, -2), -1, 3, 3]
    got = store.read(view, ["segment"], wanted)
    assert len(got) == len(wanted)
    for key, record in zip(wanted, got, strict=True):
        if 0 <= key < n:
            assert record is not None and record.values == {"segment": str(key)}
        else:
            assert record is None
    assert store.read(view, None, []) == []


def test_unknown_features_and_bad_keys_are_invalid_input(store: OnlineStore) -> None:
    view = _view()
    store.write(view, _rows([1], [T0], income=[1.0], segment=["a"]), ["customer_id"])
    with pytest.raises(errors.InvalidInput, match="no feature"):
        store.read(view, ["income", "nope"], [1])
    with pytest.raises(errors.InvalidInput, match="entity key"):
        store.read(view, None, [1.5])


# -- validation: nothing is written -----------------------------------------------------------

@pytest.mark.parametrize(("rows", "message"), [
    (_rows([1], [T0], income=[1.0]), "lack the column"),
    (_rows([1, None], [T0, T0], income=[1.0, 2.0], segment=["a", "b"]), "NULL"),
    (_rows([1], [None], income=[1.0], segment=["a"]), "timestamp"),
    (_rows([1], [T0], income=["rich"], segment=["a"]), "income"),
    (_rows([1], [T0], income=[1.0], segment=[3]), "segment"),
    (_rows([1.5], [T0], income=[1.0], segment=["a"]), "join key"),
])
def test_invalid_rows_are_rejected_whole(store: OnlineStore, rows: pd.DataFrame,
                                         message: str) -> None:
    view = _view()
    with pytest.raises(errors.InvalidInput, match=message):
        store.write(view, rows, ["customer_id"])
    assert store.read(view, None, [1]) == [None]


def test_rows_must_be_a_frame() -> None:
    from shipyard.features._online import prepare_rows

    with pytest.raises(errors.InvalidInput, match="DataFrame"):
        prepare_rows(_view(), [{"customer_id": 1}], ["customer_id"])
    with pytest.raises(errors.InvalidInput, match="join keys"):
        prepare_rows(_view(), _rows([1], [T0], income=[1.0], segment=["a"]), [])


# -- versions and deletion ---------------------------------------------------------------------

def test_versions_are_separate_and_delete_view(store: OnlineStore) -> None:
    view, other = _view(), _view("other")
    for version in (1, 2):
        store.write(view, _rows([1], [T0], income=[float(version)], segment=["x"]),
                    ["customer_id"], version=version)
    store.write(other, _rows([1], [T0], income=[9.0], segment=["y"]), ["customer_id"])
    assert _values(store, view, [1], version=2) == [{"income": 2.0, "segment": "x"}]
    store.delete_view(view, version=1)
    assert store.read(view, None, [1], version=1) == [None]
    assert _values(store, view, [1], version=2) == [{"income": 2.0, "segment": "x"}]
    # a deleted version can be written again, with other join keys even
    store.write(view, _rows([1], [T0], income=[5.0], segment=["z"]).assign(extra=1),
                ["customer_id", "extra"], version=1)
    assert _values(store, view, [(1, 1)], version=1) == [{"income": 5.0, "segment": "z"}]
    store.delete_view("customer_stats")
    assert store.read(view, None, [1], version=2) == [None]
    assert store.read(view, None, [(1, 1)], version=1) == [None]
    assert _values(store, other, [1]) == [{"income": 9.0, "segment": "y"}]
    store.delete_view("never_written")


def test_values_persist_across_store_instances(online_url: str) -> None:
    view = _view()
    with_first = open_online_store(online_url)
    with_first.write(view, _rows([1], [T0], income=[1.5], segment=["p"]), ["customer_id"])
    second = open_online_store(online_url)
    try:
        assert _values(second, view, [1]) == [{"income": 1.5, "segment": "p"}]
        with_first.delete_view(view)
        assert second.read(view, None, [1]) == [None]
        second.write(view, _rows([2], [T0], income=[2.5], segment=["q"]), ["customer_id"])
        assert _values(with_first, view, [1, 2]) == [None, {"income": 2.5, "segment": "q"}]
    finally:
        with_first.close()
        second.close()


def test_a_feature_added_without_a_new_version_reads_none_until_written(
        store: OnlineStore) -> None:
    old = _view(schema={"income": "float64"})
    store.write(old, _rows([1], [T0], income=[1.0]), ["customer_id"])
    new = _view(schema={"income": "float64", "age": "int64"})
    assert _values(store, new, [1]) == [{"income": 1.0, "age": None}]
    store.write(new, _rows([2], [T0], income=[2.0], age=[30]), ["customer_id"])
    assert _values(store, new, [1, 2]) == [{"income": 1.0, "age": None},
                                           {"income": 2.0, "age": 30}]


# -- opening -----------------------------------------------------------------------------------

def test_open_online_store_urls(shipyard_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shipyard.features._online_sqlite import SQLiteOnlineStore

    default = open_online_store()
    try:
        assert isinstance(default, SQLiteOnlineStore)
        assert default.url == f"sqlite:///{shipyard_home.resolve() / 'online.db'}"
        assert isinstance(default, OnlineStore)
    finally:
        default.close()
    for bad in ("mysql://x/y", "online.db", "sqlite:///:memory:", "sqlite://"):
        with pytest.raises(errors.InvalidInput):
            open_online_store(bad)
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(errors.MissingDependency, match=r"shipyard-mlops\[redis\]"):
        open_online_store("redis://127.0.0.1:6379/0")


def test_redis_url_password_is_not_shown() -> None:
    from shipyard.features._online_redis import _redacted

    assert _redacted("redis://user:secret@h:6380/1?prefix=p") == "redis://user:***@h:6380/1?prefix=p"
    assert _redacted("redis://h:6379/0") == "redis://h:6379/0"
