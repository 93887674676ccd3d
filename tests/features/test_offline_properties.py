"""Properties of point-in-time joins against a brute-force reference on small random data.

Timestamps are whole hours in a narrow range, so equal times, ties on event time, TTL edges,
duplicate entity rows and unknown keys all come up often.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.features import DataFrameSource, Entity, Feature, FeatureView
from shipyard.features._offline import historical_features

T0 = pd.Timestamp("2024-03-01", tz="UTC")
ENTITIES = {"driver": Entity(name="driver", join_keys=["driver_id"]),
            "zone": Entity(name="zone", join_keys=["zone_id"])}
# One call costs tens of milliseconds (a fresh DuckDB each time): keep the file under ~10 s.
PROPERTY = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

# (key, event hour, created hour or None, value or None); (key, event, created) unique so the
# winner is never an arbitrary pick among equal rows.
feature_rows = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 8), st.none() | st.integers(0, 10),
              st.none() | st.integers(0, 1_000)),
    max_size=25, unique_by=lambda r: (r[0], r[1], r[2]))
entity_rows = st.lists(st.tuples(st.integers(0, 3), st.integers(-1, 10)), max_size=20)
ttls = st.none() | st.integers(0, 4).map(lambda h: timedelta(hours=h))


def brute_force(entities: list[tuple[int, int]], rows: list[tuple[Any, ...]],
                ttl: timedelta | None, exclude_created_after: bool) -> list[int | None]:
    """For each entity row: the value of the greatest (event, created) row at or before it."""
    out: list[int | None] = []
    for key, hour in entities:
        candidates = [r for r in rows if r[0] == key and r[1] <= hour and not (
            exclude_created_after and r[2] is not None and r[2] > hour)]
        if not candidates:
            out.append(None)
            continue
        best = max(candidates, key=lambda r: (r[1], -1 if r[2] is None else r[2]))
        expired = ttl is not None and timedelta(hours=hour - best[1]) > ttl
        out.append(None if expired else best[3])
    return out


def feature_frame(rows: list[tuple[Any, ...]], key: str = "driver_id") -> pd.DataFrame:
    return pd.DataFrame({
        key: pd.array([r[0] for r in rows], dtype="int64"),
        "event_timestamp": pd.to_datetime([T0 + pd.Timedelta(hours=r[1]) for r in rows],
                                          utc=True),
        "created": pd.to_datetime([None if r[2] is None else T0 + pd.Timedelta(hours=r[2])
                                   for r in rows], utc=True),
        "value": pd.array([r[3] for r in rows], dtype="Int64"),
    })


def entity_frame(entities: list[tuple[int, int]]) -> pd.DataFrame:
    return pd.DataFrame({
        "driver_id": pd.array([k for k, _ in entities], dtype="int64"),
        "event_timestamp": pd.to_datetime([T0 + pd.Timedelta(hours=h) for _, h in entities],
                                          utc=True),
        "position": range(len(entities)),
    })


def view_of(rows: list[tuple[Any, ...]], ttl: timedelta | None, *, name: str = "v",
            entity: str = "driver", key: str = "driver_id") -> FeatureView:
    source = DataFrameSource.of(f"{name}_src", feature_frame(rows, key),
                                created_timestamp_field="created")
    return FeatureView(name=name, entities=[entity], ttl=ttl, source=source,
                       schema=[Feature(name="value", dtype="int64")])


def values(table: Any, column: str) -> list[int | None]:
    return [None if v is None else int(v) for v in table.column(column).to_pylist()]


@settings(PROPERTY, max_examples=50)
@given(rows=feature_rows, entities=entity_rows, ttl=ttls, exclude=st.booleans())
def test_matches_brute_force(rows: list[tuple[Any, ...]], entities: list[tuple[int, int]],
                             ttl: timedelta | None, exclude: bool) -> None:
    out = historical_features(entity_frame(entities), [(view_of(rows, ttl), [])],
                              entities=ENTITIES, exclude_created_after=exclude, output="arrow")
    assert out.column("position").to_pylist() == list(range(len(entities)))
    assert values(out, "value") == brute_force(entities, rows, ttl, exclude)


@PROPERTY
@given(rows=feature_rows, other=feature_rows, entities=entity_rows, ttl=ttls,
       exclude=st.booleans())
def test_views_in_one_call_equal_views_alone(rows: list[tuple[Any, ...]],
                                             other: list[tuple[Any, ...]],
                                             entities: list[tuple[int, int]],
                                             ttl: timedelta | None, exclude: bool) -> None:
    frame = entity_frame(entities).assign(zone_id=[k % 2 for k, _ in entities])
    zones = view_of(other, None, name="z", entity="zone", key="zone_id")
    both = historical_features(frame, [(view_of(rows, ttl), []), (zones, [])],
                               entities=ENTITIES, exclude_created_after=exclude, output="arrow")
    zone_keys = [(k % 2, h) for k, h in entities]
    assert values(both, "v__value") == brute_force(entities, rows, ttl, exclude)
    assert values(both, "z__value") == brute_force(zone_keys, other, None, exclude)


@PROPERTY
@given(rows=feature_rows, entities=entity_rows, ttl=ttls,
       zone=st.sampled_from(["UTC", "America/Los_Angeles", "Asia/Kolkata", None]))
def test_the_entity_time_zone_does_not_change_the_result(
        rows: list[tuple[Any, ...]], entities: list[tuple[int, int]], ttl: timedelta | None,
        zone: str | None) -> None:
    frame = entity_frame(entities)
    stamps = frame["event_timestamp"]
    frame["event_timestamp"] = stamps.dt.tz_convert(zone) if zone else stamps.dt.tz_localize(None)
    out = historical_features(frame, [(view_of(rows, ttl), [])], entities=ENTITIES,
                              output="arrow")
    assert values(out, "value") == brute_force(entities, rows, ttl, False)
    assert out.column("event_timestamp").to_pylist() == list(stamps)
