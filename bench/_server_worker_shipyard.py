"""Shipyard's own remote SDK for ``bench/server.py``; runs in the Shipyard interpreter.

``python _server_worker_shipyard.py BENCH --n N --repeats R --out FILE``: the server comes
from ``SHIPYARD_URI`` (the driver sets it, and a ``SHIPYARD_HOME`` of the client's own).
Only the lines between the clock calls are timed; setup and the checks are not.
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

#: As in ``_server_worker_mlflow.py``.
POPULATE_THREADS = 4
#: Experiment names of this worker: the server also holds the MLflow client's experiments.
PREFIX = "sdk-"


def _stored(run_id: str, keys: list[str]) -> int:
    import shipyard as sy

    tracking = sy.Client().tracking
    return sum(len(tracking.get_metric_history(run_id, k)) for k in keys)


def bench_log_metric(args: argparse.Namespace) -> dict[str, Any]:
    """``run.log_metric`` in ``sy.start_run()``, buffered (batches go over the wire as
    ``log-batch`` requests), then ``sy.flush()``; one key per pass."""
    import shipyard as sy

    if not sy.Client().is_remote:
        raise SystemExit("SHIPYARD_URI is not set: this worker measures the remote client")
    n = args.n
    with sy.start_run(experiment=f"{PREFIX}log_metric") as run:
        for i in range(5):
            run.log_metric("warmup", i, step=i)
        sy.flush()

        def work(p: int) -> None:
            for i in range(n):
                run.log_metric(f"loss{p}", i * 1e-3, step=i)
            sy.flush()

        cpu0 = time.process_time()
    result = passes(work, args.repeats, n)
    result["client_cpu_s"] = time.process_time() - cpu0
    result["stored"] = min(_stored(run.run_id, [f"loss{p}"]) for p in range(args.repeats))
    result["sync"] = sy.get_settings().sync_logging
    return result


def bench_log_batch(args: argparse.Namespace) -> dict[str, Any]:
    """``Client().log_batch`` with 1000 points per call, a new run per pass (created
    untimed), as the MLflow client's ``log_batch``."""
    import shipyard as sy

    client = sy.Client()
    exp_id = client.get_or_create_experiment(f"{PREFIX}log_batch").experiment_id
    run_ids = [client.create_run(exp_id).run_id for _ in range(args.repeats)]
    ts = int(time.time() * 1000)
    client.log_batch(run_ids[0], metrics=[("warmup", float(i), i, ts) for i in range(10)])
    steps = args.n // len(BULK_KEYS)

    def work(p: int) -> None:
        batch: list[tuple[str, float, int, int]] = []
        for step in range(steps):
            for key in BULK_KEYS:
                batch.append((key, step * 1e-3, step, ts))
                if len(batch) == BULK_BATCH:
                    client.log_batch(run_ids[p], metrics=batch)
                    batch = []
        if batch:
            client.log_batch(run_ids[p], metrics=batch)

    cpu0 = time.process_time()
    result = passes(work, args.repeats, steps * len(BULK_KEYS))
    result["client_cpu_s"] = time.process_time() - cpu0
    result["stored"] = min(_stored(run_id, BULK_KEYS) for run_id in run_ids)
    return result


def _populate(exp_id: str, n_runs: int) -> None:
    """``create_run`` + one ``log_batch`` of 5 params + 5 metrics per run, over the API,
    from a few threads, as on the MLflow side (setup, not timed)."""
    import shipyard as sy

    tracking = sy.Client().tracking
    base = int(time.time() * 1000) - n_runs

    def one(item: tuple[int, tuple[dict[str, str], dict[str, float]]]) -> None:
        i, (params, metrics) = item
        t = base + i
        run = tracking.create_run(exp_id, run_name=f"run-{i}", start_time=t)
        tracking.log_batch(run.run_id, params=params,
                           metrics=[(k, v, 0, t) for k, v in metrics.items()])

    with ThreadPoolExecutor(POPULATE_THREADS) as pool:
        for _ in pool.map(one, enumerate(search_data(n_runs))):
            pass


def bench_search(args: argparse.Namespace) -> dict[str, Any]:
    """``sy.search_runs(..., output_format="list")``: the query of the MLflow client's."""
    import shipyard as sy

    name = f"{PREFIX}{SEARCH_EXPERIMENT}"
    exp_id = sy.Client().get_or_create_experiment(name).experiment_id
    populate_s, _ = clock(lambda: _populate(exp_id, args.n))

    def search() -> Any:
        return sy.search_runs(experiment_ids=[exp_id], filter_string=SEARCH_FILTER,
                              order_by=SEARCH_ORDER, max_results=SEARCH_MAX,
                              output_format="list")

    cpu0 = time.process_time()
    times, runs = repeat(search, args.repeats)
    cpu_s = time.process_time() - cpu0  # the warm-up call included
    return {"n_runs": args.n, "populate_s": populate_s, **summary(times), "times": times,
            "client_cpu_s": cpu_s, "rows": len(runs),
            "top_m1": [round(r.metrics["m1"], 9) for r in runs[:5]]}


if __name__ == "__main__":
    main({"log_metric": bench_log_metric, "log_batch": bench_log_batch,
          "search": bench_search})
