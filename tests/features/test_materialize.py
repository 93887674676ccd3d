"""Materialization, push and expectations, on every online store backend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from shipyard import errors
from shipyard.features import DataFrameSource, Feature, FeatureView, FileSource
from shipyard.features._expectations import (
    Expectation,
    ExpectationsFailed,
    check,
)
from shipyard.features._materialize import (
    latest_per_key,
    materialize,
    materialize_incremental,
    push,
    read_source_window,
)
from shipyard.features._online import OnlineStore, open_online_store
from shipyard.features._statistics import load_statistics
from shipyard.store import Database, tables

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'meta' / 'shipyard.db'}")


@pytest.fixture
def store(online_url: str) -> Iterator[OnlineStore]:
    s = open_online_store(online_url)
    yield s
    s.close()


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "offline" / "customer_stats"
    folder.mkdir(parents=True)
    return folder


def _view(path: Path | str, created: str | None = None, ttl: timedelta | None = None,
          name: str = "customer_stats") -> FeatureView:
    return FeatureView(name=name, entities=["customer_id"], ttl=ttl,
                       schema=[Feature(name="income", dtype="float64"),
                               Feature(name="segment", dtype="string")],
                       source=FileSource(path=str(path), created_timestamp_field=created))


def _frame(rows: list[tuple[Any, ...]], created: bool = False) -> pd.DataFrame:
    columns = ["customer_id", "event_timestamp", "income", "segment"]
    if created:
        columns.append("created")
    return pd.DataFrame(rows, columns=columns)


def _write_parquet(folder: Path, name: str, frame: pd.DataFrame) -> None:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / name)


def _state(store: OnlineStore, view: FeatureView, keys: list[int]) -> list[Any]:
    return [None if r is None else (r.values, r.event_timestamp)
            for r in store.read(view, None, keys)]


def _windows(db: Database) -> list[tuple[Any, ...]]:
    t = tables.feature_materializations
    with db.read() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(t.c.start_time, t.c.end_time, t.c.rows, t.c.status).order_by(t.c.id))]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


HISTORY = [
    (1, day(0), 10.0, "a"),
    (1, day(2), 12.0, "b"),
    (2, day(1), 20.0, None),
    (3, day(3), 30.0, "c"),
    (3, day(5), 35.0, "late"),  # at the window's end: excluded from [day(0), day(5))
    (4, day(-1), 40.0, "early"),  # before the window
]


# -- full windows ------------------------------------------------------------------------------

def test_full_window_keeps_the_latest_row_per_key_inside_it(
        db: Database, store: OnlineStore, source_dir: Path) -> None:
    _write_parquet(source_dir, "part-0.parquet", _frame(HISTORY))
    view = _view(source_dir)
    result = materialize(db, store, None, view, 1, None, day(0), day(5), progress=False)
    assert (result.rows_read, result.entities_written) == (4, 3)
    assert result.online_store == store.url
    assert _state(store, view, [1, 2, 3, 4]) == [
        ({"income": 12.0, "segment": "b"}, day(2)),
        ({"income": 20.0, "segment": None}, day(1)),
        ({"income": 30.0, "segment": "c"}, day(3)),
        None]
    assert _windows(db) == [(_ms(day(0)), _ms(day(5)), 4, "done")]


def test_rerunning_a_window_gives_the_same_state(
        db: Database, store: OnlineStore, source_dir: Path) -> None:
    _write_parquet(source_dir, "part-0.parquet", _frame(HISTORY))
    view = _view(source_dir)
    materialize(db, store, None, view, 1, None, None, day(10), progress=False)
    first = _state(store, view, [1, 2, 3, 4, 5])
    materialize(db, store, None, view, 1, None, None, day(10), progress=False)
    materialize(db, store, None, view, 1, None, day(0), day(3), progress=False)  # older window
    assert _state(store, view, [1, 2, 3, 4, 5]) == first
    assert first[2] == ({"income": 35.0, "segment": "late"}, day(5))


def test_created_timestamp_breaks_ties_then_the_later_row(
        db: Database, store: OnlineStore, source_dir: Path) -> None:
    rows = [
        (1, day(1), 1.0, "first-created-late", day(3)),
        (1, day(1), 2.0, "created-early", day(2)),
        (2, day(1), 3.0, "no-created", None),
        (2, day(1), 4.0, "created", day(1)),
        (3, day(1), 5.0, "tie-one", day(1)),
        (3, day(1), 6.0, "tie-two", day(1)),
    ]
    _write_parquet(source_dir, "part-0.parquet", _frame(rows, created=True))
    view = _view(source_dir, created="created")
    materialize(db, store, None, view, 1, None, None, day(9), progress=False, chunk_size=1)
    assert [r.values["segment"] if r else None for r in store.read(view, None, [1, 2, 3])] == [
        "first-created-late", "created", "tie-two"]


def test_small_chunks_and_a_progress_bar_without_a_terminal(
        db: Database, store: OnlineStore, source_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    frame = _frame([(i, day(i % 7), float(i), f"s{i % 3}") for i in range(200)])
    _write_parquet(source_dir, "part-0.parquet", frame)
    view = _view(source_dir)
    result = materialize(db, store, None, view, 1, None, None, day(30), progress=True,
                         chunk_size=7)
    assert result.entities_written == 200
    assert _state(store, view, [199])[0] == ({"income": 199.0, "segment": "s1"}, day(199 % 7))
    capsys.readouterr()  # whatever rich printed, it printed without a terminal


def test_materialize_profiles_the_window(db: Database, store: OnlineStore,
                                         source_dir: Path) -> None:
    _write_parquet(source_dir, "part-0.parquet", _frame(HISTORY))
    view = _view(source_dir)
    materialize(db, store, None, view, 3, None, day(0), day(5), progress=False)
    stats = load_statistics(db, view, 3)
    assert set(stats) == {"income", "segment"}
    assert stats["income"]["count"] == 4 and stats["income"]["max"] == 30.0
    assert stats["segment"]["nulls"] == 1
    assert load_statistics(db, view, 1) == {}


def test_invalid_windows_and_sources(db: Database, store: OnlineStore, source_dir: Path) -> None:
    view = _view(source_dir)
    with pytest.raises(errors.InvalidInput, match="empty window"):
        materialize(db, store, None, view, 1, None, day(2), day(1), progress=False)
    with pytest.raises(errors.InvalidInput, match="no Parquet files"):
        materialize(db, store, None, view, 1, None, None, day(1), progress=False)
    assert _windows(db) == [(None, _ms(day(1)), 0, "failed")]
    _write_parquet(source_dir, "part-0.parquet",
                   _frame(HISTORY).rename(columns={"income": "salary"}))
    with pytest.raises(errors.InvalidInput, match="income"):
        materialize(db, store, None, view, 1, None, None, day(9), progress=False)
    with pytest.raises(errors.InvalidInput, match="'created'"):
        materialize(db, store, None, _view(source_dir, created="created"), 1, None, None,
                    day(9), progress=False)
    assert store.read(view, None, [1]) == [None]


def test_null_keys_are_dropped_and_counted(db: Database, store: OnlineStore,
                                           source_dir: Path) -> None:
    frame = _frame([(1, day(0), 1.0, "a"), (None, day(0), 2.0, "b"), (3, None, 3.0, "c")])
    _write_parquet(source_dir, "part-0.parquet", frame)
    view = _view(source_dir)
    result = materialize(db, store, None, view, 1, None, None, day(1), progress=False)
    assert (result.rows_read, result.entities_written, result.rows_dropped) == (1, 1, 1)


def test_a_data_frame_source_and_a_custom_reader(db: Database, store: OnlineStore) -> None:
    frame = _frame(HISTORY)
    view = FeatureView(name="frame_view", entities=["customer_id"],
                       schema=[Feature(name="income", dtype="float64"),
                               Feature(name="segment", dtype="string")],
                       source=DataFrameSource.of("history", frame))
    materialize(db, store, None, view, 1, None, day(0), day(5), progress=False)
    assert _state(store, view, [3])[0] == ({"income": 30.0, "segment": "c"}, day(3))
    calls: list[tuple[Any, ...]] = []

    def reader(v: FeatureView, start: datetime | None, end: datetime) -> pa.Table:
        calls.append((v.name, start, end))
        return pa.Table.from_pandas(frame, preserve_index=False)  # too much: refiltered

    other = view.model_copy(update={"name": "frame_view_2"})
    result = materialize(db, store, "custom-name", other, 1, reader, day(0), day(5),
                         progress=False)
    assert calls == [("frame_view_2", day(0), day(5))]
    assert result.rows_read == 4 and result.online_store == "custom-name"
    empty = FeatureView(name="no_frame", entities=["customer_id"], schema=view.schema_,
                        source=DataFrameSource(name="gone"))
    with pytest.raises(errors.Conflict, match="no frame"):
        read_source_window(empty, None, day(1))


def test_read_source_window_folder_with_mixed_timestamp_types(source_dir: Path) -> None:
    _write_parquet(source_dir, "a.parquet", _frame([(1, day(0), 1.0, "a")]))
    naive = _frame([(2, day(1).replace(tzinfo=None), 2.0, "b"),
                    (3, day(2).replace(tzinfo=None), 3.0, "c")])
    (source_dir / "sub").mkdir()
    _write_parquet(source_dir / "sub", "b.parquet", naive)
    table = read_source_window(_view(source_dir), day(0.5), day(2))
    assert table.column("customer_id").to_pylist() == [2]
    single = read_source_window(_view(source_dir / "a.parquet"), None, day(1))
    assert single.num_rows == 1


# -- incremental -------------------------------------------------------------------------------

def test_incremental_resumes_from_the_last_done_window(
        db: Database, store: OnlineStore, source_dir: Path) -> None:
    _write_parquet(source_dir, "part-0.parquet", _frame(HISTORY[:4]))
    view = _view(source_dir)
    first = materialize_incremental(db, store, None, view, 1, None, day(4), progress=False)
    assert (first.start, first.rows_read) == (None, 4)
    _write_parquet(source_dir, "part-1.parquet", _frame([(3, day(5), 35.0, "late"),
                                                         (5, day(6), 50.0, "new"),
                                                         (1, day(3.5), 0.0, "backfill")]))
    second = materialize_incremental(db, store, None, view, 1, None, day(7), progress=False)
    assert (second.start, second.end, second.rows_read) == (day(4), day(7), 2)
    assert _state(store, view, [1, 3, 5]) == [
        ({"income": 12.0, "segment": "b"}, day(2)),  # the backfilled row was before day(4)
        ({"income": 35.0, "segment": "late"}, day(5)),
        ({"income": 50.0, "segment": "new"}, day(6))]
    again = materialize_incremental(db, store, None, view, 1, None, day(7), progress=False)
    assert again.rows_read == 0 and len(_windows(db)) == 2
    # another version, or another store, starts from scratch
    assert materialize_incremental(db, store, None, view, 2, None, day(7),
                                   progress=False).start is None


def test_incremental_starts_at_the_ttl_the_first_time(
        db: Database, store: OnlineStore, source_dir: Path) -> None:
    _write_parquet(source_dir, "part-0.parquet", _frame(HISTORY))
    view = _view(source_dir, ttl=timedelta(days=3))
    result = materialize_incremental(db, store, None, view, 1, None, day(4), progress=False)
    assert result.start == day(1)
    assert _state(store, view, [1, 2, 3]) == [
        ({"income": 12.0, "segment": "b"}, day(2)),
        ({"income": 20.0, "segment": None}, day(1)),
        ({"income": 30.0, "segment": "c"}, day(3))]


def test_a_crashed_window_is_covered_again(
        db: Database, store: OnlineStore, source_dir: Path) -> None:
    _write_parquet(source_dir, "part-0.parquet", _frame(HISTORY))
    view = _view(source_dir)
    materialize(db, store, None, view, 1, None, None, day(2), progress=False)
    with db.write() as conn:  # a run that died after writing some of [day(2), day(6))
        conn.execute(tables.feature_materializations.insert().values(
            view_name=view.name, view_version=1, online_store=store.url,
            start_time=_ms(day(2)), end_time=_ms(day(6)), rows=0, status="running",
            created_time=0))
    store.write(view, _frame([(3, day(3), 30.0, "c")]), ["customer_id"])
    result = materialize_incremental(db, store, None, view, 1, None, day(6), progress=False)
    assert (result.start, result.rows_read) == (day(2), 3)
    assert _state(store, view, [1, 3]) == [({"income": 12.0, "segment": "b"}, day(2)),
                                           ({"income": 35.0, "segment": "late"}, day(5))]
    assert [w[3] for w in _windows(db)] == ["done", "running", "done"]


# -- push --------------------------------------------------------------------------------------

def test_push_writes_online_and_older_rows_do_not_win(
        db: Database, store: OnlineStore, source_dir: Path) -> None:
    _write_parquet(source_dir, "part-0.parquet", _frame(HISTORY))
    view = _view(source_dir)
    materialize(db, store, None, view, 1, None, None, day(10), progress=False)
    fresh = _frame([(1, day(8), 99.0, "pushed"), (1, day(9), 100.0, "newest"),
                    (3, day(1), -1.0, "stale")])
    assert push(store, view, fresh) == 3
    assert _state(store, view, [1, 3]) == [({"income": 100.0, "segment": "newest"}, day(9)),
                                           ({"income": 35.0, "segment": "late"}, day(5))]
    assert push(store, view, fresh.iloc[:0]) == 0


def test_push_to_offline_appends_a_parquet_file(
        db: Database, store: OnlineStore, source_dir: Path) -> None:
    _write_parquet(source_dir, "part-0.parquet", _frame(HISTORY))
    view = _view(source_dir)
    fresh = _frame([(7, day(20), 70.0, "seven")]).assign(ignored="x")
    push(store, view, fresh, to_offline=True)
    files = sorted(p.name for p in source_dir.glob("*.parquet"))
    assert len(files) == 2 and files[1].startswith("push-")
    assert not list(source_dir.glob(".*"))  # no temp file left behind
    window = read_source_window(view, day(19), day(21))
    assert window.column("customer_id").to_pylist() == [7]
    assert "ignored" not in window.column_names
    with pytest.raises(errors.InvalidInput, match="folder"):
        push(store, _view(source_dir / "part-0.parquet"), fresh, to_offline=True)


# -- expectations ------------------------------------------------------------------------------

EXPECT = [Expectation(feature="income", not_null=True, min=0, max=100),
          Expectation(feature="segment", allowed_values=["a", "b", "c"])]


def test_check_lists_each_failing_row() -> None:
    frame = _frame([(1, day(0), 5.0, "a"), (2, day(0), -1.0, "z"), (3, day(0), None, None),
                    (4, day(0), float("nan"), "b"), (5, day(0), 101.0, "c")])
    report = check(frame, EXPECT, ["customer_id"])
    assert not report.ok and report.rows == 5 and report.failed_rows == 4
    assert report.counts == {"income:not_null": 2, "income:min": 1, "income:max": 1,
                             "segment:allowed_values": 1}
    got = {(f.feature, f.rule, tuple(f.entity_key), f.row) for f in report.failures}
    assert got == {("income", "not_null", (3,), 2), ("income", "not_null", (4,), 3),
                   ("income", "min", (2,), 1), ("income", "max", (5,), 4),
                   ("segment", "allowed_values", (2,), 1)}
    assert {f.value for f in report.failures if f.rule == "max"} == {101.0}
    assert "4 of 5 row(s)" in report.summary()
    assert check(frame.iloc[:1], EXPECT).ok
    with pytest.raises(errors.InvalidInput, match="lacks"):
        check(frame, [Expectation(feature="nope", not_null=True)])
    with pytest.raises(ValueError, match="greater than max"):
        Expectation(feature="x", min=2, max=1)


def test_check_timestamps_and_strings() -> None:
    frame = _frame([(1, day(0), 1.0, "a"), (2, day(3), 1.0, "b")])
    report = check(frame, [Expectation(feature="event_timestamp", max=day(1))], ["customer_id"])
    assert report.counts == {"event_timestamp:max": 1}
    assert report.failures[0].entity_key == [2]
    with pytest.raises(errors.InvalidInput, match="does not fit"):
        check(frame, [Expectation(feature="segment", min=3)])


def test_expectations_reject_a_materialization_with_nothing_written(
        db: Database, store: OnlineStore, source_dir: Path) -> None:
    rows = [(i, day(0), float(i), "a") for i in range(50)] + [(77, day(1), -5.0, "a")]
    _write_parquet(source_dir, "part-0.parquet", _frame(rows))
    view = _view(source_dir)
    with pytest.raises(ExpectationsFailed) as caught:
        materialize(db, store, None, view, 1, None, None, day(2), progress=False,
                    expectations=EXPECT, chunk_size=10)
    assert isinstance(caught.value, errors.InvalidInput)
    assert "income:min (1 row(s))" in caught.value.message
    (failure,) = caught.value.report.failures
    assert (failure.entity_key, failure.value) == ([77], -5.0)
    assert store.read(view, None, [0, 77]) == [None, None]
    assert _windows(db) == [(None, _ms(day(2)), 0, "failed")]
    assert load_statistics(db, view, 1) == {}


def test_expectations_reject_a_push_with_nothing_written(
        store: OnlineStore, source_dir: Path) -> None:
    view = _view(source_dir)
    bad = _frame([(1, day(0), 1.0, "a"), (2, day(0), 1.0, "nope")])
    with pytest.raises(ExpectationsFailed, match="segment:allowed_values"):
        push(store, view, bad, expectations=EXPECT, to_offline=True)
    assert store.read(view, None, [1, 2]) == [None, None]
    assert not list(source_dir.iterdir())
    with pytest.raises(errors.InvalidInput, match="NULL"):
        push(store, view, _frame([(None, day(0), 1.0, "a")]))


# -- latest_per_key ----------------------------------------------------------------------------

def test_latest_per_key_with_compound_keys() -> None:
    table = pa.table({
        "a": [1, 1, 1, 2, 2], "b": ["x", "y", "x", "x", "x"],
        "ts": pa.array([day(1), day(1), day(2), day(0), day(0)], pa.timestamp("us", "UTC")),
        "v": [1, 2, 3, 4, 5]})
    latest = latest_per_key(table, ["a", "b"], "ts")
    assert sorted(zip(latest.column("a").to_pylist(), latest.column("b").to_pylist(),
                      latest.column("v").to_pylist(), strict=True)) == [
        (1, "x", 3), (1, "y", 2), (2, "x", 5)]
