"""Views over local Parquet join on row locators and fetch values afterwards
(``_offline_gather``); the result must equal the one of the same rows held in memory, which
carry their values through the join."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard import errors
from shipyard.features import (
    DataFrameSource,
    Entity,
    Feature,
    FeatureView,
    FileSource,
    _offline_gather,
)
from shipyard.features._offline import historical_features
from shipyard.features._offline_gather import parquet_locator

ENTITIES = {"driver": Entity(name="driver", join_keys=["driver_id"])}
T0 = pd.Timestamp("2024-01-01", tz="UTC")


def feature_rows(n: int, seed: int) -> pa.Table:
    """Keys 1..30, hours 0..99: many ties on key and event time, all broken by ``created``
    (a tie on both may pick either row); a float, an int and a string feature with NULLs.
    Every 17th row has no created timestamp and an event time of its own."""
    rng = np.random.default_rng(seed)
    hours = rng.integers(0, 100, n).astype(float)
    hours[::17] = 100 + np.arange(len(hours[::17])) / 7
    nulls = rng.random(n) < 0.1
    return pa.table({
        "driver_id": pa.array(rng.integers(1, 31, n)),
        "event_timestamp": pa.array([T0 + pd.Timedelta(hours=h) for h in hours]),
        "created": pa.array([None if i % 17 == 0 else T0 + pd.Timedelta(hours=h, seconds=i)
                             for i, h in enumerate(hours)], pa.timestamp("us", tz="UTC")),
        "rate": pa.array(rng.standard_normal(n), mask=nulls),
        "trips": pa.array(rng.integers(0, 1000, n), mask=rng.random(n) < 0.1),
        "city": pa.array([f"c{x}" for x in rng.integers(0, 5, n)], mask=rng.random(n) < 0.1),
    })


def entity_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    minutes = rng.integers(-60, 120 * 60, n)
    minutes[::2] -= minutes[::2] % 60  # on the hour: exact matches (a TTL of 0 keeps them)
    return pd.DataFrame({
        "driver_id": rng.integers(0, 33, n),  # 0, 31, 32: unknown
        "event_timestamp": [T0 + pd.Timedelta(minutes=int(m)) for m in minutes],
    })


def view(source: object, ttl: timedelta | None, name: str = "stats") -> FeatureView:
    return FeatureView(name=name, entities=["driver"], source=source, ttl=ttl,
                       schema=[Feature(name="rate", dtype="float64"),
                               Feature(name="trips", dtype="int64"),
                               Feature(name="city", dtype="string")])


def write_files(table: pa.Table, folder: Path, parts: int, row_group: int) -> None:
    folder.mkdir(parents=True)
    step = -(-table.num_rows // parts)
    for i in range(parts):
        pq.write_table(table.slice(i * step, step), folder / f"part-{i}.parquet",
                       row_group_size=row_group)


@pytest.mark.parametrize(("parts", "row_group", "batch", "ttl"), [
    (1, 1000, 16, timedelta(hours=12)), (3, 37, 1000, None), (4, 50, 7, timedelta(0))])
def test_parquet_source_equals_the_same_rows_in_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parts: int, row_group: int,
        batch: int, ttl: timedelta | None) -> None:
    monkeypatch.setattr(_offline_gather, "_BATCH", batch)  # several batches per row group
    table = feature_rows(600, seed=parts)
    write_files(table, tmp_path / "stats", parts, row_group)
    assert parquet_locator(sorted(str(p) for p in (tmp_path / "stats").iterdir()),
                           ["driver_id", "rate"]) is not None
    frame = entity_frame(400, seed=parts)
    from_files = view(FileSource(path=str(tmp_path / "stats"),
                                 created_timestamp_field="created"), ttl)
    in_memory = view(DataFrameSource.of("stats_src", table, created_timestamp_field="created"),
                     ttl)
    for output in ("arrow", "pandas"):
        got = historical_features(frame, [(from_files, [])], entities=ENTITIES, output=output)
        want = historical_features(frame, [(in_memory, [])], entities=ENTITIES, output=output)
        if output == "arrow":
            assert got.schema == want.schema
            assert got.equals(want)
        else:
            pd.testing.assert_frame_equal(got, want)
    got = historical_features(frame, [(from_files, [])], entities=ENTITIES, output="arrow")
    assert got.column("rate").null_count > 0 and got.column("rate").null_count < len(frame)


def test_two_parquet_views_in_request_order_with_clashing_names(tmp_path: Path) -> None:
    first, second = feature_rows(300, seed=7), feature_rows(300, seed=8)
    write_files(first, tmp_path / "a", 1, 64)
    write_files(second, tmp_path / "b", 2, 64)
    frame = entity_frame(200, seed=9)
    files = [(view(FileSource(path=str(tmp_path / d), created_timestamp_field="created"),
                   timedelta(hours=30), name=n), ["city", "rate"]) for d, n in (("a", "x"),
                                                                               ("b", "y"))]
    memory = [(view(DataFrameSource.of(f"{n}_src", t, created_timestamp_field="created"),
                    timedelta(hours=30), name=n), ["city", "rate"])
              for t, n in ((first, "x"), (second, "y"))]
    got = historical_features(frame, files, entities=ENTITIES, output="arrow")
    assert got.column_names == ["driver_id", "event_timestamp", "x__city", "x__rate",
                                "y__city", "y__rate"]
    assert got.equals(historical_features(frame, memory, entities=ENTITIES, output="arrow"))


def test_features_missing_from_a_file_or_in_its_path_use_the_plain_join(tmp_path: Path) -> None:
    table = feature_rows(200, seed=3)
    (tmp_path / "mixed").mkdir()
    pq.write_table(table.slice(0, 100), tmp_path / "mixed" / "a.parquet")
    pq.write_table(table.slice(100).drop_columns(["city"]), tmp_path / "mixed" / "b.parquet")
    files = sorted(str(p) for p in (tmp_path / "mixed").iterdir())
    assert parquet_locator(files, ["rate", "city"]) is None
    assert parquet_locator(files, ["rate"]) is not None
    frame = entity_frame(150, seed=4)
    got = historical_features(frame, [(view(FileSource(path=str(tmp_path / "mixed"),
                                                       created_timestamp_field="created"),
                                            None), [])], entities=ENTITIES, output="arrow")
    expected = table.set_column(5, "city", pa.concat_arrays([
        table.column("city").combine_chunks().slice(0, 100), pa.nulls(100, pa.string())]))
    want = historical_features(frame, [(view(DataFrameSource.of(
        "m", expected, created_timestamp_field="created"), None), [])], entities=ENTITIES,
        output="arrow")
    assert got.equals(want)
    # a feature that is a hive partition value of the path, not a column of the file
    part = tmp_path / "hive" / "trips=5"
    part.mkdir(parents=True)
    pq.write_table(table.drop_columns(["trips"]), part / "p.parquet")
    assert parquet_locator([str(part / "p.parquet")], ["trips"]) is None
    got = historical_features(frame, [(view(FileSource(path=str(tmp_path / "hive"),
                                                       created_timestamp_field="created"),
                                            None), ["trips"])], entities=ENTITIES,
                              output="arrow")
    assert set(got.column("trips").drop_null().to_pylist()) == {5}


def test_a_file_rewritten_between_join_and_fetch_is_refused(tmp_path: Path) -> None:
    table = feature_rows(100, seed=5)
    write_files(table, tmp_path / "stats", 1, 50)
    path = str(tmp_path / "stats" / "part-0.parquet")
    locator = parquet_locator([path], ["rate"])
    assert locator is not None
    locs = pa.chunked_array([pa.array([3, None, 70])])
    kind = [pa.float64()]
    assert locator.gather(locs, ["rate"], kind)[0].to_pylist() == [
        table.column("rate")[3].as_py(), None, table.column("rate")[70].as_py()]
    pq.write_table(table.slice(1), path)  # other rows at the same positions
    with pytest.raises(errors.Conflict, match="changed while"):
        locator.gather(locs, ["rate"], kind)
