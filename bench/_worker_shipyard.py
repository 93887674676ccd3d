"""Shipyard side of ``bench/tracking.py``; runs in the Shipyard interpreter.

``python _worker_shipyard.py BENCH --n N --out FILE [--variant V]``: the store comes from
the environment the driver sets (``SHIPYARD_HOME``, ``SHIPYARD_DB``, ``SHIPYARD_ARTIFACTS``,
``SHIPYARD_SYNC_LOGGING``). Only the lines between the clock calls are timed; setup and the
checks are not.
"""

from __future__ import annotations

import argparse
import time
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


def _stored_points(run_id: str, keys: list[str]) -> int:
    from shipyard.client import default_client

    tracking = default_client().tracking
    return sum(len(tracking.get_metric_history(run_id, k)) for k in keys)


def bench_log_metric(args: argparse.Namespace) -> dict[str, Any]:
    """``sy.log_metric`` in an active run, one call per point, then ``sy.flush()``; one key
    per pass."""
    import shipyard as sy

    n = args.n
    with sy.start_run(experiment="log_metric") as run:
        for i in range(5):
            sy.log_metric("warmup", i, step=i)
        sy.flush()

        def work(p: int) -> None:
            for i in range(n):
                sy.log_metric(f"loss{p}", i * 1e-3, step=i)
            sy.flush()

        result = passes(work, args.repeats, n)
    result["stored"] = min(_stored_points(run.run_id, [f"loss{p}"])
                           for p in range(args.repeats))
    result["sync"] = sy.get_settings().sync_logging
    return result


def bench_bulk(args: argparse.Namespace) -> dict[str, Any]:
    """Variant ``client``: ``Client().log_batch`` with 1000 points per call, a new run per
    pass (created untimed, as on the MLflow side).
    Variant ``fluent``: ``with sy.start_run() as run: run.log_metrics({10 keys}, step=i)``
    (buffered), timed from the run's start to its end (which flushes)."""
    import shipyard as sy

    client = sy.Client()
    steps = args.n // len(BULK_KEYS)
    ts = int(time.time() * 1000)
    run_ids: list[str] = []
    if args.variant == "client":
        exp_id = client.get_or_create_experiment("bulk").experiment_id
        run_ids += [client.create_run(exp_id).run_id for _ in range(args.repeats)]
        client.log_batch(run_ids[0], metrics=[("warmup", float(i), i, ts) for i in range(10)])

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
    elif args.variant == "fluent":
        with sy.start_run(experiment="bulk") as warm:
            warm.log_metrics({"warmup": 0.0}, step=0)

        def work(p: int) -> None:
            with sy.start_run(experiment="bulk") as run:
                for step in range(steps):
                    run.log_metrics({key: step * 1e-3 for key in BULK_KEYS}, step=step)
            run_ids.append(run.run_id)
    else:
        raise SystemExit(f"unknown variant {args.variant!r}: client or fluent")
    result = passes(work, args.repeats, steps * len(BULK_KEYS))
    result["stored"] = min(_stored_points(run_id, BULK_KEYS) for run_id in run_ids)
    return result


def bench_run_create(args: argparse.Namespace) -> dict[str, Any]:
    """Start a run, log 5 params and 5 metrics, end it; ``n`` runs per pass."""
    import shipyard as sy

    def one(i: int) -> None:
        with sy.start_run(experiment="runs") as run:
            run.log_params(run_params(i))
            run.log_metrics(run_metrics(i))

    for i in range(2):
        one(-1 - i)
    n = args.n
    result = passes(lambda p: [one(p * n + i) for i in range(n)], args.repeats, n)
    result["ms_per_run"] = 1000 / result["per_s"]
    total = n * args.repeats + 2
    stored = len(sy.search_runs(["runs"], max_results=total + 10, output_format="list"))
    result["stored"] = (stored - 2) // args.repeats
    result["sync"] = sy.get_settings().sync_logging
    return result


def _populate(n_runs: int) -> None:
    """Log ``n_runs`` finished runs through the tracking service (setup, not timed)."""
    import shipyard as sy

    tracking = sy.Client().tracking
    exp_id = tracking.get_or_create_experiment(SEARCH_EXPERIMENT).experiment_id
    base = int(time.time() * 1000) - n_runs
    for i, (params, metrics) in enumerate(search_data(n_runs)):
        t = base + i
        run = tracking.create_run(exp_id, run_name=f"run-{i}", start_time=t)
        tracking.log_batch(run.run_id, params=params,
                           metrics=[(k, v, 0, t) for k, v in metrics.items()])
        tracking.end_run(run.run_id, end_time=t + 1)


def bench_search(args: argparse.Namespace) -> dict[str, Any]:
    """``sy.search_runs`` as a DataFrame and as a list of runs."""
    import shipyard as sy

    populate_s, _ = clock(lambda: _populate(args.n))

    def search(output_format: str) -> Any:
        return sy.search_runs([SEARCH_EXPERIMENT], filter_string=SEARCH_FILTER,
                              order_by=SEARCH_ORDER, max_results=SEARCH_MAX,
                              output_format=output_format)

    pandas_times, df = repeat(lambda: search("pandas"), args.repeats)
    list_times, runs = repeat(lambda: search("list"), args.repeats)
    return {"n_runs": args.n, "populate_s": populate_s,
            "pandas": summary(pandas_times), "list": summary(list_times),
            "rows": len(df), "list_rows": len(runs),
            "top_m1": [round(x, 9) for x in df["metrics.m1"].head(5).tolist()]}


if __name__ == "__main__":
    main({"log_metric": bench_log_metric, "bulk": bench_bulk,
          "run_create": bench_run_create, "search": bench_search})
