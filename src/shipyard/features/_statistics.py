"""Feature statistics: a profile per feature, the reference monitoring compares against.

:func:`compute_statistics` profiles every column of an Arrow table or pandas frame:

* every column: ``kind``, ``count`` (non-null values) and ``nulls`` (NULL, and NaN for
  floats, as pandas counts them);
* numeric (ints, floats): ``min``/``max`` (over every value, ±inf included), and over the
  finite values ``mean``, ``std`` (sample, ``ddof=1``), ``quantiles`` (``p1`` … ``p99``,
  linear interpolation like ``numpy.quantile``) and ``histogram`` (20 equal-width bins:
  21 ``edges`` and 20 ``counts``; counts add up to ``count`` minus ``infinite``);
* strings and bools: ``distinct`` and ``top`` (the 20 most frequent values with their
  counts, ties by value);
* timestamps: ``min``/``max`` as ISO 8601 strings; bytes: ``count`` and ``nulls`` only.

:func:`save_statistics` and :func:`load_statistics` keep them in ``feature_statistics``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from shipyard import errors
from shipyard.features._definitions import FeatureView
from shipyard.store import Database, now_ms, tables

__all__ = ["QUANTILES", "compute_statistics", "save_statistics", "load_statistics"]

#: The quantiles every numeric profile reports, by name.
QUANTILES: dict[str, float] = {"p1": 0.01, "p5": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75,
                               "p95": 0.95, "p99": 0.99}
HISTOGRAM_BINS = 20
TOP_VALUES = 20


def compute_statistics(data: pa.Table | pd.DataFrame,
                       features: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The profile of each column (or of ``features``), as JSON-ready dicts."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data,
                                                                         preserve_index=False)
    names = features if features is not None else table.column_names
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise errors.InvalidInput(f"no column(s) {', '.join(map(repr, missing))} to profile",
                                  field="features")
    return {name: _profile(table.column(name)) for name in names}


def _profile(column: pa.ChunkedArray) -> dict[str, Any]:
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return _numeric(column)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_boolean(kind):
        return _categorical(column)
    nulls = column.null_count
    stats: dict[str, Any] = {"kind": "other", "count": len(column) - nulls, "nulls": nulls}
    if pa.types.is_timestamp(kind):
        stats["kind"] = "timestamp"
        bounds = pc.min_max(column)
        for bound in ("min", "max"):
            value = bounds[bound].as_py()
            stats[bound] = None if value is None else pd.Timestamp(value).isoformat()
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        stats["kind"] = "bytes"
    return stats


def _numeric(column: pa.ChunkedArray) -> dict[str, Any]:
    is_float = pa.types.is_floating(column.type)
    values = column.cast(pa.float64(), safe=False).fill_null(math.nan).to_numpy()
    present = values[~np.isnan(values)] if is_float or column.null_count else values
    finite = present[np.isfinite(present)] if is_float else present
    stats: dict[str, Any] = {"kind": "numeric", "count": int(present.size),
                             "nulls": int(values.size - present.size)}
    if is_float:
        stats["infinite"] = int(present.size - finite.size)
        bounds = (float(present.min()), float(present.max())) if present.size else (None, None)
    else:  # from Arrow, so that ints beyond 2**53 stay exact
        minmax = pc.min_max(column)
        bounds = (minmax["min"].as_py(), minmax["max"].as_py())
    stats["min"], stats["max"] = bounds
    if finite.size:
        stats["mean"] = float(finite.mean())
        stats["std"] = float(finite.std(ddof=1)) if finite.size > 1 else None
        stats["quantiles"] = dict(zip(QUANTILES, (float(q) for q in np.quantile(
            finite, list(QUANTILES.values()))), strict=True))
        counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS)
        stats["histogram"] = {"edges": edges.tolist(), "counts": counts.tolist()}
    else:
        stats.update(mean=None, std=None, quantiles=None, histogram=None)
    safe: dict[str, Any] = _json_safe(stats)
    return safe


def _json_safe(value: Any) -> Any:
    """NaN as None and ±inf as strings: JSON has neither (overflowing sums can make them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _categorical(column: pa.ChunkedArray) -> dict[str, Any]:
    nulls = column.null_count
    counts = pc.value_counts(column.drop_null()) if len(column) > nulls else None
    stats: dict[str, Any] = {"kind": "categorical", "count": len(column) - nulls,
                             "nulls": nulls, "distinct": 0, "top": []}
    if counts is not None and len(counts):
        frame = pd.DataFrame({"value": counts.field("values").to_pylist(),
                              "count": counts.field("counts").to_numpy()})
        frame = frame.sort_values(["count", "value"], ascending=[False, True], kind="stable")
        stats["distinct"] = len(frame)
        stats["top"] = [{"value": v, "count": int(c)} for v, c in
                        zip(frame["value"][:TOP_VALUES], frame["count"][:TOP_VALUES],
                            strict=True)]
    return stats


# -- persistence ------------------------------------------------------------------------------


def _view_name(view: FeatureView | str) -> str:
    return view if isinstance(view, str) else view.name


def save_statistics(db: Database, view: FeatureView | str, version: int,
                    stats: dict[str, dict[str, Any]], origin: str) -> None:
    """Store the profiles of a view version (``origin``: ``materialization``, ``push`` …)."""
    now = now_ms()
    rows = [{"view_name": _view_name(view), "view_version": version, "feature": feature,
             "origin": origin, "stats_json": json.dumps(profile, allow_nan=False),
             "computed_time": now} for feature, profile in stats.items()]
    if rows:
        with db.write() as conn:
            conn.execute(tables.feature_statistics.insert(), rows)


def load_statistics(db: Database, view: FeatureView | str, version: int,
                    origin: str | None = None) -> dict[str, dict[str, Any]]:
    """The latest profile of each feature of a view version (of one ``origin`` if given)."""
    t = tables.feature_statistics
    query = sa.select(t.c.feature, t.c.stats_json).where(
        t.c.view_name == _view_name(view), t.c.view_version == version).order_by(t.c.id)
    if origin is not None:
        query = query.where(t.c.origin == origin)
    with db.read() as conn:
        rows = conn.execute(query).all()
    return {feature: json.loads(text) for feature, text in rows}  # later rows win
