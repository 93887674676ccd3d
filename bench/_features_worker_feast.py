"""Feast's side of ``bench/features.py`` (run in ``bench/.venvs/feast``: feast[duckdb,redis]).

    python _features_worker_feast.py BENCH --data DIR --workdir DIR --out FILE [...]

Each worker writes a feature repository config (``feature_store.yaml``) into its workdir
and applies the ``customer_stats`` view (untimed), as ``tests/features/_feast_oracle_worker.py``
does. ``historical``: ``get_historical_features(...).to_arrow()`` on the DuckDB offline store
(``--variant duckdb``) or the file (dask) one (``--variant file``). ``materialize``:
``store.materialize(start, end)`` from the DuckDB offline store into the SQLite or Redis
online store (``--variant sqlite|redis``), then online reads. ``apply_setup``: a tiny
repository for ``feast apply``.
"""

from __future__ import annotations

import argparse
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import _features_worker_common as common

FEATURE_REFS = [f"{common.VIEW}:{f}" for f in common.FEATURES]


def _yaml(project: str, offline: str, online: str) -> str:
    return (f"project: {project}\nregistry: registry.db\nprovider: local\n"
            f"offline_store:\n  type: {offline}\n"
            f"online_store:\n{online}"
            "entity_key_serialization_version: 3\n")


def _sqlite(path: Path) -> str:
    return f"  type: sqlite\n  path: {path}\n"


def _store(args: argparse.Namespace, offline: str, online: str,
           project: str = "bench") -> tuple[Any, list[Any]]:
    """A FeatureStore over a new repo dir in the workdir, with the view applied."""
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    repo = args.workdir / "feast_repo"
    repo.mkdir(exist_ok=True)
    (repo / "feature_store.yaml").write_text(_yaml(project, offline, online))
    customer = Entity(name=common.ENTITY, join_keys=[common.JOIN_KEY],
                      value_type=ValueType.INT64)
    source = FileSource(path=str(common.features_path(args.data, args.feature_rows)),
                        timestamp_field="event_timestamp", created_timestamp_column="created")
    view = FeatureView(name=common.VIEW, entities=[customer],
                       ttl=timedelta(days=common.TTL_DAYS), source=source, online=True,
                       schema=[Field(name=f, dtype=Float64) for f in common.FEATURES])
    store = FeatureStore(repo_path=str(repo))
    store.apply([customer, view])
    return store, [customer, view]


def bench_historical(args: argparse.Namespace) -> dict[str, Any]:
    store, _ = _store(args, args.variant, _sqlite(args.workdir / "online.db"))
    entity_df = common.read_entities(args.data, args.entity_rows)
    result: dict[str, Any] = {"entity_rows": len(entity_df), "offline_store": args.variant}
    with common.meter(result):
        table = store.get_historical_features(entity_df=entity_df,
                                              features=FEATURE_REFS).to_arrow()
    result["check"] = common.summarize_result(table, args.entity_rows)
    return result


def _redis_cleanup(host: str, port: int, project: str) -> int:
    """Feast's Redis keys are the serialized entity key followed by the project name."""
    import redis

    client = redis.Redis(host=host, port=port)
    try:
        keys = list(client.scan_iter(match=b"*" + project.encode(), count=5000))
        for start in range(0, len(keys), 5000):
            client.unlink(*keys[start:start + 5000])
        return len(keys)
    finally:
        client.close()


def bench_materialize(args: argparse.Namespace) -> dict[str, Any]:
    host, port = args.redis.rsplit(":", 1)
    project = f"bench_{uuid.uuid4().hex[:12]}"
    if args.variant == "redis":
        online = f"  type: redis\n  connection_string: \"{host}:{port},db=0\"\n"
    else:
        online = _sqlite(args.workdir / "online.db")
    result: dict[str, Any] = {"store": args.variant, "project": project}
    try:
        store, _ = _store(args, "duckdb", online, project)
        with common.meter(result):
            store.materialize(start_date=common.MAT_START, end_date=common.MAT_END)
        if args.variant == "sqlite":
            import sqlite3

            with sqlite3.connect(args.workdir / "online.db") as con:
                table = f"{project}_{common.VIEW}"
                result["online_rows"] = con.execute(
                    f'SELECT count(DISTINCT entity_key) FROM "{table}"').fetchone()[0]

        def read(keys: list[int]) -> Any:
            return store.get_online_features(
                features=FEATURE_REFS,
                entity_rows=[{common.JOIN_KEY: k} for k in keys]).to_dict()

        result["online"] = common.online_reads(read, args.calls)
        keys = common.online_sample_keys()
        values = read(keys)
        result["sample"] = {
            str(k): None if all(values[f][i] is None for f in common.FEATURES) else
            [common._clean(values[f][i]) for f in common.FEATURES]
            for i, k in enumerate(keys)}
    finally:
        if args.variant == "redis":
            result["redis_keys_removed"] = _redis_cleanup(host, int(port), project)
    return result


def bench_apply_setup(args: argparse.Namespace) -> dict[str, Any]:
    """A tiny repository: the entity and the view, over a 20-row Parquet file."""
    import pandas as pd

    repo = args.workdir / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(
        _yaml("tiny", "file", _sqlite(repo / "data" / "online.db")).replace(
            "registry: registry.db", "registry: data/registry.db"))
    frame = pd.DataFrame({
        common.JOIN_KEY: range(1, 21),
        "event_timestamp": pd.Timestamp(common.START),
        "created": pd.Timestamp(common.START),
        **{f: [float(i) for i in range(20)] for f in common.FEATURES}})
    frame.to_parquet(repo / "data" / "customer_stats.parquet", index=False)
    fields = ", ".join(f'Field(name="{f}", dtype=Float64)' for f in common.FEATURES)
    (repo / "definitions.py").write_text(
        "from datetime import timedelta\nfrom pathlib import Path\n\n"
        "from feast import Entity, FeatureView, Field, FileSource, ValueType\n"
        "from feast.types import Float64\n\n"
        f'customer = Entity(name="{common.ENTITY}", join_keys=["{common.JOIN_KEY}"], '
        "value_type=ValueType.INT64)\n"
        'source = FileSource(path=str(Path(__file__).parent / "data" / '
        '"customer_stats.parquet"), timestamp_field="event_timestamp", '
        'created_timestamp_column="created")\n'
        f'customer_stats = FeatureView(name="{common.VIEW}", entities=[customer], '
        f"ttl=timedelta(days={common.TTL_DAYS}), source=source, online=True, "
        f"schema=[{fields}])\n")
    return {"repo": str(repo)}


if __name__ == "__main__":
    common.main({"historical": bench_historical, "materialize": bench_materialize,
                 "apply_setup": bench_apply_setup})
