"""Model serving: ``shipyard serve`` against ``mlflow models serve``, same model, one machine.

    python bench/serving.py                           # startup, latency, big, load (~4 min)
    python bench/serving.py --quick                   # shorter, a smoke run (~1.5 min)
    python bench/serving.py --only load --json out.json
    python bench/serving.py --only batch              # = bench/batch_predict.py

The model (:func:`fit_model`) is a 100-tree GradientBoostingClassifier on 20 float columns,
fitted by the same code with the same seed on each side:

* MLflow: in ``bench/.venvs/mlflow`` (``tracking.MLFLOW_VERSION``; created on first use),
  saved with ``mlflow.sklearn.save_model(model, DIR, input_example=...,
  skops_trusted_types=[...Tree])`` (MLflow's default skops format; MLflow enforces the
  signature it infers from the example, as Shipyard does) and served by ``mlflow models serve -m DIR
  --env-manager local --host 127.0.0.1 --port P`` (uvicorn, one worker, telemetry off).
  Requests: ``POST /invocations {"dataframe_split": {"columns": [...], "data": [[...]]}}``.
* Shipyard: registered in a temp ``SHIPYARD_HOME`` and served by ``python -m shipyard.cli
  serve bench-gbc/1 --port P`` (one worker, defaults: micro-batching 32 rows / 2 ms, the
  prediction log on). Requests: ``POST /predict {"instances": [[...]], "probabilities":
  false}`` — the same rows by position, and the same work as MLflow's (``predict`` only).

Workloads (each side's servers stay up through the latency, big and load workloads;
servers idle while the other side is measured):

* ``startup``: seconds from starting the command until ``GET /health`` answers 200
  (3 starts per side, alternating; 1 with ``--quick``);
* ``latency``: one row at a time over one keep-alive connection, in 15 interleaved blocks
  of 100 requests with the in-process ``model.predict`` on the row as a one-row DataFrame
  and as a plain array, so that machine noise hits every variant alike; overhead = HTTP
  p50 minus in-process p50, against each. The client (:class:`RawHTTP`) writes a prepared
  request to a TCP_NODELAY socket and reads the answer by its Content-Length, as wrk
  does: Python's http.client parses response headers with the email package and adds
  ~0.2 ms a request, which is the client's time, not the server's;
* ``big``: one request of 1,000 rows (same client), in 10 interleaved blocks of 5
  requests per variant (one request per block let each server go cold between requests:
  that measured server wake-ups, not the request);
* ``load``: single-row requests from an aiohttp client at concurrency 1, 8 and 64, each
  for ``--duration`` seconds after a one-second warm-up, the two sides alternating (order
  flipped each round), ``--rounds`` rounds; throughput counts 200 answers only.

Targets (issue 6): at c=64 at least 3x MLflow's throughput with a lower p99; at most
1 ms overhead at c=1; a 1,000-row request within 15 ms; startup within 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
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

FEATURES = [f"f{i:02d}" for i in range(20)]
MODEL_NAME = "bench-gbc"
BENCH_DIR = Path(__file__).resolve().parent
CONCURRENCY = (1, 8, 64)


def fit_model(rows: int = 5_000, seed: int = 0, kind: str = "gbc") -> tuple[Any, pd.DataFrame]:
    """The benchmarked model: a 100-tree GradientBoostingClassifier on 20 float columns
    (``kind="logistic"``: a LogisticRegression on the same data, a model that costs
    almost nothing, for the batch benchmark).

    Deterministic (same data, same seed), so the MLflow side fits the same model in its
    own interpreter."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    signal = X["f00"] + X["f01"] * X["f02"] + np.sin(3 * X["f03"]) - 0.5 * X["f04"] ** 2
    y = (signal + rng.normal(0, 0.5, rows) > 0).astype(int)
    if kind == "logistic":
        return LogisticRegression().fit(X, y), X
    model = GradientBoostingClassifier(n_estimators=100, random_state=seed).fit(X, y)
    return model, X


def _save_mlflow_model(folder: str) -> None:
    """Run by the MLflow venv's python: fit the model and save it where the server reads."""
    import mlflow.sklearn

    model, X = fit_model()
    # MLflow's default format (skops) asks to trust the trees' node storage by name
    mlflow.sklearn.save_model(model, folder, input_example=X.head(2),
                              skops_trusted_types=["sklearn.tree._tree.Tree"])


# -- the two servers -------------------------------------------------------------------------


class Side:
    """One side: how to start its server and what a request looks like."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], path: str,
                 body: Callable[[list[list[float]]], bytes], workdir: Path) -> None:
        self.name, self.cmd, self.env, self.path, self.body = name, cmd, env, path, body
        self.workdir = workdir

    def server(self, port: int) -> Any:
        from server import Server  # bench/server.py: process group, /health, stop

        return Server(self.name, [*self.cmd, "--port", str(port)], self.workdir, port)


def _sides(work: Path, mlflow_py: Path) -> dict[str, Side]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "MLFLOW_"))}
    home = work / "shipyard-home"
    shipyard_env = {**base, "SHIPYARD_HOME": str(home)}
    mlflow_env = {**base, "MLFLOW_DISABLE_TELEMETRY": "true"}
    mlflow_model = work / "mlflow-model"
    mlflow_cli = str(mlflow_py.parent / "mlflow")
    return {
        "mlflow": Side("mlflow", [mlflow_cli, "models", "serve", "-m", str(mlflow_model),
                                  "--env-manager", "local", "--host", "127.0.0.1"],
                       mlflow_env, "/invocations",
                       lambda rows: json.dumps({"dataframe_split": {
                           "columns": FEATURES, "data": rows}}).encode(),
                       work / "mlflow"),
        "shipyard": Side("shipyard", [sys.executable, "-m", "shipyard.cli", "serve",
                                      f"{MODEL_NAME}/1", "--host", "127.0.0.1"],
                         shipyard_env, "/predict",
                         lambda rows: json.dumps({"instances": rows,
                                                  "probabilities": False}).encode(),
                         work / "shipyard"),
    }


def _prepare(work: Path, mlflow_py: Path) -> Any:
    """Fit and save/register the model on both sides; the fitted model of this process."""
    print("fitting and saving the model on both sides ...", flush=True)
    proc = subprocess.Popen([str(mlflow_py), str(Path(__file__).resolve()), "--mlflow-save",
                             str(work / "mlflow-model")],
                            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    os.environ["SHIPYARD_HOME"] = str(work / "shipyard-home")
    import shipyard as sy

    model, X = fit_model()
    with sy.start_run("bench") as run:
        run.log_model(model, input_example=X.head(2), registered_model_name=MODEL_NAME)
    out, _ = proc.communicate(timeout=600)
    if proc.returncode:
        raise RuntimeError(f"saving the MLflow model failed:\n{out.decode()[-3000:]}")
    for side in ("mlflow", "shipyard"):
        (work / side).mkdir(exist_ok=True)
    return model


def _rows(n: int, seed: int = 2) -> list[list[float]]:
    return np.round(np.random.default_rng(seed).normal(size=(n, len(FEATURES))), 6).tolist()


# -- workloads -------------------------------------------------------------------------------


def startup(sides: dict[str, Side], repeats: int) -> dict[str, Any]:
    from server import free_port

    times: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(repeats):
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            server = sides[name].server(free_port())
            server.start(sides[name].env)
            try:
                times[name].append(server.wait_ready(timeout=180))
            finally:
                server.stop()
    return {name: {"seconds": t, "median_s": statistics.median(t)} for name, t in times.items()}


class RawHTTP:
    """A minimal keep-alive HTTP/1.1 client for one prepared POST, as a load generator
    such as wrk is: the request bytes are built once, the answer is read by its
    Content-Length (or chunked encoding) and its status checked; nothing else is parsed."""

    def __init__(self, port: int, path: str, body: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                        "Content-Type: application/json\r\nContent-Length: "
                        f"{len(body)}\r\n\r\n").encode() + body
        self.path = path
        self._buf = b""

    def post(self) -> bytes:
        self.sock.sendall(self.request)
        while (end := self._buf.find(b"\r\n\r\n")) < 0:
            self._read()
        head, self._buf = self._buf[:end].decode("latin-1"), self._buf[end + 4:]
        status = head.split(" ", 2)[1]
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in head.split("\r\n")[1:])}
        if "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._chunked()
        else:
            raise RuntimeError(f"{self.path}: an answer with neither a length nor chunks")
        if status != "200":
            raise RuntimeError(f"{self.path}: {status} {body[:300]!r}")
        return body

    def _read(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise RuntimeError(f"{self.path}: the server closed the connection")
        self._buf += data

    def _take(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._read()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _chunked(self) -> bytes:
        parts = []
        while True:
            while (end := self._buf.find(b"\r\n")) < 0:
                self._read()
            size = int(self._buf[:end].split(b";")[0], 16)
            self._buf = self._buf[end + 2:]
            parts.append(self._take(size))
            self._take(2)  # the CRLF after the chunk (after the last, empty one: the end)
            if size == 0:
                return b"".join(parts)

    def close(self) -> None:
        self.sock.close()


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"n": len(ms), "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean())}


def _interleaved(fns: dict[str, Callable[[], Any]], blocks: int,
                 per_block: int) -> dict[str, dict[str, float]]:
    for fn in fns.values():  # warm-up
        for _ in range(max(10, per_block // 5)):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(blocks):
        for name, fn in fns.items():
            for _ in range(per_block):
                started = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - started)
    return {name: _percentiles(t) for name, t in times.items()}


def latency(model: Any, sides: dict[str, Side], ports: dict[str, int], blocks: int,
            per_block: int) -> dict[str, Any]:
    row = _rows(1)
    frame = pd.DataFrame(row, columns=FEATURES)
    array = np.array(row)
    clients = {n: RawHTTP(p, sides[n].path, sides[n].body(row)) for n, p in ports.items()}
    fns: dict[str, Callable[[], Any]] = {
        "in-process model.predict": lambda: model.predict(frame),
        "in-process, array": lambda: _predict_array(model, array)}
    for name in sides:
        fns[name] = clients[name].post
    result = _interleaved(fns, blocks, per_block)
    base = result["in-process model.predict"]["p50_ms"]
    base_array = result["in-process, array"]["p50_ms"]
    for name in sides:
        result[name]["overhead_p50_ms"] = result[name]["p50_ms"] - base
        result[name]["overhead_vs_array_p50_ms"] = result[name]["p50_ms"] - base_array
    for client in clients.values():
        client.close()
    return result


def _predict_array(model: Any, array: np.ndarray) -> Any:
    """``model.predict`` on a plain array (what the Shipyard server hands this model),
    without scikit-learn's warning that the array has no column names."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return model.predict(array)


def big(model: Any, sides: dict[str, Side], ports: dict[str, int], blocks: int,
        per_block: int) -> dict[str, Any]:
    rows = _rows(1000, seed=3)
    frame = pd.DataFrame(rows, columns=FEATURES)
    clients = {n: RawHTTP(p, sides[n].path, sides[n].body(rows)) for n, p in ports.items()}
    answers = {n: json.loads(c.post()) for n, c in clients.items()}
    expected = model.predict(frame).tolist()
    agree = {n: list(a["predictions"]) == expected for n, a in answers.items()}
    fns: dict[str, Callable[[], Any]] = {"in-process model.predict": lambda: model.predict(frame)}
    for name in sides:
        fns[name] = clients[name].post
    result: dict[str, Any] = _interleaved(fns, blocks, per_block)
    result["same_predictions"] = agree
    for client in clients.values():
        client.close()
    return result


async def _load_run(url: str, body: bytes, conc: int, warmup: float,
                    duration: float) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    connector = aiohttp.TCPConnector(limit=conc)
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        measure_from, stop_at = start + warmup, start + warmup + duration

        async def worker() -> None:
            nonlocal errors
            while (now := time.perf_counter()) < stop_at:
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except aiohttp.ClientError:
                    status = -1
                done = time.perf_counter()
                if now >= measure_from and done <= stop_at:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        latencies.append(done - now)
                    else:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(conc)))
    figures: dict[str, Any] = {"rps": len(latencies) / duration, "errors": errors,
                               "statuses": {str(k): v for k, v in statuses.items()}}
    if latencies:
        figures.update(_percentiles(latencies))
    return figures


def load(sides: dict[str, Side], ports: dict[str, int], rounds: int,
         duration: float) -> dict[str, Any]:
    row = _rows(1, seed=4)
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {
        n: {c: [] for c in CONCURRENCY} for n in sides}
    for r in range(rounds):
        for conc in CONCURRENCY:
            order = list(sides) if (r + conc) % 2 == 0 else list(sides)[::-1]
            for name in order:
                url = f"http://127.0.0.1:{ports[name]}{sides[name].path}"
                figures = asyncio.run(_load_run(url, sides[name].body(row), conc, 1.0,
                                                duration))
                figures["load_avg"] = os.getloadavg()[0]
                runs[name][conc].append(figures)
                print(f"  round {r + 1} {name:8s} c={conc:<3d} {figures['rps']:8.0f} req/s  "
                      f"p50 {figures.get('p50_ms', float('nan')):7.2f} ms  p99 "
                      f"{figures.get('p99_ms', float('nan')):8.2f} ms  errors "
                      f"{figures['errors']}", flush=True)
    summary: dict[str, Any] = {}
    for name in sides:
        summary[name] = {}
        for conc in CONCURRENCY:
            done = runs[name][conc]
            summary[name][str(conc)] = {
                "rps": statistics.median(f["rps"] for f in done),
                "p50_ms": statistics.median(f.get("p50_ms", float("nan")) for f in done),
                "p99_ms": statistics.median(f.get("p99_ms", float("nan")) for f in done),
                "errors": sum(f["errors"] for f in done), "runs": done}
    return summary


# -- the run ---------------------------------------------------------------------------------


def _verdicts(result: dict[str, Any]) -> list[tuple[str, str, bool]]:
    rows: list[tuple[str, str, bool]] = []
    if "load" in result:
        ours, theirs = result["load"]["shipyard"]["64"], result["load"]["mlflow"]["64"]
        ratio = ours["rps"] / theirs["rps"] if theirs["rps"] else float("inf")
        rows.append(("c=64 throughput >= 3x MLflow", f"{ours['rps']:.0f} vs "
                     f"{theirs['rps']:.0f} req/s = {ratio:.1f}x", ratio >= 3))
        rows.append(("c=64 p99 below MLflow's", f"{ours['p99_ms']:.1f} vs "
                     f"{theirs['p99_ms']:.1f} ms", ours["p99_ms"] < theirs["p99_ms"]))
    if "latency" in result:
        lat = result["latency"]
        over = lat["shipyard"]["overhead_p50_ms"]
        strict = lat["shipyard"].get("overhead_vs_array_p50_ms", over)
        rows.append(("c=1 overhead over in-process predict <= 1 ms", f"{over:.2f} ms over "
                     f"the DataFrame predict, {strict:.2f} ms over the array predict "
                     f"(MLflow {lat['mlflow']['overhead_p50_ms']:.2f} / "
                     f"{lat['mlflow'].get('overhead_vs_array_p50_ms', 0):.2f} ms)",
                     max(over, strict) <= 1))
    if "big" in result:
        p50 = result["big"]["shipyard"]["p50_ms"]
        rows.append(("1,000-row request <= 15 ms", f"{p50:.1f} ms (MLflow "
                     f"{result['big']['mlflow']['p50_ms']:.1f} ms)", p50 <= 15))
    if "startup" in result:
        s = result["startup"]["shipyard"]["median_s"]
        rows.append(("startup <= 5 s", f"{s:.2f} s (MLflow "
                     f"{result['startup']['mlflow']['median_s']:.2f} s)", s <= 5))
    return rows


def _print_summary(result: dict[str, Any]) -> None:
    if "latency" in result:
        print("\none row at a time, one connection (p50 / p90 / p99 ms):")
        for name, f in result["latency"].items():
            print(f"  {name:26s} {f['p50_ms']:7.2f} {f['p90_ms']:7.2f} {f['p99_ms']:7.2f}")
    if "big" in result:
        print("one request of 1,000 rows (p50 / p90 ms):")
        for name, f in result["big"].items():
            if isinstance(f, dict) and "p50_ms" in f:
                print(f"  {name:26s} {f['p50_ms']:7.2f} {f['p90_ms']:7.2f}")
    if "load" in result:
        print("single-row requests under load (median of rounds):")
        for conc in CONCURRENCY:
            cells = [f"{name} {result['load'][name][str(conc)]['rps']:7.0f} req/s p99 "
                     f"{result['load'][name][str(conc)]['p99_ms']:7.1f} ms"
                     for name in result["load"]]
            print(f"  c={conc:<3d} " + "   ".join(cells))
    print("\ntargets:")
    for label, figure, ok in _verdicts(result):
        print(f"  {'PASS' if ok else 'MISS'}  {label}: {figure}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="startup,latency,big,load",
                    help="comma-separated: startup, latency, big, load, batch")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=None, help="load rounds (default 2)")
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds per load run (default 5)")
    ap.add_argument("--rows", type=int, default=1_000_000, help="batch: input rows")
    ap.add_argument("--json", type=Path, help="write every figure to this file")
    ap.add_argument("--mlflow-save", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.mlflow_save:
        _save_mlflow_model(args.mlflow_save)
        return 0
    only = set(args.only.split(","))
    result: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "command": " ".join(["python", "bench/serving.py",
                                                   *(argv or sys.argv[1:])]),
                              "load_avg_start": os.getloadavg()[0]}
    if "batch" in only:
        import batch_predict

        result["batch"] = batch_predict.run(args.rows, 3 if args.quick else 5, cli=False)
        batch_predict.report(result["batch"])
    serving = only & {"startup", "latency", "big", "load"}
    if serving:
        _serving(result, serving, args)
    result["load_avg_end"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.json}")
    return 0


def _serving(result: dict[str, Any], only: set[str], args: argparse.Namespace) -> None:
    from server import free_port
    from tracking import _machine, _versions, mlflow_python

    mlflow_py = mlflow_python()
    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-serving-"))
    model = _prepare(work, mlflow_py)
    sides = _sides(work, mlflow_py)
    result.update(machine=_machine(), versions={"mlflow": _versions(mlflow_py),
                                                "shipyard": _versions(Path(sys.executable))})
    if "startup" in only:
        print("startup ...", flush=True)
        result["startup"] = startup(sides, 1 if args.quick else 3)
    if not only & {"latency", "big", "load"}:
        _print_summary(result)
        return
    servers = {}
    try:
        for name, side in sides.items():
            servers[name] = side.server(free_port())
            servers[name].start(side.env)
            servers[name].wait_ready(timeout=180)
        ports = {n: s.port for n, s in servers.items()}
        if "latency" in only:
            print("latency at c=1 ...", flush=True)
            result["latency"] = latency(model, sides, ports, *((5, 50) if args.quick
                                                                else (15, 100)))
        if "big" in only:
            print("1,000-row requests ...", flush=True)
            result["big"] = big(model, sides, ports, *((4, 3) if args.quick else (10, 5)))
        if "load" in only:
            print("load ...", flush=True)
            result["load"] = load(sides, ports, args.rounds or (1 if args.quick else 2),
                                  args.duration or (2.0 if args.quick else 5.0))
    finally:
        for server in servers.values():
            server.stop()
    result["targets"] = [{"target": t, "figure": f, "pass": ok}
                         for t, f, ok in _verdicts(result)]
    _print_summary(result)


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH_DIR))
    sys.exit(main())
