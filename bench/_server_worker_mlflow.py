"""MLflow's client for ``bench/server.py``; runs in ``bench/.venvs/mlflow``.

``python _server_worker_mlflow.py BENCH --n N --repeats R --out FILE``: the server comes from
``MLFLOW_TRACKING_URI`` (an ``mlflow server`` or a ``shipyard server``; the driver sets it),
so the same code, the real ``MlflowClient``, runs against both. Only the lines between the
clock calls are timed; setup and the checks are not.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
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
    search_data,
    summary,
)

#: Client threads that fill the search experiment (setup): the server does the work.
POPULATE_THREADS = 4


def _client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()  # MLFLOW_TRACKING_URI


def _experiment(client: Any, name: str) -> str:
    return str(client.create_experiment(f"{name}-{time.time_ns()}"))


def _stored(client: Any, run_id: str, keys: list[str]) -> int | str:
    """Points stored under ``keys``, read back through the same API; an error as text."""
    try:
        return sum(len(client.get_metric_history(run_id, key)) for key in keys)
    except Exception as exc:  # reported as a CHECK by the driver, not a failure
        return f"{type(exc).__name__}: {str(exc)[:300]}"


def _worst(stored: list[int | str]) -> int | str:
    """The first error if any, else the smallest count."""
    errors = [s for s in stored if isinstance(s, str)]
    return errors[0] if errors else min(stored)  # type: ignore[type-var]


def bench_log_metric(args: argparse.Namespace) -> dict[str, Any]:
    """``MlflowClient().log_metric(run_id, key, value, step=i)``: one request per call; one
    key per pass, all in one run created untimed."""
    client = _client()
    run_id = client.create_run(_experiment(client, "log_metric")).info.run_id
    for i in range(5):
        client.log_metric(run_id, "warmup", i, step=i)
    n = args.n

    def work(p: int) -> None:
        for i in range(n):
            client.log_metric(run_id, f"loss{p}", i * 1e-3, step=i)

    cpu0 = time.process_time()
    result = passes(work, args.repeats, n)
    result["client_cpu_s"] = time.process_time() - cpu0
    stored = [_stored(client, run_id, [f"loss{p}"]) for p in range(args.repeats)]
    result["stored"] = _worst(stored)
    return result


def bench_log_batch(args: argparse.Namespace) -> dict[str, Any]:
    """``MlflowClient().log_batch`` with 1000 metrics per call (MLflow's limit), 10 keys a
    step; a new run per pass, created untimed."""
    from mlflow.entities import Metric

    client = _client()
    exp_id = _experiment(client, "log_batch")
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

    cpu0 = time.process_time()
    result = passes(work, args.repeats, steps * len(BULK_KEYS))
    result["client_cpu_s"] = time.process_time() - cpu0
    stored = [_stored(client, rid, BULK_KEYS) for rid in run_ids]
    result["stored"] = _worst(stored)
    return result


def _populate(client: Any, exp_id: str, n_runs: int) -> None:
    """``create_run`` (with the system tags ``mlflow.start_run`` sets) and one ``log_batch``
    of 5 params + 5 metrics per run, over the API, from a few threads (setup, not timed)."""
    from mlflow.entities import Metric, Param

    base = int(time.time() * 1000) - n_runs

    def one(item: tuple[int, tuple[dict[str, str], dict[str, float]]]) -> None:
        i, (params, metrics) = item
        t = base + i
        tags = {"mlflow.user": "bench", "mlflow.source.name": "bench",
                "mlflow.source.type": "LOCAL"}
        run_id = client.create_run(exp_id, start_time=t, tags=tags,
                                   run_name=f"run-{i}").info.run_id
        client.log_batch(run_id, metrics=[Metric(k, v, t, 0) for k, v in metrics.items()],
                         params=[Param(k, v) for k, v in params.items()])

    with ThreadPoolExecutor(POPULATE_THREADS) as pool:
        for _ in pool.map(one, enumerate(search_data(n_runs))):
            pass


def bench_search(args: argparse.Namespace) -> dict[str, Any]:
    """``MlflowClient().search_runs`` over ``n`` runs of 5 params + 5 metrics: filter on one
    metric, order by another, top 100."""
    client = _client()
    exp_id = _experiment(client, SEARCH_EXPERIMENT)
    populate_s, _ = clock(lambda: _populate(client, exp_id, args.n))

    def search() -> Any:
        return client.search_runs([exp_id], filter_string=SEARCH_FILTER,
                                  order_by=SEARCH_ORDER, max_results=SEARCH_MAX)

    cpu0 = time.process_time()
    times, runs = repeat(search, args.repeats)
    cpu_s = time.process_time() - cpu0  # the warm-up call included
    first = runs[0].data if runs else None
    return {"n_runs": args.n, "populate_s": populate_s, **summary(times), "times": times,
            "client_cpu_s": cpu_s, "rows": len(runs),
            "top_m1": [round(r.data.metrics["m1"], 9) for r in runs[:5]],
            "first_run": {"params": len(first.params), "metrics": len(first.metrics),
                          "tags": sorted(first.tags)} if first else None}


if __name__ == "__main__":
    main({"log_metric": bench_log_metric, "log_batch": bench_log_batch,
          "search": bench_search})
