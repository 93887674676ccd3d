"""Shared by the feature-store benchmark workers: the test data, the meters, the checks.

Both sides' interpreters have numpy, pandas and pyarrow (Feast and Shipyard depend on
them), so this module may use them. A worker is started as
``python _features_worker_X.py BENCH --data DIR --workdir DIR --out FILE [...]`` and writes
one JSON object to ``FILE``.

The data (:func:`write_data`), the same for both sides:

* ``features-<N>.parquet``: the ``customer_stats`` source, ``N`` rows over :data:`DAYS` days
  for :data:`CUSTOMERS` customers (ids 1..100,000, drawn uniformly), columns
  ``customer_id`` (int64), ``event_timestamp`` and ``created`` (timestamp[us, UTC]) and
  ten float64 features ``f0``..``f9``. ``created`` is the event time plus up to 2 hours;
  1% of the rows repeat the key and event time of another row with other values and a
  later ``created`` (the tie the created timestamp must break). Rows are in random order,
  written in row groups of 1M rows.
* ``entities-<M>.parquet``: ``row_id`` (0..M-1), ``customer_id`` (1..110,000: about 9% are
  unknown) and ``event_timestamp`` uniform over the same 90 days plus 5 (so some rows come
  after the last feature row, and early ones before their key's first row).

The view has a TTL of :data:`TTL_DAYS` days.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

VIEW = "customer_stats"
ENTITY = "customer"
JOIN_KEY = "customer_id"
FEATURES = [f"f{i}" for i in range(10)]
CUSTOMERS = 100_000
UNKNOWN = 10_000  # entity ids CUSTOMERS+1 .. CUSTOMERS+UNKNOWN match nothing
DAYS = 90
TTL_DAYS = 30
TIED = 0.01
START = datetime(2024, 1, 1, tzinfo=UTC)
#: The materialization window: every feature row.
MAT_START, MAT_END = START, START + timedelta(days=DAYS + 1)
ROW_GROUP = 1_000_000
SAMPLE_ROWS = 1_000  # entity rows compared value by value between the two sides
ONLINE_SAMPLE_KEYS = 200  # keys whose online values are compared

_US = pa.timestamp("us", tz="UTC")
_START_US = int(START.timestamp() * 1_000_000)
_DAY_US = 86_400 * 1_000_000


# -- the data ----------------------------------------------------------------------------------

def features_path(data: Path, rows: int) -> Path:
    return data / f"features-{rows}.parquet"


def entities_path(data: Path, rows: int) -> Path:
    return data / f"entities-{rows}.parquet"


def _feature_chunk(rng: np.random.Generator, n: int) -> pa.Table:
    ids = rng.integers(1, CUSTOMERS + 1, n, dtype=np.int64)
    event = _START_US + rng.integers(0, DAYS * _DAY_US, n, dtype=np.int64)
    created = event + rng.integers(0, 2 * 3_600_000_000, n, dtype=np.int64)
    tied = int(n * TIED)
    if tied:  # the last `tied` rows repeat (key, event) of earlier rows, created later
        src = rng.integers(0, n - tied, tied)
        ids[n - tied:] = ids[src]
        event[n - tied:] = event[src]
        created[n - tied:] = created[src] + rng.integers(1_000_000, 3_600_000_000, tied)
    order = rng.permutation(n)
    columns: dict[str, Any] = {
        JOIN_KEY: pa.array(ids[order]),
        "event_timestamp": pa.array(event[order]).cast(pa.timestamp("us")).cast(_US),
        "created": pa.array(created[order]).cast(pa.timestamp("us")).cast(_US),
    }
    for name in FEATURES:
        columns[name] = pa.array(rng.standard_normal(n))
    return pa.table(columns)


def write_features(path: Path, rows: int, seed: int = 11) -> None:
    """The feature source, written in chunks of :data:`ROW_GROUP` rows (bounded memory)."""
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    writer = None
    try:
        for start in range(0, rows, ROW_GROUP):
            chunk = _feature_chunk(rng, min(ROW_GROUP, rows - start))
            if writer is None:
                writer = pq.ParquetWriter(tmp, chunk.schema)
            writer.write_table(chunk, row_group_size=ROW_GROUP)
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp, path)


def write_entities(path: Path, rows: int, seed: int = 12) -> None:
    rng = np.random.default_rng(seed)
    ts = _START_US + rng.integers(0, (DAYS + 5) * _DAY_US, rows, dtype=np.int64)
    table = pa.table({
        "row_id": pa.array(np.arange(rows, dtype=np.int64)),
        JOIN_KEY: pa.array(rng.integers(1, CUSTOMERS + UNKNOWN + 1, rows, dtype=np.int64)),
        "event_timestamp": pa.array(ts).cast(pa.timestamp("us")).cast(_US),
    })
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, row_group_size=ROW_GROUP)
    os.replace(tmp, path)


def write_data(data: Path, feature_rows: int, entity_rows: int) -> dict[str, Any]:
    """Write the two files unless they exist; their sizes and the seconds it took."""
    data.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    for path, rows, write in ((features_path(data, feature_rows), feature_rows, write_features),
                              (entities_path(data, entity_rows), entity_rows, write_entities)):
        if rows and not path.exists():
            write(path, rows)
        if rows:
            out[path.name] = path.stat().st_size
    out["seconds"] = time.perf_counter() - t0
    return out


def read_entities(data: Path, rows: int) -> Any:
    """The entity rows as pandas (what Feast's ``get_historical_features`` takes)."""
    return pq.read_table(entities_path(data, rows)).to_pandas()


# -- meters ------------------------------------------------------------------------------------

def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads) and of its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (``ru_maxrss``; KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Resident memory of this process now."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def _load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


@contextmanager
def meter(result: dict[str, Any]) -> Iterator[None]:
    """Fill ``result`` with the wall and CPU seconds of the block and the memory figures:
    RSS before it, the process's peak RSS before and after it (the peak after is the one
    that counts: it includes imports and the inputs, the same on both sides)."""
    result.update(rss_before_mb=rss_mb(), peak_rss_before_mb=peak_rss_mb(),
                  load_avg_1m_before=_load_avg())
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    yield
    result.update(wall_s=time.perf_counter() - t0, cpu_s=cpu_seconds() - cpu0,
                  peak_rss_mb=peak_rss_mb(), load_avg_1m_after=_load_avg())


def latencies(call: Callable[[list[int]], Any], batches: list[list[int]],
              warmup: int) -> dict[str, Any]:
    """Call once per batch of keys (the first ``warmup`` untimed); p50/p99 in ms."""
    for keys in batches[:warmup]:
        call(keys)
    times = []
    cpu0 = cpu_seconds()
    for keys in batches[warmup:]:
        t0 = time.perf_counter()
        call(keys)
        times.append((time.perf_counter() - t0) * 1000)
    cpu = cpu_seconds() - cpu0
    times.sort()
    return {"calls": len(times), "p50_ms": statistics.median(times),
            "p99_ms": times[min(len(times) - 1, math.ceil(0.99 * len(times)) - 1)],
            "mean_ms": statistics.fmean(times), "max_ms": times[-1],
            "cpu_ms_per_call": cpu * 1000 / len(times)}


def key_batches(calls: int, size: int, seed: int) -> list[list[int]]:
    """``calls`` lists of ``size`` known customer ids, the same on both sides."""
    rng = np.random.default_rng(seed)
    return rng.integers(1, CUSTOMERS + 1, (calls, size)).tolist()


def online_sample_keys() -> list[int]:
    """Keys whose online values both sides report: known ids and a few unknown ones."""
    rng = np.random.default_rng(99)
    known = rng.integers(1, CUSTOMERS + 1, ONLINE_SAMPLE_KEYS - 5).tolist()
    return known + [CUSTOMERS + 1 + i for i in range(5)]


# -- checks ------------------------------------------------------------------------------------

def summarize_result(table: pa.Table, entity_rows: int) -> dict[str, Any]:
    """Order-free checksums of a training set, and the rows of a fixed sample of row ids.

    Per feature: non-NULL count and sum; the sample is every ``entity_rows // 1000``-th
    row id with its ten values (None for NULL)."""
    out: dict[str, Any] = {"rows": table.num_rows, "columns": table.column_names}
    sums = {}
    for name in FEATURES:
        column = table.column(name)
        if pa.types.is_floating(column.type):  # NaN counts as NULL, as in pandas
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
        sums[name] = {"non_null": len(column) - column.null_count,
                      "sum": pc.sum(column).as_py() or 0.0}
    out["features"] = sums
    step = max(1, entity_rows // SAMPLE_ROWS)
    ids = table.column("row_id").to_numpy()
    picked = table.filter(pa.array(ids % step == 0)).sort_by("row_id")
    values = {name: picked.column(name).to_pylist() for name in FEATURES}
    out["sample"] = {str(rid): [_clean(values[name][i]) for name in FEATURES]
                     for i, rid in enumerate(picked.column("row_id").to_pylist())}
    return out


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


# -- entry point -------------------------------------------------------------------------------

Bench = Callable[[argparse.Namespace], dict[str, Any]]


def main(benches: dict[str, Bench]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bench", choices=sorted(benches))
    ap.add_argument("--data", required=True, help="folder of the Parquet data")
    ap.add_argument("--feature-rows", type=int, default=0)
    ap.add_argument("--entity-rows", type=int, default=0)
    ap.add_argument("--variant", default="", help="offline or online store kind")
    ap.add_argument("--redis", default="127.0.0.1:6379", help="host:port of Redis")
    ap.add_argument("--calls", default="2000,300", help="timed online calls: 1 key, 100 keys")
    ap.add_argument("--workdir", default=os.getcwd(), help="folder of this side's stores")
    ap.add_argument("--out", required=True, help="JSON file for the result")
    args = ap.parse_args()
    args.data = Path(args.data)
    args.workdir = Path(args.workdir)
    result = benches[args.bench](args)
    with open(args.out, "w") as fh:
        json.dump(result, fh)


def online_reads(read: Callable[[list[int]], Any], calls: str) -> dict[str, Any]:
    """p50/p99 of reading 1 key and 100 keys (10 features each), after a warm-up."""
    one, hundred = (int(x) for x in calls.split(","))
    return {"1": latencies(read, key_batches(one + 100, 1, seed=21), warmup=100),
            "100": latencies(read, key_batches(hundred + 20, 100, seed=22), warmup=20)}
