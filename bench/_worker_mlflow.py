"""MLflow side of ``bench/tracking.py``; runs in ``bench/.venvs/mlflow``.

``python _worker_mlflow.py BENCH --n N --workdir DIR --out FILE``: the tracking store is
``sqlite:///DIR/mlflow.db`` with artifacts below DIR (the driver starts us with cwd=DIR).
Only the lines between the clock calls are timed; setup and the checks are not.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

from _common import (
    BULK_BATCH,
    BULK_KEYS,
    SEARCH_EXPERIMENT,
    SEARCH_FILTER,
    SEARCH_MAX,
    SEARCH_ORDER,
    clock,
    main,
    passes,
    repeat,
    run_metrics,
    run_params,
    search_data,
    summary,
)


def _mlflow(args: argparse.Namespace) -> Any:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{args.workdir}/mlflow.db")
    return mlflow


def bench_log_metric(args: argparse.Namespace) -> dict[str, Any]:
    """``mlflow.log_metric`` in an active run, one call per point; one key per pass."""
    mlflow = _mlflow(args)
    mlflow.set_experiment("log_metric")
    n = args.n
    with mlflow.start_run() as run:
        for i in range(5):
            mlflow.log_metric("warmup", i, step=i)

        def work(p: int) -> None:
            for i in range(n):
                mlflow.log_metric(f"loss{p}", i * 1e-3, step=i)

        result = passes(work, args.repeats, n)
    client = mlflow.MlflowClient()
    result["stored"] = min(len(client.get_metric_history(run.info.run_id, f"loss{p}"))
                           for p in range(args.repeats))
    return result


def bench_bulk(args: argparse.Namespace) -> dict[str, Any]:
    """``MlflowClient().log_batch`` with 1000 metrics per call (MLflow's limit); a new run
    per pass."""
    mlflow = _mlflow(args)
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    exp_id = client.create_experiment("bulk")
    run_ids = [client.create_run(exp_id).info.run_id for _ in range(args.repeats)]
    ts = int(time.time() * 1000)
    client.log_batch(run_ids[0], metrics=[Metric("warmup", float(i), ts, i) for i in range(10)])
    steps = args.n // len(BULK_KEYS)

    def work(p: int) -> None:
        batch: list[Metric] = []
        for step in range(steps):
            for key in BULK_KEYS:
                batch.append(Metric(key, step * 1e-3, ts, step))
                if len(batch) == BULK_BATCH:
                    client.log_batch(run_ids[p], metrics=batch)
                    batch = []
        if batch:
            client.log_batch(run_ids[p], metrics=batch)

    result = passes(work, args.repeats, steps * len(BULK_KEYS))
    result["stored"] = min(sum(len(client.get_metric_history(rid, k)) for k in BULK_KEYS)
                           for rid in run_ids)
    return result


def bench_run_create(args: argparse.Namespace) -> dict[str, Any]:
    """Start a run, log 5 params and 5 metrics, end it; ``n`` runs per pass."""
    mlflow = _mlflow(args)
    exp_id = mlflow.set_experiment("runs").experiment_id

    def one(i: int) -> None:
        with mlflow.start_run():
            mlflow.log_params(run_params(i))
            mlflow.log_metrics(run_metrics(i))

    for i in range(2):
        one(-1 - i)
    n = args.n
    result = passes(lambda p: [one(p * n + i) for i in range(n)], args.repeats, n)
    result["ms_per_run"] = 1000 / result["per_s"]
    total = n * args.repeats + 2
    stored = len(mlflow.MlflowClient().search_runs([exp_id], max_results=total + 10))
    result["stored"] = (stored - 2) // args.repeats
    return result


def _populate(client: Any, exp_id: str, n_runs: int) -> None:
    """Write ``n_runs`` finished runs straight into MLflow's tables (setup, not timed).

    Each run gets the four system tags ``mlflow.start_run`` sets, so the rows look like
    runs logged through the API.
    """
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )

    store = client._tracking_client.store
    artifact_root = client.get_experiment(exp_id).artifact_location
    base = int(time.time() * 1000) - n_runs
    runs, params, metrics, tags = [], [], [], []
    for i, (p, m) in enumerate(search_data(n_runs)):
        rid, t = uuid.uuid4().hex, base + i
        runs.append({"run_uuid": rid, "name": f"run-{i}", "source_type": "LOCAL",
                     "source_name": "bench", "entry_point_name": "", "user_id": "bench",
                     "status": "FINISHED", "start_time": t, "end_time": t + 1,
                     "source_version": "", "lifecycle_stage": "active",
                     "artifact_uri": f"{artifact_root}/{rid}/artifacts",
                     "experiment_id": int(exp_id)})
        params += [{"run_uuid": rid, "key": k, "value": v} for k, v in p.items()]
        metrics += [{"run_uuid": rid, "key": k, "value": v, "timestamp": t, "step": 0,
                     "is_nan": False} for k, v in m.items()]
        tags += [{"run_uuid": rid, "key": k, "value": v} for k, v in (
            ("mlflow.runName", f"run-{i}"), ("mlflow.user", "bench"),
            ("mlflow.source.name", "bench"), ("mlflow.source.type", "LOCAL"))]
    with store.engine.begin() as conn:
        conn.execute(SqlRun.__table__.insert(), runs)
        conn.execute(SqlParam.__table__.insert(), params)
        conn.execute(SqlMetric.__table__.insert(), metrics)
        conn.execute(SqlLatestMetric.__table__.insert(), metrics)
        conn.execute(SqlTag.__table__.insert(), tags)


def bench_search(args: argparse.Namespace) -> dict[str, Any]:
    """``mlflow.search_runs`` (pandas) and ``MlflowClient().search_runs`` (Run objects)."""
    mlflow = _mlflow(args)
    client = mlflow.MlflowClient()
    exp_id = client.create_experiment(SEARCH_EXPERIMENT)
    populate_s, _ = clock(lambda: _populate(client, exp_id, args.n))

    def pandas() -> Any:
        return mlflow.search_runs([exp_id], filter_string=SEARCH_FILTER,
                                  order_by=SEARCH_ORDER, max_results=SEARCH_MAX)

    def as_list() -> Any:
        return client.search_runs([exp_id], filter_string=SEARCH_FILTER,
                                  order_by=SEARCH_ORDER, max_results=SEARCH_MAX)

    pandas_times, df = repeat(pandas, args.repeats)
    list_times, runs = repeat(as_list, args.repeats)
    return {"n_runs": args.n, "populate_s": populate_s,
            "pandas": summary(pandas_times), "list": summary(list_times),
            "rows": len(df), "list_rows": len(runs),
            "top_m1": [round(x, 9) for x in df["metrics.m1"].head(5).tolist()]}


if __name__ == "__main__":
    main({"log_metric": bench_log_metric, "bulk": bench_bulk,
          "run_create": bench_run_create, "search": bench_search})
