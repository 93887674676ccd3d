"""Shipyard's server vs ``mlflow server``, driven by the real MLflow client, in one run.

    python bench/server.py                  # everything: 8 min on 2 cores at load 6, 14 at 10
    python bench/server.py --quick          # smaller sizes, a smoke run (~2.5 minutes)
    python bench/server.py --only search --json results.json --markdown

Two servers run side by side on free loopback ports, each over a fresh SQLite database and
artifact folder in its own temp dir, one uvicorn worker each:

* ``mlflow server --backend-store-uri sqlite:///<tmp>/mlflow.db --default-artifact-root
  <tmp>/artifacts --host 127.0.0.1 --port P --workers 1`` from ``bench/.venvs/mlflow``
  (MLflow :data:`tracking.MLFLOW_VERSION`; telemetry and the job runner off by default);
* ``python -m shipyard.cli server --host 127.0.0.1 --port P --workers 1`` with
  ``SHIPYARD_HOME``/``SHIPYARD_DB``/``SHIPYARD_ARTIFACTS`` in the temp dir.

``MlflowClient`` (``_server_worker_mlflow.py``, in ``bench/.venvs/mlflow``) then runs the
same workloads against both (``MLFLOW_TRACKING_URI``; Shipyard through its
``/api/2.0/mlflow`` routes): per-call ``log_metric``, ``log_batch`` of 1000 metrics, and
``search_runs`` over 5,000 runs. Shipyard's own remote SDK (``_server_worker_shipyard.py``,
``SHIPYARD_URI``) runs the same three against the Shipyard server as extra rows. Each
workload is a subprocess; the servers are stopped (their whole process group) whatever
happens. See ``docs/benchmarks.md`` for what each row measures and the latest figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import SEARCH_MAX, search_data

from tracking import (
    BENCH_DIR,
    HEADER,
    MLFLOW_VERSION,
    WORKER_TIMEOUT_S,
    BenchError,
    Row,
    _console,
    _fsync_ms,
    _load_avg,
    _machine,
    _probe,
    markdown_table,
    mlflow_python,
    say,
    shipyard_python,
    table_lines,
)

#: Seconds a server may take from its start to answering ``/health``.
READY_TIMEOUT_S = 180
#: Seconds a server's process group gets to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT_S = 15
#: The MLflow-compatible route the driver probes on the Shipyard server.
COMPAT_PROBE = "/api/2.0/mlflow/experiments/search"


@dataclass(frozen=True)
class Sizes:
    log_metric_mlflow: int  # per-call log_metric against mlflow server
    log_metric_shipyard: int  # the same against shipyard server
    sdk_log_metric: int  # Shipyard SDK, buffered
    batch_points: int  # log_batch, points per pass (1000 a call)
    search_runs: int
    search_repeats: int
    passes: int  # timed passes of the throughput workloads; the median counts


FULL = Sizes(log_metric_mlflow=500, log_metric_shipyard=2_000, sdk_log_metric=20_000,
             batch_points=50_000, search_runs=5_000, search_repeats=7, passes=3)
QUICK = Sizes(log_metric_mlflow=100, log_metric_shipyard=300, sdk_log_metric=5_000,
              batch_points=10_000, search_runs=500, search_repeats=3, passes=1)

WORKLOADS = ("log_metric", "log_batch", "search")


# -- servers -----------------------------------------------------------------------------------

@dataclass
class Server:
    """A server process (the leader of its own process group) and where it listens."""

    name: str
    cmd: list[str]
    workdir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    ready_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "server.log"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self, env: dict[str, str]) -> None:
        say(f"  starting {self.name} on {self.url} ...")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=self.workdir, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self._t0 = time.perf_counter()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Seconds from the start until ``GET /health`` answers 200; polls, bounded."""
        assert self.proc is not None
        deadline = self._t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode} before it "
                                 f"answered:\n{self.log_tail()}")
            if http_status("GET", self.url + "/health") == 200:
                self.ready_s = time.perf_counter() - self._t0
                say(f"  {self.name} ready after {self.ready_s:.1f} s")
                return self.ready_s
            time.sleep(0.1)
        raise BenchError(f"{self.name} did not answer /health within {timeout} s:\n"
                         f"{self.log_tail()}")

    def cpu_s(self) -> float | None:
        """CPU seconds (user + system) used so far by the processes of the server's group
        that are alive (Linux ``/proc``; None elsewhere)."""
        if self.proc is None:
            return None
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        total = 0
        try:
            entries = [p for p in os.listdir("/proc") if p.isdigit()]
        except OSError:
            return None
        for pid in entries:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == self.proc.pid:  # pgrp
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks

    def _group_alive(self) -> bool:
        """Whether a process of the server's group is left (start_new_session: the group's
        id is the leader's pid); reaps the leader, or the group never empties."""
        assert self.proc is not None
        self.proc.poll()
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self) -> None:
        """SIGTERM to the process group (``mlflow server`` runs uvicorn as a child), then
        SIGKILL to what is left after :data:`STOP_TIMEOUT_S`."""
        if self.proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5)):
            if not self._group_alive():
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while self._group_alive() and time.monotonic() < deadline:
                time.sleep(0.1)
        self.proc.wait(timeout=5)
        say(f"  stopped {self.name}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(method: str, url: str, body: dict[str, Any] | None = None,
                timeout: float = 5) -> int | None:
    """The HTTP status of one request, or None when nothing answered."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


# -- running the workers -----------------------------------------------------------------------

class Bench:
    """The two servers, their environments and the worker subprocesses."""

    def __init__(self, args: argparse.Namespace, sizes: Sizes, pythons: dict[str, Path],
                 root: Path) -> None:
        self.args = args
        self.sizes = sizes
        self.pythons = pythons
        self.root = root
        self.raw: dict[str, Any] = {}
        self.servers = {
            "mlflow": Server("mlflow server", [], self._dir("mlflow-server"), free_port()),
            "shipyard": Server("shipyard server", [], self._dir("shipyard-server"),
                               free_port()),
        }
        m, s = self.servers["mlflow"], self.servers["shipyard"]
        m.cmd = [str(pythons["mlflow"]), "-m", "mlflow", "server",
                 "--backend-store-uri", f"sqlite:///{m.workdir}/mlflow.db",
                 "--default-artifact-root", str(m.workdir / "artifacts"),
                 "--host", "127.0.0.1", "--port", str(m.port), "--workers", "1"]
        s.cmd = [str(pythons["shipyard"]), "-m", "shipyard.cli", "server",
                 "--host", "127.0.0.1", "--port", str(s.port), "--workers", "1"]

    def _dir(self, what: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{what}-", dir=self.root))

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SHIPYARD_", "MLFLOW_"))}
        if not self.args.mlflow_telemetry:
            env["MLFLOW_DISABLE_TELEMETRY"] = "true"
        return env

    def server_env(self, side: str) -> dict[str, str]:
        env = self.base_env()
        workdir = self.servers[side].workdir
        if side == "mlflow":
            if not self.args.mlflow_jobs:
                env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        else:
            env.update(SHIPYARD_HOME=str(workdir),
                       SHIPYARD_DB=f"sqlite:///{workdir}/shipyard.db",
                       SHIPYARD_ARTIFACTS=str(workdir / "artifacts"))
        return env

    def client_env(self, client: str, target: str, workdir: Path) -> dict[str, str]:
        env = self.base_env()
        url = self.servers[target].url
        if client == "mlflow":
            # A failing request fails the workload at once instead of backing off for minutes.
            env.update(MLFLOW_TRACKING_URI=url, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
        else:
            env.update(SHIPYARD_URI=url, SHIPYARD_HOME=str(workdir), SHIPYARD_SYNC_LOGGING="0")
        return env

    def start_servers(self) -> None:
        """One after the other, so that neither start-up slows the other's."""
        for side, server in self.servers.items():
            server.start(self.server_env(side))
            server.wait_ready()

    def compat_status(self) -> int | None:
        return http_status("POST", self.servers["shipyard"].url + COMPAT_PROBE,
                           {"max_results": 1})

    def worker(self, client: str, target: str, bench: str, n: int,
               repeats: int) -> dict[str, Any]:
        """One workload: ``client`` (``mlflow``: MlflowClient, ``shipyard``: the SDK) against
        ``target``'s server, in a subprocess of the client's interpreter."""
        label = f"{'MlflowClient' if client == 'mlflow' else 'Shipyard SDK'} -> {target} " \
                f"server: {bench}"
        say(f"  {label}: n={n:,} x {repeats} ...")
        workdir = self._dir(f"{client}-{target}-{bench}")
        out = workdir / "result.json"
        cmd = [str(self.pythons[client]), str(BENCH_DIR / f"_server_worker_{client}.py"), bench,
               "--n", str(n), "--repeats", str(repeats), "--workdir", str(workdir),
               "--out", str(out)]
        server = self.servers[target]
        cpu0, t0 = server.cpu_s(), time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=workdir, env=self.client_env(client, target, workdir),
                                  capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{label} took longer than {WORKER_TIMEOUT_S} s") from exc
        if proc.returncode or not out.exists():
            raise BenchError(f"{label} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
                             f"\n--- {target} server log:\n{self.servers[target].log_tail(2000)}")
        result: dict[str, Any] = json.loads(out.read_text())
        result["load_avg_1m"] = _load_avg()
        cpu1 = server.cpu_s()
        if cpu0 is not None and cpu1 is not None:
            # the whole worker: setup and checks included, not only the timed part
            result["server_cpu_s"] = round(cpu1 - cpu0, 2)
        result["worker_wall_s"] = round(time.perf_counter() - t0, 2)
        say(f"  {label}: done in {time.perf_counter() - t0:.1f} s")
        self.raw[label] = result
        return result


# -- the benchmarks ----------------------------------------------------------------------------

def _check_stored(row: Row, who: str, result: dict[str, Any]) -> None:
    if result.get("stored") != result["n"]:
        row.notes.append(f"{who} stored {result.get('stored')!r} of {result['n']} points")


def expected_search(n_runs: int) -> tuple[int, list[float]]:
    """(rows, top 5 m1) that the search must return over :func:`search_data`."""
    hits = sorted((m["m1"] for _, m in search_data(n_runs) if m["m0"] > 0.5), reverse=True)
    return min(len(hits), SEARCH_MAX), [round(x, 9) for x in hits[:5]]


def _check_search(row: Row, who: str, result: dict[str, Any], n_runs: int) -> None:
    rows, top = expected_search(n_runs)
    if result["rows"] != rows or result["top_m1"] != top:
        row.notes.append(f"{who} returned {result['rows']} rows, top m1 {result['top_m1']}; "
                         f"expected {rows} rows, {top}")


def run_workloads(b: Bench, names: list[str], compat: bool,
                  failed: dict[str, str]) -> list[Row]:
    """The MLflow client against each server, then the SDK, one workload at a time."""
    z = b.sizes
    rows: list[Row] = []
    sdk_rows: list[Row] = []
    plans = {
        "log_metric": (z.log_metric_mlflow, z.log_metric_shipyard, z.sdk_log_metric, z.passes),
        "log_batch": (z.batch_points, z.batch_points, z.batch_points, z.passes),
        "search": (z.search_runs, z.search_runs, z.search_runs, z.search_repeats),
    }
    for i, name in enumerate(names, 1):
        say(f"[{i}/{len(names)}] {name}")
        n_m, n_s, n_sdk, repeats = plans[name]
        try:
            m = b.worker("mlflow", "mlflow", name, n_m, repeats)
        except BenchError as exc:
            failed[name] = str(exc)
            say(f"  FAILED: {exc}")
            continue
        s: dict[str, Any] | None = None
        if compat:
            try:
                s = b.worker("mlflow", "shipyard", name, n_s, repeats)
            except BenchError as exc:
                failed[f"{name} (MlflowClient -> shipyard)"] = str(exc)
                say(f"  FAILED: {exc}")
        try:
            sdk: dict[str, Any] | None = b.worker("shipyard", "shipyard", name, n_sdk, repeats)
        except BenchError as exc:
            failed[f"{name} (Shipyard SDK)"] = str(exc)
            say(f"  FAILED: {exc}")
            sdk = None
        rows += _client_rows(name, m, s)
        sdk_rows += _sdk_rows(name, m, sdk)
    return rows + sdk_rows


def _client_rows(name: str, m: dict[str, Any], s: dict[str, Any] | None) -> list[Row]:
    if s is None:
        return []
    if name == "log_metric":
        row = Row("1", "MlflowClient.log_metric, per call", "calls/s",
                  m["per_s"], s["per_s"], True, 10)
    elif name == "log_batch":
        row = Row("2", "MlflowClient.log_batch, 1000 a call", "points/s",
                  m["per_s"], s["per_s"], True)
    else:
        row = Row("3", f"MlflowClient.search_runs, {m['n_runs']:,} runs", "s",
                  m["median_s"], s["median_s"], False, 10)
        _check_search(row, "mlflow server", m, m["n_runs"])
        _check_search(row, "shipyard server", s, s["n_runs"])
        return [row]
    _check_stored(row, "mlflow server", m)
    _check_stored(row, "shipyard server", s)
    return [row]


def _sdk_rows(name: str, m: dict[str, Any], sdk: dict[str, Any] | None) -> list[Row]:
    """Shipyard's SDK against its server, next to the MLflow client against MLflow's."""
    if sdk is None:
        return []
    if name == "log_metric":
        row = Row("4", "SDK run.log_metric, buffered + flush", "calls/s",
                  m["per_s"], sdk["per_s"], True)
    elif name == "log_batch":
        row = Row("4b", "SDK Client().log_batch, 1000 a call", "points/s",
                  m["per_s"], sdk["per_s"], True)
    else:
        row = Row("4c", f"SDK sy.search_runs, {sdk['n_runs']:,} runs", "s",
                  m["median_s"], sdk["median_s"], False)
        _check_search(row, "Shipyard SDK", sdk, sdk["n_runs"])
        return [row]
    _check_stored(row, "Shipyard SDK", sdk)
    return [row]


# -- output ------------------------------------------------------------------------------------

def print_table(rows: list[Row]) -> None:
    """As :func:`tracking.print_table`, with this benchmark's title."""
    lines = table_lines(rows)
    if _console is not None:
        from rich.table import Table

        table = Table(title="MLflow server vs Shipyard server (MLflow client; 4*: Shipyard SDK)")
        for i, name in enumerate(HEADER):
            table.add_column(name, justify="right" if 3 <= i <= 5 else "left")
        for line in lines:
            table.add_row(*line)
        _console.print(table)
    else:
        widths = [max(len(x) for x in col) for col in zip(HEADER, *lines, strict=True)]
        for line in [HEADER, *lines]:
            print("  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)))
    for r in rows:
        for note in r.notes:
            say(f"  ! {r.key}: {note}")


def _versions(python: Path) -> dict[str, Any]:
    names = ["mlflow", "shipyard-mlops", "sqlalchemy", "uvicorn", "fastapi", "starlette",
             "requests", "httpx"]
    code = ("import importlib.metadata as m, json, platform\n"
            "def v(name):\n"
            "    try:\n        return m.version(name)\n"
            "    except m.PackageNotFoundError:\n        return None\n"
            f"print(json.dumps({{'python': platform.python_version(), "
            f"**{{n: v(n) for n in {names!r}}}}}))")
    out = _probe(python, code)
    return json.loads(out) if out else {}


# -- main --------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--only", action="append", metavar="NAME",
                    help=f"run only these (repeat or comma-separate): {', '.join(WORKLOADS)}")
    ap.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    ap.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    ap.add_argument("--shipyard-python", metavar="PATH",
                    help="interpreter with shipyard installed (default: as bench/tracking.py)")
    ap.add_argument("--mlflow-telemetry", action="store_true",
                    help="leave MLflow's usage telemetry on (MLflow's default; off here)")
    ap.add_argument("--mlflow-jobs", action="store_true",
                    help="leave mlflow server's job runner on (MLflow's default; off here: "
                         "its 7 idle huey consumers take CPU from the server)")
    ap.add_argument("--keep", action="store_true", help="keep the temp stores and server logs")
    args = ap.parse_args(argv)
    names = [n.strip() for item in args.only or [] for n in item.split(",") if n.strip()]
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        ap.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    args.names = [name for name in WORKLOADS if name in names] or list(WORKLOADS)
    return args


def _raise_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # so that the finally blocks stop the servers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    t_start = time.perf_counter()
    say("Preparing interpreters ...")
    pythons = {"mlflow": mlflow_python(), "shipyard": shipyard_python(args.shipyard_python)}
    versions = {side: _versions(py) for side, py in pythons.items()}
    if versions["mlflow"].get("mlflow") != MLFLOW_VERSION:
        say(f"  note: MLflow {versions['mlflow'].get('mlflow')}, not {MLFLOW_VERSION}")
    say(f"  MLflow {versions['mlflow'].get('mlflow')} ({pythons['mlflow']}); "
        f"Shipyard {versions['shipyard'].get('shipyard-mlops')} ({pythons['shipyard']})")
    load = _load_avg()
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-server-"))
    fsync_before = _fsync_ms(root)
    say(f"  load average {load}; disk write + fsync {fsync_before} ms (median)")
    if load is not None and load > 0.5:
        say("  note: other processes use the CPU, so the figures will be noisy")
    bench = Bench(args, sizes, pythons, root)
    rows: list[Row] = []
    failed: dict[str, str] = {}
    compat_status: int | None = None
    fsync_after = None
    try:
        with ExitStack() as stack:
            for server in bench.servers.values():
                stack.callback(server.stop)
            try:
                bench.start_servers()
            except BenchError as exc:
                failed["servers"] = str(exc)
                say(f"  FAILED: {exc}")
            else:
                compat_status = bench.compat_status()
                compat = compat_status == 200
                if not compat:
                    failed["mlflow-compat"] = (
                        f"POST {COMPAT_PROBE} on the Shipyard server answered {compat_status}: "
                        "no MLflow-compatible API, so only the Shipyard SDK rows are measured")
                    say(f"  note: {failed['mlflow-compat']}")
                rows = run_workloads(bench, args.names, compat, failed)
                m, s = bench.servers["mlflow"], bench.servers["shipyard"]
                if m.ready_s is not None and s.ready_s is not None:
                    rows.append(Row("5", "server start until /health answers", "s",
                                    m.ready_s, s.ready_s, False))
        fsync_after = _fsync_ms(root)
    finally:
        if args.keep:
            say(f"Stores and server logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - t_start
    if rows:
        print_table(rows)
        if args.markdown:
            print(markdown_table(rows), flush=True)
    for name, message in failed.items():
        say(f"FAILED {name}: {message.splitlines()[0] if message else ''}")
    if args.quick:
        say(f"quick sizes (e.g. {sizes.search_runs} runs to search): the verdicts are for the "
            "full run only")
    say(f"{'quick' if args.quick else 'full'} run, {elapsed:.0f} s in all")
    say(f"  load average {_load_avg()} at the end; disk write + fsync {fsync_after} ms")
    if args.json:
        report = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "quick": args.quick, "elapsed_s": elapsed, "sizes": asdict(sizes),
            "machine": _machine(), "versions": versions,
            "mlflow_telemetry": args.mlflow_telemetry, "mlflow_jobs": args.mlflow_jobs,
            "servers": {side: {"cmd": srv.cmd, "ready_s": srv.ready_s}
                        for side, srv in bench.servers.items()},
            "compat_probe_status": compat_status,
            "load_avg_1m": {"start": load, "end": _load_avg()},
            "fsync_ms": {"start": fsync_before, "end": fsync_after},
            "rows": [{**asdict(r), "speedup": r.speedup, "verdict": r.verdict} for r in rows],
            "failed": failed, "raw": bench.raw,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        say(f"Saved {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
