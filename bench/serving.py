"""Serving benchmarks: latency at concurrency 1 (in-process vs HTTP), throughput with and
without micro-batching, and batch scoring of 1M rows vs a hand-written script.

    python bench/serving.py [--rows 1000000] [--only latency,load,batch]

Client and servers run on this machine; run it on quiet cores. Needs aiohttp for the load
test (``pip install aiohttp``).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

COLS = [f"f{i}" for i in range(10)]


def setup() -> tuple[object, pd.DataFrame]:
    from sklearn.linear_model import LogisticRegression

    import shipyard as sy

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(10_000, 10)), columns=COLS)
    model = LogisticRegression().fit(X, (X.sum(axis=1) > 0).astype(int))
    with sy.start_run("bench") as run:
        run.log_model(model, input_example=X.head(), registered_model_name="bench")
    return model, X


def start_server(port: int, *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "shipyard.cli", "serve", "bench/1",
                             "--port", str(port), *extra], stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port)
            conn.request("GET", "/ready")
            conn.getresponse().read()
            return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def latency(model: object, X: pd.DataFrame) -> None:
    from shipyard.serving import ServedModel

    served = ServedModel.load("bench/1")
    rec = {c: float(X[c].iloc[0]) for c in COLS}
    row = X.iloc[:1]
    body = json.dumps({"records": [rec]})
    v2 = json.dumps({"inputs": [{"name": c, "shape": [1], "datatype": "FP64",
                                 "data": [rec[c]]} for c in COLS]})
    procs = [start_server(18701), start_server(18702, "--no-log-predictions")]
    conns = {p: http.client.HTTPConnection("127.0.0.1", p) for p in (18701, 18702)}

    def post(port: int, path: str, data: str) -> None:
        conns[port].request("POST", path, data, {"content-type": "application/json"})
        conns[port].getresponse().read()

    fns = {"model predict + predict_proba (in-process)":
           lambda: (model.predict(row), model.predict_proba(row)),  # type: ignore[attr-defined]
           "ServedModel.predict (in-process)":
           lambda: served.predict({c: [v] for c, v in rec.items()}),
           "/predict c1 (log on)": lambda: post(18701, "/predict", body),
           "/predict c1 (log off)": lambda: post(18702, "/predict", body),
           "/v2 infer c1 (log on)": lambda: post(18701, "/v2/models/bench/infer", v2)}
    results: dict[str, list[float]] = {k: [] for k in fns}
    try:
        for fn in fns.values():
            for _ in range(100):
                fn()
        for _ in range(15):  # interleaved blocks: machine noise hits every variant alike
            for name, fn in fns.items():
                for _ in range(100):
                    t = time.perf_counter()
                    fn()
                    results[name].append(time.perf_counter() - t)
    finally:
        for p in procs:
            p.terminate()
            p.wait()
    for name, times in results.items():
        ms = np.array(times) * 1000
        print(f"{name:45s} p50 {np.percentile(ms, 50):6.2f} ms  p90 "
              f"{np.percentile(ms, 90):6.2f} ms  p99 {np.percentile(ms, 99):6.2f} ms")


def load(X: pd.DataFrame) -> None:
    import aiohttp

    rec = {c: float(X[c].iloc[0]) for c in COLS}
    body = json.dumps({"records": [rec]}).encode()

    async def run(url: str, conc: int, total: int) -> tuple[float, float]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as s:
            lat: list[float] = []

            async def worker(n: int) -> None:
                for _ in range(n):
                    t = time.perf_counter()
                    async with s.post(f"{url}/predict", data=body,
                                      headers={"content-type": "application/json"}) as r:
                        await r.read()
                        assert r.status == 200
                    lat.append(time.perf_counter() - t)

            await asyncio.gather(*(worker(20) for _ in range(conc)))
            lat.clear()
            t = time.perf_counter()
            await asyncio.gather(*(worker(total // conc) for _ in range(conc)))
            return len(lat) / (time.perf_counter() - t), float(np.median(lat) * 1000)

    for label, extra in (("batching on (32, 2 ms)", ()),
                         ("batching off", ("--max-batch-size", "1"))):
        proc = start_server(18710, *extra)
        try:
            for conc in (1, 8, 32, 64):
                rps, p50 = asyncio.run(run("http://127.0.0.1:18710", conc, 2000))
                print(f"{label:24s} concurrency {conc:3d}: {rps:7.0f} requests/s, "
                      f"p50 {p50:6.2f} ms")
        finally:
            proc.terminate()
            proc.wait()


def batch(model: object, rows: int, home: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shipyard.serving import ServedModel, predict_parquet

    served = ServedModel.load("bench/1")
    big = pd.DataFrame(np.random.default_rng(1).normal(size=(rows, 10)), columns=COLS)
    src = home / "big.parquet"
    pq.write_table(pa.Table.from_pandas(big, preserve_index=False), src)

    def model_only() -> None:
        model.predict(big)  # type: ignore[attr-defined]
        model.predict_proba(big)  # type: ignore[attr-defined]

    def hand_written() -> None:
        frame = pq.read_table(src).to_pandas()
        preds = model.predict(frame)  # type: ignore[attr-defined]
        proba = model.predict_proba(frame)  # type: ignore[attr-defined]
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.append_column("prediction", pa.array(preds)).append_column(
            "probability", pa.array(proba[:, 1]))
        pq.write_table(table, home / "hand.parquet")

    def shipyard_predict() -> None:
        predict_parquet(served, src, home / "scored.parquet", progress=False)

    best: dict[str, float] = {}
    for _ in range(3):
        for name, fn in (("model predict + predict_proba in memory", model_only),
                         ("hand-written read/predict/write", hand_written),
                         ("shipyard predict", shipyard_predict)):
            t = time.perf_counter()
            fn()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t)
    for name, seconds in best.items():
        print(f"{name:45s} {seconds:6.3f} s (best of 3, {rows} rows)")
    print(f"shipyard predict / hand-written: "
          f"{best['shipyard predict'] / best['hand-written read/predict/write']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--only", default="latency,load,batch")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="shipyard-bench-serving-"))
    os.environ["SHIPYARD_HOME"] = str(home)
    model, X = setup()
    only = set(args.only.split(","))
    if "latency" in only:
        latency(model, X)
    if "load" in only:
        load(X)
    if "batch" in only:
        batch(model, args.rows, home)


if __name__ == "__main__":
    main()
