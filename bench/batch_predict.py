"""Batch inference: ``predict_parquet`` against a hand-written read → predict → write script.

    python bench/batch_predict.py [--rows 1000000] [--rounds 5] [--json PATH] [--cli]
                                  [--model gbc|logistic]

The model is the serving benchmark's (``serving.fit_model``: a 100-tree
GradientBoostingClassifier on 20 float columns; ``--model logistic``: a LogisticRegression
on the same data, so cheap that Parquet I/O dominates), registered in a temp
``SHIPYARD_HOME``.
The input is ``--rows`` rows of those 20 columns in one Parquet file (pyarrow's defaults).
Each round times, in a rotating order so that machine noise hits them alike:

* ``model``: the model's own ``predict`` + ``predict_proba`` on the DataFrame in memory
  (the floor: no I/O at all);
* ``plain``: what a person writes without Shipyard: ``pq.read_table`` → ``to_pandas`` →
  ``predict`` + ``predict_proba`` → the frame plus two columns → ``pq.write_table``;
* ``shipyard``: ``predict_parquet(ServedModel.load(...), input, output)`` with its defaults
  (chunks of 100,000 rows, the signature check, resumable parts, the combined output with
  the model version; no progress bar).

It prints every round and the median and spread (min–max) of the ratio shipyard ÷ plain
(the issue's target: at most 1.10) and of shipyard ÷ model, for wall time and for the
process's CPU time (all threads: the CPU ratio shows the extra work, whatever the
overlap). ``--cli`` also times one ``shipyard predict`` subprocess (which adds the
interpreter start and the imports).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serving import FEATURES, fit_model

MODEL_NAME = "bench-gbc"


def _register(home: Path, kind: str) -> tuple[Any, Any]:
    """(the fitted model, its ServedModel) after registering it under ``home``."""
    os.environ["SHIPYARD_HOME"] = str(home)
    import shipyard as sy
    from shipyard.serving import ServedModel

    model, X = fit_model(kind=kind)
    with sy.start_run("bench") as run:
        run.log_model(model, input_example=X.head(), registered_model_name=MODEL_NAME)
    return model, ServedModel.load(f"{MODEL_NAME}/1")


def _input_file(path: Path, rows: int) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = pd.DataFrame(np.random.default_rng(1).normal(size=(rows, len(FEATURES))),
                         columns=FEATURES)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return frame


def _variants(model: Any, served: Any, frame: pd.DataFrame, src: Path,
              work: Path) -> dict[str, Callable[[], None]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shipyard.serving import predict_parquet

    def model_only() -> None:
        model.predict(frame)
        model.predict_proba(frame)

    def plain() -> None:
        data = pq.read_table(src).to_pandas()
        preds = model.predict(data)
        proba = model.predict_proba(data)
        table = pa.Table.from_pandas(data, preserve_index=False)
        table = table.append_column("prediction", pa.array(preds)).append_column(
            "probability", pa.array(proba[:, 1]))
        pq.write_table(table, work / "plain.parquet")

    def shipyard() -> None:
        predict_parquet(served, src, work / "shipyard.parquet", progress=False)

    return {"model": model_only, "plain": plain, "shipyard": shipyard}


def _check(model: Any, frame: pd.DataFrame, work: Path) -> None:
    """The two outputs agree (the script is measuring the same work)."""
    import pyarrow.parquet as pq

    ours = pq.read_table(work / "shipyard.parquet")
    theirs = pq.read_table(work / "plain.parquet")
    assert ours.num_rows == theirs.num_rows == len(frame)
    assert ours.column("prediction").equals(theirs.column("prediction"))
    np.testing.assert_allclose(ours.column("probability").to_numpy(),
                               theirs.column("probability").to_numpy())


def _cli_seconds(src: Path, work: Path) -> float:
    cmd = [sys.executable, "-m", "shipyard.cli", "predict", f"{MODEL_NAME}/1", "--input",
           str(src), "--output", str(work / "cli.parquet"), "--no-progress"]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - started


def run(rows: int, rounds: int, cli: bool, kind: str = "gbc") -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-batch-"))
    model, served = _register(work / "home", kind)
    src = work / "input.parquet"
    frame = _input_file(src, rows)
    fns = _variants(model, served, frame, src, work)
    for fn in fns.values():  # warm-up: imports, page cache, allocator
        fn()
    _check(model, frame, work)
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    load_before = os.getloadavg()[0]
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            started, cpu_started = time.perf_counter(), time.process_time()
            fns[name]()
            times[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - cpu_started)
        print(f"round {r + 1}: " + "  ".join(f"{n} {times[n][-1]:.3f} s" for n in names)
              + f"  shipyard/plain {times['shipyard'][-1] / times['plain'][-1]:.3f}"
              f"  (load {os.getloadavg()[0]:.1f})", flush=True)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "rows": rows, "model": kind,
        "features": len(FEATURES), "rounds": rounds, "seconds": times, "cpu_seconds": cpu,
        "load_avg_before": load_before, "load_avg_after": os.getloadavg()[0]}
    for what, figures in (("", times), ("cpu_", cpu)):
        for anchor in ("plain", "model"):
            ratios = [s / a for s, a in zip(figures["shipyard"], figures[anchor], strict=True)]
            result[f"{what}ratio_shipyard_{anchor}"] = ratios
            result[f"median_{what}ratio_shipyard_{anchor}"] = statistics.median(ratios)
    if cli:
        result["cli_seconds"] = _cli_seconds(src, work)
    return result


def report(result: dict[str, Any]) -> None:
    for name, secs in result["seconds"].items():
        cpu = result["cpu_seconds"][name]
        print(f"{name:9s} wall median {statistics.median(secs):6.3f} s  "
              f"(min {min(secs):.3f}, max {max(secs):.3f}); CPU median "
              f"{statistics.median(cpu):6.3f} s")
    for key, label in (("ratio_shipyard_plain", "wall shipyard / plain"),
                       ("ratio_shipyard_model", "wall shipyard / model"),
                       ("cpu_ratio_shipyard_plain", "CPU  shipyard / plain"),
                       ("cpu_ratio_shipyard_model", "CPU  shipyard / model")):
        values = result[key]
        print(f"{label}: median {statistics.median(values):.3f}x  "
              f"(min {min(values):.3f}, max {max(values):.3f}, {len(values)} rounds)")
    verdict = "PASS" if result["median_ratio_shipyard_plain"] <= 1.10 else "MISS"
    print(f"target shipyard / plain <= 1.10: {verdict}")
    if "cli_seconds" in result:
        print(f"shipyard predict (CLI subprocess, imports included): "
              f"{result['cli_seconds']:.3f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, help="write every figure to this file")
    ap.add_argument("--cli", action="store_true", help="also time one CLI subprocess")
    ap.add_argument("--model", choices=["gbc", "logistic"], default="gbc",
                    help="logistic: a model that costs almost nothing (I/O dominates)")
    args = ap.parse_args()
    result = run(args.rows, args.rounds, args.cli, args.model)
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
