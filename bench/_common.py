"""Shared by the benchmark workers: argument parsing, result output and the test data.

Each worker runs in its own virtual environment, so this module uses the standard library
only. A worker is started as ``python _worker_X.py BENCH --n N --workdir DIR --out FILE``
and writes one JSON object to ``FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

#: The search benchmark's query, identical on both sides.
SEARCH_FILTER = "metrics.m0 > 0.5"
SEARCH_ORDER = ["metrics.m1 DESC"]
SEARCH_MAX = 100
SEARCH_EXPERIMENT = "search"
#: Keys of the bulk benchmark: each step logs one value for each key.
BULK_KEYS = [f"m{i}" for i in range(10)]
BULK_BATCH = 1000  # MLflow's largest log_batch

Bench = Callable[[argparse.Namespace], dict[str, Any]]


def search_data(n_runs: int, seed: int = 7) -> list[tuple[dict[str, str], dict[str, float]]]:
    """``n_runs`` (params, metrics) pairs, 5 of each, the same on every call."""
    rng = random.Random(seed)
    return [({f"p{j}": f"v{rng.randrange(10)}" for j in range(5)},
             {f"m{j}": rng.random() for j in range(5)}) for _ in range(n_runs)]


def run_params(i: int) -> dict[str, str]:
    return {f"p{j}": f"value-{i}-{j}" for j in range(5)}


def run_metrics(i: int) -> dict[str, float]:
    return {f"m{j}": (i * 5 + j) * 1e-3 for j in range(5)}


def clock(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def repeat(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Call once to warm up, then ``repeats`` timed calls; (seconds of each, last result)."""
    out = fn()
    times = []
    for _ in range(repeats):
        dt, out = clock(fn)
        times.append(dt)
    return times, out


def summary(times: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def passes(work: Callable[[int], Any], repeats: int, count: int) -> dict[str, Any]:
    """Time ``work(p)`` for passes p = 0..repeats-1, each doing ``count`` operations.

    Throughput is the median over the passes, so one pass slowed by another process on a
    small machine does not decide the figure.
    """
    seconds = [clock(lambda p=p: work(p))[0] for p in range(repeats)]
    rates = [count / s for s in seconds]
    return {"n": count, "passes": len(seconds), "seconds": seconds, "rates": rates,
            "per_s": statistics.median(rates), "seconds_median": statistics.median(seconds)}


def main(benches: dict[str, Bench]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bench", choices=sorted(benches))
    ap.add_argument("--n", type=int, required=True, help="calls, points or runs")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--variant", default="")
    ap.add_argument("--workdir", default=os.getcwd(), help="folder of this side's store")
    ap.add_argument("--out", required=True, help="JSON file for the result")
    args = ap.parse_args()
    result = benches[args.bench](args)
    with open(args.out, "w") as fh:
        json.dump(result, fh)
