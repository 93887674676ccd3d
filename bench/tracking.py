"""Shipyard vs MLflow experiment tracking, on one machine, in one run.

    python bench/tracking.py                  # everything: ~3 min on 2 quiet cores, ~6 busy
    python bench/tracking.py --quick          # smaller sizes, a smoke run (< 2 minutes)
    python bench/tracking.py --only search --json results.json

Each side runs in a subprocess of its own interpreter against a fresh SQLite database file
and a local artifact folder in a temp dir, one per workload:

* MLflow: ``bench/.venvs/mlflow``, created on first use with ``pip install mlflow==``
  :data:`MLFLOW_VERSION`; ``mlflow.set_tracking_uri("sqlite:///<tmp>/mlflow.db")``.
* Shipyard: this interpreter when it imports ``shipyard`` from this repository (a dev
  install), else ``bench/.venvs/shipyard``, created on first use with ``pip install -e <repo>``;
  ``SHIPYARD_HOME``/``SHIPYARD_DB``/``SHIPYARD_ARTIFACTS`` point into the temp dir.

The workloads are in ``_worker_mlflow.py`` and ``_worker_shipyard.py``; see
``docs/benchmarks.md`` for what each one measures and the latest figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: The MLflow release these figures were taken with.
MLFLOW_VERSION = "3.17.2"

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENVS = BENCH_DIR / ".venvs"
WORKER_TIMEOUT_S = 900


@dataclass(frozen=True)
class Sizes:
    log_metric_mlflow: int
    log_metric_shipyard: int
    durable_shipyard: int
    bulk_mlflow: int
    bulk_shipyard: int
    runs_mlflow: int
    runs_shipyard: int
    search_runs: int
    search_repeats: int
    cold_repeats: int
    passes: int  # timed passes of the throughput workloads; the median counts


FULL = Sizes(log_metric_mlflow=1_000, log_metric_shipyard=100_000, durable_shipyard=10_000,
             bulk_mlflow=100_000, bulk_shipyard=100_000, runs_mlflow=200, runs_shipyard=1_000,
             search_runs=5_000, search_repeats=7, cold_repeats=3, passes=3)
QUICK = Sizes(log_metric_mlflow=100, log_metric_shipyard=20_000, durable_shipyard=2_000,
              bulk_mlflow=10_000, bulk_shipyard=20_000, runs_mlflow=20, runs_shipyard=100,
              search_runs=500, search_repeats=3, cold_repeats=1, passes=1)


@dataclass
class Row:
    """One line of the results table."""

    key: str
    label: str
    unit: str
    mlflow: float
    shipyard: float
    higher_is_better: bool
    target: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        if self.higher_is_better:
            return self.shipyard / self.mlflow
        return self.mlflow / self.shipyard

    @property
    def verdict(self) -> str:
        if self.notes:
            return "CHECK"
        if self.target is None:
            return "-"
        return "PASS" if self.speedup >= self.target else "MISS"


class BenchError(RuntimeError):
    pass


# -- output ------------------------------------------------------------------------------------

try:
    from rich.console import Console
    from rich.table import Table

    _console: Any = Console(highlight=False)
    if not _console.is_terminal:
        _console = Console(highlight=False, width=120)
except ImportError:  # plain output without rich
    _console = None


def say(text: str) -> None:
    if _console is not None:
        _console.print(text, markup=False)
    else:
        print(text, flush=True)


def fmt_value(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.3f}"
    if unit.startswith("ms"):
        return f"{value:.2f}"
    return f"{value:,.0f}"


HEADER = ["#", "benchmark", "unit", "MLflow", "Shipyard", "speed-up", "target", "result"]


def table_lines(rows: list[Row]) -> list[list[str]]:
    """The table's cells: speed-up is Shipyard/MLflow for rates, MLflow/Shipyard for times."""
    return [[r.key, r.label, r.unit, fmt_value(r.mlflow, r.unit), fmt_value(r.shipyard, r.unit),
             f"{r.speedup:,.1f}x", f">= {r.target:g}x" if r.target else "-", r.verdict]
            for r in rows]


def print_table(rows: list[Row]) -> None:
    header, lines = HEADER, table_lines(rows)
    if _console is not None:
        table = Table(title="Shipyard vs MLflow: tracking")
        for i, name in enumerate(header):
            table.add_column(name, justify="right" if 3 <= i <= 5 else "left")
        for line in lines:
            table.add_row(*line)
        _console.print(table)
    else:
        widths = [max(len(x) for x in col) for col in zip(header, *lines, strict=True)]
        for line in [header, *lines]:
            print("  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)))
    for r in rows:
        for note in r.notes:
            say(f"  ! {r.key}: {note}")


def markdown_table(rows: list[Row]) -> str:
    lines = [HEADER, ["---"] * len(HEADER), *table_lines(rows)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


# -- interpreters ------------------------------------------------------------------------------

def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _pip_install(python: Path, *requirements: str) -> None:
    say(f"  pip install {' '.join(requirements)} into {python.parent.parent} ...")
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements],
                          capture_output=True, text=True)
    if proc.returncode:
        raise BenchError(f"pip install {' '.join(requirements)} failed:\n{proc.stderr[-3000:]}")


def _make_venv(venv: Path) -> Path:
    say(f"  creating {venv.relative_to(REPO)} ...")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    return _venv_python(venv)


def _probe(python: Path, code: str) -> str | None:
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def mlflow_python() -> Path:
    """``bench/.venvs/mlflow``'s python with mlflow==MLFLOW_VERSION, created when missing."""
    venv = VENVS / "mlflow"
    python = _venv_python(venv)
    if not python.exists():
        _make_venv(venv)
    version = _probe(python, "import importlib.metadata as m; print(m.version('mlflow'))")
    if version != MLFLOW_VERSION:
        _pip_install(python, f"mlflow=={MLFLOW_VERSION}")
    return python


def shipyard_python(explicit: str | None) -> Path:
    """``--shipyard-python``, else this interpreter if it imports this repo's ``shipyard``,
    else ``bench/.venvs/shipyard`` with ``pip install -e <repo>``, created when missing."""
    if explicit:
        return Path(explicit)
    spec = importlib.util.find_spec("shipyard")
    if spec is not None and spec.origin and Path(spec.origin).resolve().is_relative_to(REPO):
        return Path(sys.executable)
    venv = VENVS / "shipyard"
    python = _venv_python(venv)
    if not python.exists():
        _make_venv(venv)
    origin = _probe(python, "import shipyard; print(shipyard.__file__)")
    if origin is None or not Path(origin).resolve().is_relative_to(REPO):
        _pip_install(python, "-e", str(REPO))
    return python


# -- running the workers -----------------------------------------------------------------------

class Runner:
    """Starts workers in fresh temp dirs; results are cached by their arguments."""

    def __init__(self, sizes: Sizes, pythons: dict[str, Path], root: Path,
                 mlflow_telemetry: bool) -> None:
        self.sizes = sizes
        self.pythons = pythons
        self.root = root
        self.mlflow_telemetry = mlflow_telemetry
        self._cache: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.raw: dict[str, Any] = {}

    def env(self, side: str, workdir: Path, *, sync: bool = False) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SHIPYARD_", "MLFLOW_"))}
        if side == "shipyard":
            env.update(SHIPYARD_HOME=str(workdir), SHIPYARD_DB=f"sqlite:///{workdir}/shipyard.db",
                       SHIPYARD_ARTIFACTS=str(workdir / "artifacts"),
                       SHIPYARD_SYNC_LOGGING="1" if sync else "0")
        elif not self.mlflow_telemetry:
            env["MLFLOW_DISABLE_TELEMETRY"] = "true"
        return env

    def workdir(self, side: str, what: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{side}-{what}-", dir=self.root))

    def worker(self, side: str, bench: str, n: int, *, variant: str = "",
               repeats: int | None = None, sync: bool = False) -> dict[str, Any]:
        repeats = repeats or self.sizes.passes
        key = (side, bench, n, variant, repeats, sync)
        if key in self._cache:
            return self._cache[key]
        label = " ".join(x for x in (side, bench, variant, "durable" if sync else "") if x)
        say(f"  {label}: n={n:,} x {repeats} ...")
        workdir = self.workdir(side, bench)
        out = workdir / "result.json"
        cmd = [str(self.pythons[side]), str(BENCH_DIR / f"_worker_{side}.py"), bench,
               "--n", str(n), "--repeats", str(repeats), "--variant", variant,
               "--workdir", str(workdir), "--out", str(out)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=workdir, env=self.env(side, workdir, sync=sync),
                                  capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{label} took longer than {WORKER_TIMEOUT_S} s") from exc
        if proc.returncode or not out.exists():
            raise BenchError(f"{label} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        result = json.loads(out.read_text())
        result["load_avg_1m"] = _load_avg()
        say(f"  {label}: done in {time.perf_counter() - t0:.1f} s")
        self._cache[key] = result
        self.raw[label] = result
        return result

    def cold_start(self, side: str, repeats: int) -> tuple[float, list[float]]:
        """Wall time of whole processes: the first one creates the database."""
        workdir = self.workdir(side, "cold")
        code = COLD_START[side].format(uri=f"sqlite:///{workdir}/mlflow.db")
        env = self.env(side, workdir)

        def once() -> float:
            t0 = time.perf_counter()
            proc = subprocess.run([str(self.pythons[side]), "-c", code], cwd=workdir, env=env,
                                  capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
            seconds = time.perf_counter() - t0
            if proc.returncode:
                raise BenchError(f"{side} cold start failed:\n{proc.stderr[-4000:]}")
            return seconds

        say(f"  {side} cold start: 1 fresh + {repeats} warm processes ...")
        first = once()
        warm = [once() for _ in range(repeats)]
        self.raw[f"{side} cold_start"] = {"fresh_db_s": first, "existing_db_s": warm}
        return first, warm


COLD_START = {
    "mlflow": "import mlflow\nmlflow.set_tracking_uri({uri!r})\n"
              "with mlflow.start_run():\n    mlflow.log_metric('x', 1)\n",
    "shipyard": "import shipyard as sy\nwith sy.start_run(experiment='e') as r:\n"
                "    r.log_metric('x', 1)\n",
}


# -- the benchmarks ----------------------------------------------------------------------------

def _check_stored(row: Row, side: str, result: dict[str, Any]) -> None:
    if result.get("stored") != result["n"]:
        row.notes.append(f"{side} stored {result.get('stored')} of {result['n']} records")


def bench_log_metric(r: Runner) -> list[Row]:
    m = r.worker("mlflow", "log_metric", r.sizes.log_metric_mlflow)
    s = r.worker("shipyard", "log_metric", r.sizes.log_metric_shipyard)
    row = Row("1", "log_metric, buffered + flush", "calls/s",
              m["per_s"], s["per_s"], True, 100)
    _check_stored(row, "mlflow", m)
    _check_stored(row, "shipyard", s)
    return [row]


def bench_durable(r: Runner) -> list[Row]:
    m = r.worker("mlflow", "log_metric", r.sizes.log_metric_mlflow)
    s = r.worker("shipyard", "log_metric", r.sizes.durable_shipyard, sync=True)
    row = Row("2", "log_metric, durable (sync)", "calls/s",
              m["per_s"], s["per_s"], True, 20)
    _check_stored(row, "shipyard", s)
    return [row]


def bench_bulk(r: Runner) -> list[Row]:
    m = r.worker("mlflow", "bulk", r.sizes.bulk_mlflow)
    client = r.worker("shipyard", "bulk", r.sizes.bulk_shipyard, variant="client")
    fluent = r.worker("shipyard", "bulk", r.sizes.bulk_shipyard, variant="fluent")
    rows = [
        Row("3", "log_batch, 1000 points a call", "points/s",
            m["per_s"], client["per_s"], True, 20),
        Row("3b", "bulk: run.log_metrics, buffered", "points/s",
            m["per_s"], fluent["per_s"], True),
    ]
    _check_stored(rows[0], "mlflow", m)
    _check_stored(rows[0], "shipyard", client)
    _check_stored(rows[1], "shipyard", fluent)
    return rows


def bench_run_create(r: Runner) -> list[Row]:
    m = r.worker("mlflow", "run_create", r.sizes.runs_mlflow)
    s = r.worker("shipyard", "run_create", r.sizes.runs_shipyard)
    d = r.worker("shipyard", "run_create", r.sizes.runs_shipyard, sync=True)
    rows = [
        Row("4", "run: 5 params + 5 metrics", "ms/run",
            m["ms_per_run"], s["ms_per_run"], False, 30),
        Row("4b", "run: 5 + 5, durable (sync)", "ms/run",
            m["ms_per_run"], d["ms_per_run"], False),
    ]
    for row, side, res in ((rows[0], "mlflow", m), (rows[0], "shipyard", s),
                           (rows[1], "shipyard", d)):
        _check_stored(row, side, res)
    return rows


def bench_search(r: Runner) -> list[Row]:
    n, reps = r.sizes.search_runs, r.sizes.search_repeats
    m = r.worker("mlflow", "search", n, repeats=reps)
    s = r.worker("shipyard", "search", n, repeats=reps)
    label = f"search {n:,} runs, top 100"
    rows = [
        Row("5", f"{label} (DataFrame)", "s", m["pandas"]["median_s"],
            s["pandas"]["median_s"], False, 20),
        Row("5b", f"{label} (list)", "s", m["list"]["median_s"],
            s["list"]["median_s"], False),
    ]
    if m["top_m1"] != s["top_m1"] or m["rows"] != s["rows"]:
        rows[0].notes.append(f"results differ: mlflow {m['rows']} rows {m['top_m1']}, "
                             f"shipyard {s['rows']} rows {s['top_m1']}")
    return rows


def bench_cold_start(r: Runner) -> list[Row]:
    reps = r.sizes.cold_repeats
    m_first, m_warm = r.cold_start("mlflow", reps)
    s_first, s_warm = r.cold_start("shipyard", reps)
    return [
        Row("6", "cold start, existing DB", "s",
            statistics.median(m_warm), statistics.median(s_warm), False, 10),
        Row("6b", "cold start, fresh DB", "s",
            m_first, s_first, False),
    ]


BENCHMARKS: dict[str, Callable[[Runner], list[Row]]] = {
    "log_metric": bench_log_metric,
    "durable": bench_durable,
    "bulk": bench_bulk,
    "run_create": bench_run_create,
    "search": bench_search,
    "cold_start": bench_cold_start,
}


# -- main --------------------------------------------------------------------------------------

def _versions(python: Path) -> dict[str, Any]:
    code = ("import importlib.metadata as m, json, platform\n"
            "def v(name):\n"
            "    try:\n        return m.version(name)\n"
            "    except m.PackageNotFoundError:\n        return None\n"
            "print(json.dumps({'python': platform.python_version(), 'mlflow': v('mlflow'),"
            " 'shipyard': v('shipyard-mlops'), 'sqlalchemy': v('sqlalchemy')}))")
    out = _probe(python, code)
    return json.loads(out) if out else {}


def _load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _fsync_ms(folder: Path, count: int = 50) -> float:
    """Median latency of a 4 KiB write + fsync: MLflow's SQLite commits wait for fsync
    (rollback journal, synchronous=FULL), Shipyard's do not (WAL, synchronous=NORMAL), so
    a busy disk moves the MLflow figures much more than Shipyard's."""
    path = folder / "fsync.probe"
    times = []
    with open(path, "wb") as fh:
        for _ in range(count):
            t0 = time.perf_counter()
            fh.write(b"x" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
            times.append((time.perf_counter() - t0) * 1000)
    path.unlink()
    return round(statistics.median(times), 3)


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    mem_gib = None
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                   if line.startswith("model name"))
        meminfo = Path("/proc/meminfo").read_text().split()
        mem_gib = round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib,
            "os": platform.platform()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--only", action="append", metavar="NAME",
                    help=f"run only these (repeat or comma-separate): {', '.join(BENCHMARKS)}")
    ap.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    ap.add_argument("--shipyard-python", metavar="PATH",
                    help="interpreter with shipyard installed (default: see module docstring)")
    ap.add_argument("--mlflow-telemetry", action="store_true",
                    help="leave MLflow's usage telemetry on (MLflow's default; off here, which "
                         "makes MLflow faster)")
    ap.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    ap.add_argument("--keep", action="store_true", help="keep the temp databases")
    args = ap.parse_args(argv)
    names = [n.strip() for item in args.only or [] for n in item.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    args.names = [name for name in BENCHMARKS if name in names] or list(BENCHMARKS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    t_start = time.perf_counter()
    say("Preparing interpreters ...")
    pythons = {"mlflow": mlflow_python(), "shipyard": shipyard_python(args.shipyard_python)}
    versions = {side: _versions(py) for side, py in pythons.items()}
    say(f"  MLflow {versions['mlflow'].get('mlflow')} ({pythons['mlflow']}); "
        f"Shipyard {versions['shipyard'].get('shipyard')} ({pythons['shipyard']})")
    load = _load_avg()
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-"))
    fsync_before = _fsync_ms(root)
    say(f"  load average {load}; disk write + fsync {fsync_before} ms (median)")
    if load is not None and load > 0.5:
        say("  note: other processes use the CPU, so the figures will be noisy")
    runner = Runner(sizes, pythons, root, args.mlflow_telemetry)
    rows: list[Row] = []
    failed: dict[str, str] = {}
    try:
        for i, name in enumerate(args.names, 1):
            say(f"[{i}/{len(args.names)}] {name}")
            try:
                rows += BENCHMARKS[name](runner)
            except BenchError as exc:
                failed[name] = str(exc)
                say(f"  FAILED: {exc}")
        fsync_after = _fsync_ms(root)
    finally:
        if args.keep:
            say(f"Databases kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - t_start
    print_table(rows)
    if args.markdown:
        print(markdown_table(rows), flush=True)
    if args.quick:
        say("quick sizes (e.g. 500 runs to search): the verdicts are for the full run only")
    say(f"{'quick' if args.quick else 'full'} run, {elapsed:.0f} s in all")
    say(f"  load average {_load_avg()} at the end; disk write + fsync {fsync_after} ms")
    if args.json:
        report = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": args.quick, "elapsed_s": elapsed, "sizes": asdict(sizes),
            "machine": _machine(), "versions": versions,
            "mlflow_telemetry": args.mlflow_telemetry,
            "load_avg_1m": {"start": load, "end": _load_avg()},
            "fsync_ms": {"start": fsync_before, "end": fsync_after},
            "rows": [{**asdict(r), "speedup": r.speedup, "verdict": r.verdict} for r in rows],
            "failed": failed, "raw": runner.raw,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        say(f"Saved {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
