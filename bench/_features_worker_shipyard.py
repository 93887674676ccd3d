"""Shipyard's side of ``bench/features.py`` (run by this repository's interpreter).

    python _features_worker_shipyard.py BENCH --data DIR --workdir DIR --out FILE [...]

``data`` writes the test data (see ``_features_worker_common``); ``historical`` builds a
training set with ``historical_features(..., output="arrow")``; ``materialize`` copies the
feature rows into an online store (``--variant sqlite|redis``) and then times online reads;
``apply_setup`` copies ``tests/features/example_repo`` into the workdir with its data.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import _features_worker_common as common

REPO = Path(__file__).resolve().parent.parent


def _definitions(data: Path, feature_rows: int) -> tuple[Any, Any]:
    from shipyard.features import Entity, Feature, FeatureView, FileSource, ValueType

    customer = Entity(name=common.ENTITY, join_keys=[common.JOIN_KEY],
                      value_type=ValueType.INT64)
    view = FeatureView(
        name=common.VIEW, entities=[common.ENTITY],
        schema=[Feature(name=f, dtype=ValueType.FLOAT64) for f in common.FEATURES],
        source=FileSource(path=str(common.features_path(data, feature_rows)),
                          timestamp_field="event_timestamp", created_timestamp_field="created"),
        ttl=timedelta(days=common.TTL_DAYS))
    return customer, view


def bench_data(args: argparse.Namespace) -> dict[str, Any]:
    return common.write_data(args.data, args.feature_rows, args.entity_rows)


def bench_historical(args: argparse.Namespace) -> dict[str, Any]:
    from shipyard.features._offline import historical_features

    customer, view = _definitions(args.data, args.feature_rows)
    entity_df = common.read_entities(args.data, args.entity_rows)
    result: dict[str, Any] = {"entity_rows": len(entity_df)}
    with common.meter(result):
        table = historical_features(entity_df, [(view, common.FEATURES)],
                                    entities={common.ENTITY: customer}, output="arrow")
    result["check"] = common.summarize_result(table, args.entity_rows)
    return result


def _redis_cleanup(host: str, port: int, prefix: str) -> int:
    import redis

    client = redis.Redis(host=host, port=port)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=5000))
        for start in range(0, len(keys), 5000):
            client.unlink(*keys[start:start + 5000])
        return len(keys)
    finally:
        client.close()


def bench_materialize(args: argparse.Namespace) -> dict[str, Any]:
    from shipyard.features._materialize import materialize, read_source_window
    from shipyard.features._online import open_online_store
    from shipyard.store import Database

    _, view = _definitions(args.data, args.feature_rows)
    db = Database(f"sqlite:///{args.workdir / 'meta.db'}")  # migrated here, untimed
    host, port = args.redis.rsplit(":", 1)
    prefix = f"shipyard-bench-{uuid.uuid4().hex[:12]}"
    if args.variant == "redis":
        url = f"redis://{host}:{port}/0?prefix={prefix}"
    else:
        url = f"sqlite:///{args.workdir / 'online.db'}"
    result: dict[str, Any] = {"store": args.variant}
    store = open_online_store(url)
    try:
        with common.meter(result):
            done = materialize(db, store, None, view, 1, read_source_window, common.MAT_START,
                               common.MAT_END, progress=False, join_keys=[common.JOIN_KEY])
        result.update(rows_read=done.rows_read, entities_written=done.entities_written)

        def read(keys: list[int]) -> Any:
            return store.read(view, common.FEATURES, keys)

        result["online"] = common.online_reads(read, args.calls)
        records = read(common.online_sample_keys())
        result["sample"] = {str(k): None if r is None else
                            [common._clean(r.values[f]) for f in common.FEATURES]
                            for k, r in zip(common.online_sample_keys(), records, strict=True)}
    finally:
        store.close()
        if args.variant == "redis":
            result["redis_keys_removed"] = _redis_cleanup(host, int(port), prefix)
    return result


def bench_apply_setup(args: argparse.Namespace) -> dict[str, Any]:
    """Copy the example repository to ``workdir/repo`` and write its Parquet data."""
    source = REPO / "tests" / "features" / "example_repo"
    target = args.workdir / "repo"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "data"))
    sys.path.insert(0, str(target))
    from _data import write_example_data  # the copy's, so the data lands next to it

    write_example_data(target)
    return {"repo": str(target), "files": sorted(p.name for p in target.glob("*.py"))}


if __name__ == "__main__":
    common.main({"data": bench_data, "historical": bench_historical,
                 "materialize": bench_materialize, "apply_setup": bench_apply_setup})
