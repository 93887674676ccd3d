"""Feature statistics against numpy/pandas computations, and their storage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from shipyard import errors
from shipyard.features import Feature, FeatureView, FileSource
from shipyard.features._statistics import (
    QUANTILES,
    compute_statistics,
    load_statistics,
    save_statistics,
)
from shipyard.store import Database


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'meta' / 'shipyard.db'}")


def test_numeric_statistics_match_numpy() -> None:
    rng = np.random.default_rng(7)
    values = rng.lognormal(3, 1, 50_000)
    values[rng.choice(values.size, 500, replace=False)] = np.nan
    column = pa.array(values, from_pandas=True)  # NaN -> NULL
    raw = pa.array(values)  # NaN stays NaN: counted as missing all the same
    stats = compute_statistics(pa.table({"income": column, "raw": raw}))
    finite = values[~np.isnan(values)]
    for name in ("income", "raw"):
        s = stats[name]
        assert s["kind"] == "numeric"
        assert (s["count"], s["nulls"]) == (finite.size, 500)
        assert s["min"] == finite.min() and s["max"] == finite.max()
        assert s["mean"] == pytest.approx(finite.mean(), rel=1e-12)
        assert s["std"] == pytest.approx(pd.Series(finite).std(), rel=1e-9)  # ddof=1
        expected = np.quantile(finite, list(QUANTILES.values()))
        assert list(s["quantiles"]) == ["p1", "p5", "p25", "p50", "p75", "p95", "p99"]
        assert list(s["quantiles"].values()) == pytest.approx(expected, rel=1e-12)
        pandas_q = pd.Series(finite).quantile(list(QUANTILES.values())).to_numpy()
        assert list(s["quantiles"].values()) == pytest.approx(pandas_q, rel=1e-9)
        counts, edges = np.histogram(finite, bins=20)
        assert s["histogram"]["counts"] == counts.tolist()
        assert s["histogram"]["edges"] == pytest.approx(edges.tolist())
        assert len(s["histogram"]["edges"]) == 21
        assert sum(s["histogram"]["counts"]) == s["count"]


def test_integers_stay_exact_and_infinities_are_counted_apart() -> None:
    big = 2**62 + 1
    stats = compute_statistics(pd.DataFrame({
        "n": pd.array([1, big, None, 3], dtype="Int64"),
        "x": [1.0, np.inf, -np.inf, 2.0],
    }))
    assert stats["n"]["min"] == 1 and stats["n"]["max"] == big
    assert (stats["n"]["count"], stats["n"]["nulls"]) == (3, 1)
    x = stats["x"]
    assert (x["count"], x["infinite"], x["min"], x["max"]) == (4, 2, "-inf", "inf")
    assert x["mean"] == 1.5 and sum(x["histogram"]["counts"]) == 2
    json.dumps(stats, allow_nan=False)


def test_categorical_top_values_match_pandas() -> None:
    rng = np.random.default_rng(1)
    words = [f"w{i:02d}" for i in range(30)]
    values = rng.choice(words, 10_000, p=np.arange(1, 31) / np.arange(1, 31).sum())
    series = pd.Series(values, dtype=object)
    series[::100] = None
    stats = compute_statistics(pd.DataFrame({"segment": series}))["segment"]
    counts = series.value_counts()
    assert stats["kind"] == "categorical"
    assert (stats["count"], stats["nulls"], stats["distinct"]) == (
        int(series.notna().sum()), 100, 30)
    assert len(stats["top"]) == 20
    expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    assert [(t["value"], t["count"]) for t in stats["top"]] == expected


def test_bools_timestamps_bytes_and_empty_columns() -> None:
    table = pa.table({
        "flag": pa.array([True, False, True, None]),
        "seen": pa.array([pd.Timestamp("2024-01-02", tz="UTC"), None,
                          pd.Timestamp("2023-05-06 07:08:09", tz="UTC"), None]),
        "raw": pa.array([b"a", None, b"b", b"c"]),
        "nothing": pa.array([None, None, None, None], pa.float64()),
        "no_words": pa.array([None] * 4, pa.string()),
    })
    stats = compute_statistics(table)
    assert stats["flag"]["top"] == [{"value": True, "count": 2}, {"value": False, "count": 1}]
    assert stats["seen"] == {"kind": "timestamp", "count": 2, "nulls": 2,
                             "min": "2023-05-06T07:08:09+00:00",
                             "max": "2024-01-02T00:00:00+00:00"}
    assert stats["raw"] == {"kind": "bytes", "count": 3, "nulls": 1}
    assert stats["nothing"]["count"] == 0 and stats["nothing"]["histogram"] is None
    assert stats["nothing"]["min"] is None
    assert stats["no_words"]["top"] == [] and stats["no_words"]["distinct"] == 0
    one = compute_statistics(pa.table({"x": [5.0]}))["x"]
    assert one["std"] is None and one["histogram"]["counts"][10] == 1
    json.dumps(stats, allow_nan=False)


def test_selected_features_and_unknown_ones() -> None:
    table = pa.table({"a": [1, 2], "b": ["x", "y"]})
    assert list(compute_statistics(table, ["b"])) == ["b"]
    with pytest.raises(errors.InvalidInput, match="'c'"):
        compute_statistics(table, ["a", "c"])


def test_save_and_load_keep_the_latest_per_feature(db: Database) -> None:
    view = FeatureView(name="stats_view", entities=["c"], source=FileSource(path="x"),
                       schema=[Feature(name="a", dtype="int64"),
                               Feature(name="b", dtype="string")])
    first = compute_statistics(pa.table({"a": [1, 2, 3], "b": ["x", "y", "y"]}))
    save_statistics(db, view, 1, first, "materialization")
    assert load_statistics(db, view, 1) == first
    second = compute_statistics(pa.table({"a": [10, 20]}))
    save_statistics(db, "stats_view", 1, second, "push")
    loaded = load_statistics(db, "stats_view", 1)
    assert loaded["a"] == second["a"] and loaded["b"] == first["b"]
    assert load_statistics(db, view, 1, origin="materialization") == first
    assert load_statistics(db, view, 2) == {}
    save_statistics(db, view, 1, {}, "push")  # nothing to save is fine
