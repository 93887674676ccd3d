"""Point-in-time joins of the offline store: every rule on hand-made data, then an oracle.

The oracle is pandas ``merge_asof`` (by the join keys, exact matches allowed) on feature rows
deduplicated by created timestamp, with the TTL applied afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
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
    PostgresSource,
)
from shipyard.features._offline import historical_features

T0 = pd.Timestamp("2024-01-01", tz="UTC")
ENTITIES = {
    "driver": Entity(name="driver", join_keys=["driver_id"]),
    "customer": Entity(name="customer", join_keys=["customer_id"]),
    "trip": Entity(name="trip", join_keys=["city", "trip_no"]),
}


def at(hours: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=hours)


def feature_view(frame: pd.DataFrame | pa.Table | None = None, *, name: str = "stats",
                 features: tuple[str, ...] = ("rate",), entities: tuple[str, ...] = ("driver",),
                 ttl: timedelta | None = None, created: str | None = "created",
                 source: object = None) -> FeatureView:
    if source is None:
        source = DataFrameSource.of(f"{name}_src", frame, created_timestamp_field=created)
    return FeatureView(name=name, entities=list(entities), source=source, ttl=ttl,
                       schema=[Feature(name=f, dtype="float64") for f in features])


def rows(*items: tuple) -> pd.DataFrame:
    """Feature rows (driver_id, event hour, created hour or None, rate)."""
    return pd.DataFrame({
        "driver_id": [r[0] for r in items],
        "event_timestamp": [at(r[1]) for r in items],
        "created": pd.to_datetime([at(r[2]) if r[2] is not None else None for r in items],
                                  utc=True),
        "rate": [r[3] for r in items],
    })


def entity(*items: tuple[int, float]) -> pd.DataFrame:
    return pd.DataFrame({"driver_id": [k for k, _ in items],
                         "event_timestamp": [at(h) for _, h in items]})


def rates(entity_df: pd.DataFrame, view: FeatureView, **kwargs: object) -> list[float | None]:
    out = historical_features(entity_df, [(view, [])], entities=ENTITIES, **kwargs)
    assert isinstance(out, pd.DataFrame)
    return [None if pd.isna(v) else float(v) for v in out["rate"]]


# -- matching -------------------------------------------------------------------------------------

def test_equal_timestamp_matches_and_later_rows_are_ignored() -> None:
    view = feature_view(rows((1, 10, 10, 1.0), (1, 12, 12, 2.0), (1, 14, 14, 3.0)))
    assert rates(entity((1, 12), (1, 13), (1, 11.99), (1, 20)), view) == [2.0, 2.0, 1.0, 3.0]


def test_ties_on_event_time_go_to_the_later_created_row() -> None:
    # Listed newest-created first and last, so input order cannot decide.
    view = feature_view(rows((1, 10, 12, 2.0), (1, 10, 11, 1.0), (1, 10, None, 9.0),
                             (2, 10, None, 9.0), (2, 10, 10.5, 5.0)))
    assert rates(entity((1, 10), (2, 11)), view) == [2.0, 5.0]


def test_a_later_event_beats_a_later_created_row() -> None:
    view = feature_view(rows((1, 10, 30, 1.0), (1, 11, 11, 2.0)))
    assert rates(entity((1, 12)), view) == [2.0]


def test_without_created_timestamp_the_latest_event_wins() -> None:
    view = feature_view(rows((1, 10, None, 1.0), (1, 11, None, 2.0)), created=None)
    assert rates(entity((1, 10.5), (1, 11)), view) == [1.0, 2.0]


def test_ttl_is_inclusive_and_a_microsecond_beyond_expires() -> None:
    view = feature_view(rows((1, 10, 10, 1.0)), ttl=timedelta(hours=2))
    edge = entity((1, 12), (1, 12))
    edge.loc[1, "event_timestamp"] += pd.Timedelta(microseconds=1)
    assert rates(edge, view) == [1.0, None]


def test_expired_match_is_null_even_if_an_older_row_exists() -> None:
    view = feature_view(rows((1, 1, 1, 1.0), (1, 5, 5, 2.0)), ttl=timedelta(hours=1))
    assert rates(entity((1, 5.5), (1, 7), (1, 1.5)), view) == [2.0, None, 1.0]


def test_zero_ttl_accepts_only_exact_times() -> None:
    view = feature_view(rows((1, 10, 10, 1.0)), ttl=timedelta(0))
    assert rates(entity((1, 10), (1, 10.001)), view) == [1.0, None]


def test_negative_ttl_is_refused() -> None:
    view = feature_view(rows((1, 10, 10, 1.0)), ttl=timedelta(hours=-1))
    with pytest.raises(errors.InvalidInput, match="negative ttl"):
        rates(entity((1, 10)), view)


def test_a_null_in_the_matched_row_stays_null() -> None:
    frame = rows((1, 10, 10, 1.0), (1, 11, 11, None))
    frame["speed"] = [7.0, 8.0]
    view = feature_view(frame, features=("rate", "speed"))
    out = historical_features(entity((1, 12)), [(view, [])], entities=ENTITIES)
    assert pd.isna(out["rate"][0]) and out["speed"][0] == 8.0


def test_unknown_keys_rows_before_the_first_and_null_keys_get_nulls() -> None:
    view = feature_view(rows((1, 10, 10, 1.0)))
    frame = pd.DataFrame({"driver_id": pd.array([2, 1, None, 1], dtype="Int64"),
                          "event_timestamp": [at(11), at(9), at(11), at(11)]})
    frame.loc[3, "event_timestamp"] = pd.NaT
    assert rates(frame, view) == [None, None, None, None]


def test_duplicate_entity_rows_are_each_kept_in_input_order() -> None:
    view = feature_view(rows((1, 10, 10, 1.0), (2, 5, 5, 2.0), (1, 13, 13, 3.0)))
    frame = entity((1, 14), (2, 6), (1, 11), (1, 14), (2, 6), (1, 9))
    frame["label"] = list("abcdef")
    out = historical_features(frame, [(view, [])], entities=ENTITIES)
    assert list(out.columns) == ["driver_id", "event_timestamp", "label", "rate"]
    assert list(out["label"]) == list("abcdef")
    assert list(out["rate"].fillna(-1)) == [3.0, 2.0, 1.0, 3.0, 2.0, -1]


def test_compound_join_keys_and_a_view_of_two_entities() -> None:
    trips = pd.DataFrame({"city": ["a", "a", "b"], "trip_no": [1, 2, 1],
                          "event_timestamp": [at(1), at(1), at(1)], "fare": [10.0, 20.0, 30.0]})
    trip_view = feature_view(trips, name="trips", features=("fare",), entities=("trip",),
                             created=None)
    pairs = pd.DataFrame({"driver_id": [1, 1], "customer_id": [7, 8],
                          "event_timestamp": [at(1), at(1)], "affinity": [0.5, 0.25]})
    pair_view = feature_view(pairs, name="pairs", features=("affinity",),
                             entities=("driver", "customer"), created=None)
    frame = pd.DataFrame({"city": ["b", "a", "a", "c"], "trip_no": [1, 2, 1, 1],
                          "driver_id": [1, 1, 2, 1], "customer_id": [8, 7, 7, 9],
                          "event_timestamp": [at(2)] * 4})
    out = historical_features(frame, [(trip_view, []), (pair_view, [])], entities=ENTITIES)
    assert list(out["fare"].fillna(-1)) == [30.0, 20.0, 10.0, -1]
    assert list(out["affinity"].fillna(-1)) == [0.25, 0.5, -1, -1]


def test_several_views_with_different_entities_in_one_call() -> None:
    drivers = feature_view(rows((1, 10, 10, 1.0), (2, 10, 10, 2.0)), ttl=timedelta(hours=5))
    customers = pd.DataFrame({"customer_id": [7, 7], "event_timestamp": [at(8), at(12)],
                              "spend": [70.0, 71.0]})
    customer_view = feature_view(customers, name="cust", features=("spend",),
                                 entities=("customer",), created=None)
    frame = pd.DataFrame({"driver_id": [1, 2, 1], "customer_id": [7, 7, 8],
                          "event_timestamp": [at(11), at(16), at(12)]})
    out = historical_features(frame, [(drivers, ["rate"]), (customer_view, ["spend"])],
                              entities=ENTITIES)
    assert list(out.columns) == ["driver_id", "customer_id", "event_timestamp", "rate", "spend"]
    assert list(out["rate"].fillna(-1)) == [1.0, -1, 1.0]
    assert list(out["spend"].fillna(-1)) == [70.0, 71.0, -1]


def test_shared_feature_names_get_the_view_prefix() -> None:
    frame = rows((1, 10, 10, 1.0))
    frame["speed"] = 5.0
    a = feature_view(frame, name="a", features=("rate", "speed"))
    b = feature_view(rows((1, 10, 10, 2.0)), name="b")
    out = historical_features(entity((1, 11)), [(a, []), (b, [])], entities=ENTITIES)
    assert list(out.columns) == ["driver_id", "event_timestamp", "a__rate", "speed", "b__rate"]
    assert (out["a__rate"][0], out["b__rate"][0]) == (1.0, 2.0)


def test_a_feature_named_like_an_entity_column_gets_the_prefix() -> None:
    view = feature_view(rows((1, 10, 10, 1.0)))
    frame = entity((1, 11)).assign(rate=0.5)
    out = historical_features(frame, [(view, [])], entities=ENTITIES)
    assert list(out.columns) == ["driver_id", "event_timestamp", "rate", "stats__rate"]
    assert (out["rate"][0], out["stats__rate"][0]) == (0.5, 1.0)


def test_requests_of_one_view_merge_and_an_empty_list_means_all() -> None:
    frame = rows((1, 10, 10, 1.0)).assign(speed=3.0)
    view = feature_view(frame, features=("rate", "speed"))
    out = historical_features(entity((1, 11)), [(view, ["speed"]), (view, ["speed", "rate"])],
                              entities=ENTITIES)
    assert list(out.columns) == ["driver_id", "event_timestamp", "speed", "rate"]
    everything = historical_features(entity((1, 11)), [(view, [])], entities=ENTITIES)
    assert list(everything.columns) == ["driver_id", "event_timestamp", "rate", "speed"]


# -- exclude_created_after ------------------------------------------------------------------------

def test_exclude_created_after_ignores_rows_written_later() -> None:
    # Event 10 was backfilled at 20; event 8 was known at 8; event 9 has no created time.
    view = feature_view(rows((1, 8, 8, 1.0), (1, 10, 20, 2.0), (2, 9, None, 3.0),
                             (3, 10, 10, 4.0), (3, 10, 15, 5.0)))
    frame = entity((1, 12), (1, 20), (2, 12), (3, 12), (3, 16), (1, 7))
    assert rates(frame, view) == [2.0, 2.0, 3.0, 5.0, 5.0, None]
    assert rates(frame, view, exclude_created_after=True) == [1.0, 2.0, 3.0, 4.0, 5.0, None]


def test_exclude_created_after_with_ttl() -> None:
    view = feature_view(rows((1, 8, 8, 1.0), (1, 10, 12, 2.0)), ttl=timedelta(hours=3))
    frame = entity((1, 10.5), (1, 11.5), (1, 12), (1, 13), (1, 13.5))
    assert rates(frame, view, exclude_created_after=True) == [1.0, None, 2.0, 2.0, None]
    assert rates(frame, view) == [2.0, 2.0, 2.0, 2.0, None]


def test_exclude_created_after_mixes_with_asof_views() -> None:
    stamped = feature_view(rows((1, 8, 8, 1.0), (1, 10, 20, 2.0)), name="a")
    plain = feature_view(rows((1, 10, 20, 3.0)), name="b", created=None)
    out = historical_features(entity((1, 12)), [(stamped, []), (plain, [])],
                              entities=ENTITIES, exclude_created_after=True)
    assert (out["a__rate"][0], out["b__rate"][0]) == (1.0, 3.0)


# -- time zones and precision ---------------------------------------------------------------------

def test_tz_aware_entities_are_compared_in_utc() -> None:
    naive = rows((1, 10, 10, 1.0), (1, 12, 12, 2.0))
    naive["event_timestamp"] = naive["event_timestamp"].dt.tz_localize(None)
    naive["created"] = naive["created"].dt.tz_localize(None)
    view = feature_view(naive)
    # 07:30 in New York (UTC-5) is 12:30 UTC; 06:30 is 11:30 UTC.
    frame = pd.DataFrame({"driver_id": [1, 1], "event_timestamp": pd.to_datetime(
        ["2024-01-01 07:30", "2024-01-01 06:30"]).tz_localize("America/New_York")})
    out = historical_features(frame, [(view, [])], entities=ENTITIES)
    assert list(out["rate"]) == [2.0, 1.0]
    assert str(out["event_timestamp"].dt.tz) == "UTC"
    assert out["event_timestamp"][0] == at(12.5)


def test_naive_entities_are_utc_against_tz_aware_features() -> None:
    frame = rows((1, 10, 10, 1.0))
    frame["event_timestamp"] = frame["event_timestamp"].dt.tz_convert("Asia/Tokyo")
    view = feature_view(frame)
    naive = entity((1, 10), (1, 9.5))
    naive["event_timestamp"] = naive["event_timestamp"].dt.tz_localize(None)
    out = historical_features(naive, [(view, [])], entities=ENTITIES)
    assert list(out["rate"].fillna(-1)) == [1.0, -1]
    assert list(out["event_timestamp"]) == [at(10), at(9.5)]


def test_mixed_time_units_compare_by_value() -> None:
    frame = rows((1, 10, 10, 1.0))
    frame["event_timestamp"] = frame["event_timestamp"].astype("datetime64[ms, UTC]")
    view = feature_view(frame)
    ns = entity((1, 10))
    ns["event_timestamp"] = ns["event_timestamp"].astype("datetime64[ns, UTC]")
    assert rates(ns, view) == [1.0]


# -- inputs and outputs ---------------------------------------------------------------------------

def test_arrow_in_and_arrow_out_keep_types() -> None:
    frame = pa.table({"driver_id": pa.array([1, 1], pa.int32()),
                      "event_timestamp": pa.array([at(10), at(11)], pa.timestamp("us", "UTC")),
                      "trips": pa.array([3, None], pa.int64())})
    view = FeatureView(name="counts", entities=["driver"], schema=[
        Feature(name="trips", dtype="int64")], source=DataFrameSource.of("c", frame))
    ent = pa.table({"driver_id": pa.array([1, 1, 5], pa.int64()),
                    "event_timestamp": pa.array([at(10), at(12), at(12)], pa.timestamp("ns"))})
    out = historical_features(ent, [(view, [])], entities=ENTITIES, output="arrow")
    assert isinstance(out, pa.Table)
    assert out.schema.field("event_timestamp").type == pa.timestamp("us", "UTC")
    assert out.schema.field("trips").type == pa.int64()
    assert out.column("trips").to_pylist() == [3, None, None]


def test_parquet_output_is_the_same_table(tmp_path: Path) -> None:
    view = feature_view(rows((1, 10, 10, 1.0), (2, 10, 11, 2.0)), ttl=timedelta(hours=1))
    frame = entity((2, 10.5), (1, 10), (1, 12), (3, 10))
    target = tmp_path / "out" / "training.parquet"
    path = historical_features(frame, [(view, [])], entities=ENTITIES, output_path=str(target))
    assert path == str(target)
    assert [p.name for p in target.parent.iterdir()] == ["training.parquet"]
    expected = historical_features(frame, [(view, [])], entities=ENTITIES, output="arrow")
    assert pq.read_table(target).equals(expected)


def test_file_sources_folder_glob_and_entity_parquet(tmp_path: Path) -> None:
    folder = tmp_path / "stats"
    (folder / "day=1").mkdir(parents=True)
    (folder / "day=2").mkdir()
    pq.write_table(pa.Table.from_pandas(rows((1, 10, 10, 1.0), (2, 10, 10, 5.0))),
                   folder / "day=1" / "part-0.parquet")
    pq.write_table(pa.Table.from_pandas(rows((1, 20, 20, 2.0))),
                   folder / "day=2" / "part-0.parquet")
    frame = entity((1, 15), (1, 21), (2, 30))
    for path in (str(folder), f"{folder}/*/*.parquet"):
        source = FileSource(path=path, created_timestamp_field="created")
        assert rates(frame, feature_view(source=source)) == [1.0, 2.0, 5.0]
    # The entity frame itself from Parquet files: rows in file, then row order.
    (tmp_path / "ent").mkdir()
    pq.write_table(pa.Table.from_pandas(frame.iloc[:2]), tmp_path / "ent" / "a.parquet")
    pq.write_table(pa.Table.from_pandas(frame.iloc[2:]), tmp_path / "ent" / "b.parquet")
    source = FileSource(path=str(folder / "day=1" / "part-0.parquet"))
    assert rates(str(tmp_path / "ent"), feature_view(source=source)) == [1.0, 1.0, 5.0]


def test_empty_entity_frame_gives_an_empty_result() -> None:
    view = feature_view(rows((1, 10, 10, 1.0)))
    frame = entity((1, 10)).iloc[:0]
    out = historical_features(frame, [(view, [])], entities=ENTITIES, output="arrow")
    assert out.num_rows == 0 and out.column_names == ["driver_id", "event_timestamp", "rate"]


# -- validation -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "message"), [
    (lambda e: e.drop(columns="driver_id"), "'driver_id'"),
    (lambda e: e.drop(columns="event_timestamp"), "'event_timestamp'"),
    (lambda e: e.assign(event_timestamp="2024-01-01"), "must be a timestamp"),
    (lambda e: e.assign(event_timestamp=e["event_timestamp"].dt.date), "must be a timestamp"),
    (lambda e: e.assign(driver_id="1"), "join key 'driver_id'"),
])
def test_bad_entity_frames_are_refused(change: Callable[[pd.DataFrame], pd.DataFrame],
                                       message: str) -> None:
    view = feature_view(rows((1, 10, 10, 1.0)))
    with pytest.raises(errors.InvalidInput, match=message) as info:
        historical_features(change(entity((1, 10))), [(view, [])], entities=ENTITIES)
    assert info.value.field == "entity_df"


def test_bad_requests_are_refused() -> None:
    good = rows((1, 10, 10, 1.0))
    view = feature_view(good)
    frame = entity((1, 10))
    cases = [
        ([(view, ["nope"])], "no feature 'nope'"),
        ([(feature_view(good.drop(columns="event_timestamp")), [])], "'event_timestamp'"),
        ([(feature_view(good.drop(columns="created")), [])], "'created'"),
        ([(feature_view(good.drop(columns="rate")), [])], "'rate'"),
        ([(feature_view(good.assign(event_timestamp=1)), [])], "must be a timestamp"),
        ([(feature_view(good, entities=("ghost",)), [])], "entity 'ghost'"),
        ([], "no features requested"),
        ([(view, []), (feature_view(good, ttl=timedelta(1)), [])], "two different"),
    ]
    for views, message in cases:
        with pytest.raises(errors.InvalidInput, match=message):
            historical_features(frame, views, entities=ENTITIES)
    with pytest.raises(errors.InvalidInput, match="output"):
        historical_features(frame, [(view, [])], entities=ENTITIES, output="polars")
    with pytest.raises(errors.InvalidInput, match="entity_df"):
        historical_features([1, 2], [(view, [])], entities=ENTITIES)
    with pytest.raises(errors.InvalidInput, match="reserved"):
        historical_features(frame.assign(__shipyard_x=1), [(view, [])], entities=ENTITIES)
    with pytest.raises(errors.InvalidInput, match="DuckDB settings"):
        historical_features(frame, [(view, [])], entities=ENTITIES, memory_limit="lots")
    with pytest.raises(errors.InvalidInput, match="no Parquet files"):
        historical_features(frame, [(feature_view(source=FileSource(path="nowhere")), [])],
                            entities=ENTITIES)


# -- oracle: pandas merge_asof --------------------------------------------------------------------

def _generate(seed: int, n_features: int, n_entities: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    minutes = rng.integers(0, 2_000, n_features)
    features = pd.DataFrame({
        "driver_id": rng.integers(0, 40, n_features),
        "region": rng.choice(["n", "s"], n_features),
        "event_timestamp": T0 + pd.to_timedelta(minutes, unit="min"),
        # A permutation: created timestamps never tie, so the oracle's order is total.
        "created": T0 + pd.to_timedelta(minutes + rng.permutation(n_features) * 1e-3, unit="min"),
        "rate": rng.random(n_features),
        "speed": np.where(rng.random(n_features) < 0.1, np.nan, rng.random(n_features)),
    })
    entities = pd.DataFrame({
        "driver_id": rng.integers(0, 45, n_entities),  # 40..44 are unknown
        "region": rng.choice(["n", "s"], n_entities),
        "event_timestamp": T0 + pd.to_timedelta(rng.integers(-50, 2_100, n_entities), unit="min"),
        "label": rng.integers(0, 2, n_entities),
    })
    return features, entities


def _merge_asof(entities: pd.DataFrame, features: pd.DataFrame, keys: list[str],
                names: list[str], ttl: timedelta | None) -> pd.DataFrame:
    latest = (features.sort_values(["event_timestamp", "created"])
              .drop_duplicates([*keys, "event_timestamp"], keep="last")
              .rename(columns={"event_timestamp": "feature_ts"}))
    left = entities.assign(row=np.arange(len(entities))).sort_values("event_timestamp")
    merged = pd.merge_asof(left, latest[[*keys, "feature_ts", *names]],
                           left_on="event_timestamp", right_on="feature_ts", by=keys,
                           allow_exact_matches=True, direction="backward")
    if ttl is not None:
        expired = (merged["event_timestamp"] - merged["feature_ts"]) > ttl
        merged.loc[expired, names] = np.nan
    return merged.sort_values("row").reset_index(drop=True)[names]


@pytest.mark.parametrize("ttl", [None, timedelta(minutes=90)])
def test_matches_pandas_merge_asof_on_generated_data(ttl: timedelta | None) -> None:
    features, entities = _generate(7, 4_000, 3_000)
    by_driver = feature_view(features, name="by_driver", features=("rate", "speed"), ttl=ttl)
    by_pair = feature_view(features.drop(columns="created").drop_duplicates(
        ["driver_id", "region", "event_timestamp"]), name="by_pair", features=("rate",),
        entities=("driver", "zone"), created=None, ttl=ttl)
    zones = {**ENTITIES, "zone": Entity(name="zone", join_keys=["region"])}
    out = historical_features(entities, [(by_driver, []), (by_pair, [])], entities=zones)
    assert list(out.columns[:4]) == list(entities.columns)
    pd.testing.assert_frame_equal(out[["driver_id", "region", "label"]],
                                  entities[["driver_id", "region", "label"]])
    expected = _merge_asof(entities, features, ["driver_id"], ["rate", "speed"], ttl)
    pd.testing.assert_series_equal(out["by_driver__rate"], expected["rate"], check_names=False)
    pd.testing.assert_series_equal(out["speed"], expected["speed"], check_names=False)
    pair = _merge_asof(entities, features.drop_duplicates(
        ["driver_id", "region", "event_timestamp"]), ["driver_id", "region"], ["rate"], ttl)
    pd.testing.assert_series_equal(out["by_pair__rate"], pair["rate"], check_names=False)
    assert out["speed"].notna().sum() > 1_000  # the data exercise matches, not just NULLs


# -- PostgreSQL and S3 sources --------------------------------------------------------------------

@pytest.mark.postgres
def test_postgres_source(postgres_available: None) -> None:
    import sqlalchemy as sa

    from tests.conftest import PG_ADMIN_URL

    table = f"offline_src_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG_ADMIN_URL, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE {table} (driver_id bigint, "
                                 "event_timestamp timestamptz, created timestamp, rate float8)")
            conn.exec_driver_sql(
                f"INSERT INTO {table} VALUES (1, '2024-01-01 10:00+00', '2024-01-01 10:00', 1), "
                "(1, '2024-01-01 12:00+02', '2024-01-01 11:00', 2), "  # 10:00 UTC, later created
                "(2, '2024-01-01 09:00+00', NULL, NULL)")
        source = PostgresSource(query=f"SELECT *, 'x:y' AS note FROM {table} -- 50% done",
                                url=PG_ADMIN_URL, created_timestamp_field="created")
        view = feature_view(source=source)
        assert rates(entity((1, 10), (1, 9), (2, 9), (3, 9)), view) == [2.0, None, None, None]
        bad = feature_view(source=PostgresSource(query=f"SELECT nope FROM {table}",
                                                 url=PG_ADMIN_URL))
        with pytest.raises(errors.InvalidInput, match="PostgresSource query failed"):
            rates(entity((1, 10)), bad)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        engine.dispose()


@pytest.mark.s3
def test_s3_file_source_and_output(s3_endpoint: str, s3_bucket: str) -> None:
    import s3fs

    options = {"client_kwargs": {"endpoint_url": s3_endpoint}, "skip_instance_cache": True}
    fs = s3fs.S3FileSystem(**options)
    prefix = f"{s3_bucket}/{uuid.uuid4().hex}"
    with fs.open(f"{prefix}/stats/day=1/part-0.parquet", "wb") as fh:
        pq.write_table(pa.Table.from_pandas(rows((1, 10, 10, 1.0))), fh)
    view = feature_view(source=FileSource(path=f"s3://{prefix}/stats",
                                          created_timestamp_field="created"))
    assert rates(entity((1, 11), (1, 9)), view, storage_options=options) == [1.0, None]
    target = f"s3://{prefix}/out/training.parquet"
    historical_features(entity((1, 11)), [(view, [])], entities=ENTITIES, output_path=target,
                        storage_options=options)
    with fs.open(target.removeprefix("s3://"), "rb") as fh:
        assert pq.read_table(fh).column("rate").to_pylist() == [1.0]
