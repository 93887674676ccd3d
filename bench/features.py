"""Shipyard vs Feast feature store, on one machine, in one run.

    python bench/features.py                  # 1M x 100k: ~1.5 min on 2 quiet cores, ~3 busy
    python bench/features.py --quick          # 100k x 10k, fewer calls: a smoke run (< 2 min)
    python bench/features.py --big --only historical   # training data at 10M x 1M (~1 min)
    python bench/features.py --only online,apply --json out.json --markdown

The same generated data for both sides (``_features_worker_common.py``: ``customer_stats``,
100,000 customers, 10 float features over 90 days, 1% tied event times broken by a created
timestamp, entity rows with ~9% unknown ids, TTL 30 days) is written once to Parquet in a
temp dir. Each workload runs in a subprocess of its side's interpreter, against its own
temp dir, and reports wall time, CPU seconds (``getrusage``: all threads of the worker) and
peak RSS (``ru_maxrss`` of the worker):

1. historical retrieval: Feast's DuckDB offline store and its file (dask) one,
   ``get_historical_features(...).to_arrow()``, vs ``historical_features(...,
   output="arrow")``; the results are compared (row count, per-feature sums, a sample);
2. materialize every feature row (default 1M) into SQLite and into Redis: Feast's
   ``materialize(start, end)`` (from its DuckDB offline store) vs Shipyard's
   ``materialize``;
3. online reads right after, in the same worker: 1 key x 10 features and 100 keys x 10
   features, p50/p99 after a warm-up: ``get_online_features(...).to_dict()`` vs
   ``store.read(view, features, keys)``;
4. ``apply`` of a small repository in a fresh process: ``feast apply`` (a one-view repo)
   vs ``shipyard features apply`` (``tests/features/example_repo``, 5 definitions).

* Feast: ``bench/.venvs/feast``, created on first use with ``pip install
  "feast[duckdb,redis]=="`` :data:`FEAST_VERSION`, or ``--feast-python``.
* Shipyard: the interpreter of ``bench/tracking.py`` (this one when it imports this
  repository's ``shipyard``, else ``bench/.venvs/shipyard``), or ``--shipyard-python``.

Redis: ``--redis HOST:PORT`` (default 127.0.0.1:6379); each side uses a key prefix (Feast:
a project name) of its own and deletes its keys afterwards. A watchdog kills a worker whose
process tree passes ``--max-rss-gb`` (default 10) and the row reports it. Workers: the
``_features_worker_*.py`` files; results and method: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tracking import (
    BENCH_DIR,
    VENVS,
    BenchError,
    _console,
    _load_avg,
    _machine,
    _make_venv,
    _pip_install,
    _probe,
    _venv_python,
    say,
    shipyard_python,
)

#: The Feast release these figures were taken with.
FEAST_VERSION = "0.67.0"
FEAST_REQUIREMENT = f"feast[duckdb,redis]=={FEAST_VERSION}"
WORKER_TIMEOUT_S = 900


@dataclass(frozen=True)
class Sizes:
    feature_rows: int  # historical retrieval: rows of the feature source
    entity_rows: int  # ... and of the entity frame
    materialize_rows: int  # rows materialized (and then read online)
    calls_1: int  # timed online calls with 1 key
    calls_100: int  # ... with 100 keys
    apply_repeats: int  # applies of an unchanged repository (the median counts)
    file_store: bool  # also Feast's file (dask) offline store


QUICK = Sizes(100_000, 10_000, 100_000, 300, 50, 1, True)
FULL = Sizes(1_000_000, 100_000, 1_000_000, 2_000, 300, 3, True)
# Feast's file store would need ~13.6 GB at this size (and the machine has 24 GiB shared)
BIG = Sizes(10_000_000, 1_000_000, 1_000_000, 2_000, 300, 3, False)


@dataclass
class Row:
    """One line of the table; every figure is lower-is-better (seconds, ms, MB)."""

    key: str
    label: str
    unit: str
    feast: float | None
    shipyard: float | None
    ratio_target: float | None = None  # Feast / Shipyard at least this
    limit: float | None = None  # Shipyard at most this
    check: str = "-"  # "same", "DIFF": the two sides' results compared
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.feast is None or self.shipyard is None or self.shipyard <= 0:
            return None
        return self.feast / self.shipyard

    @property
    def verdict(self) -> str:
        if self.shipyard is None:
            return "FAILED"
        if self.ratio_target is None and self.limit is None:
            return "-"
        ok = True
        if self.ratio_target is not None:
            if self.ratio is None:
                return "n/a"
            ok = self.ratio >= self.ratio_target
        if self.limit is not None:
            ok = ok and self.shipyard <= self.limit
        return "PASS" if ok else "MISS"

    @property
    def target(self) -> str:
        parts = []
        if self.ratio_target is not None:
            parts.append(f">= {self.ratio_target:g}x")
        if self.limit is not None:
            parts.append(f"<= {self.limit:g} {self.unit.split()[0]}")
        return ", ".join(parts) or "-"


# -- output ------------------------------------------------------------------------------------

HEADER = ["#", "benchmark", "unit", "Feast", "Shipyard", "Feast/Shipyard", "target", "result",
          "same"]


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "MB":
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.3f}" if value < 1 else f"{value:.2f}"
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def table_lines(rows: list[Row]) -> list[list[str]]:
    return [[r.key, r.label, r.unit, fmt_value(r.feast, r.unit), fmt_value(r.shipyard, r.unit),
             "-" if r.ratio is None else f"{r.ratio:,.1f}x", r.target, r.verdict, r.check]
            for r in rows]


def print_table(rows: list[Row], title: str) -> None:
    lines = table_lines(rows)
    if _console is not None:
        from rich.console import Console
        from rich.table import Table

        console = _console if _console.is_terminal else Console(highlight=False, width=150)
        table = Table(title=title)
        for i, name in enumerate(HEADER):
            table.add_column(name, justify="right" if 3 <= i <= 5 else "left")
        for line in lines:
            table.add_row(*line)
        console.print(table)
    else:
        print(title)
        widths = [max(len(x) for x in col) for col in zip(HEADER, *lines, strict=True)]
        for line in [HEADER, *lines]:
            print("  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)))
    for r in rows:
        for note in r.notes:
            say(f"  ! {r.key}: {note}")


def markdown_table(rows: list[Row]) -> str:
    lines = [HEADER, ["---"] * len(HEADER), *table_lines(rows)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def human(n: int) -> str:
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= size and n % (size // 10) == 0:
            return f"{n / size:g}{suffix}"
    return f"{n:,}"


# -- interpreters and services -----------------------------------------------------------------

def feast_python(explicit: str | None) -> Path:
    """``--feast-python``, else ``bench/.venvs/feast`` with FEAST_REQUIREMENT, created when
    missing."""
    if explicit:
        return Path(explicit)
    venv = VENVS / "feast"
    python = _venv_python(venv)
    if not python.exists():
        _make_venv(venv)
    version = _probe(python, "import importlib.metadata as m; print(m.version('feast'))")
    if version != FEAST_VERSION:
        _pip_install(python, FEAST_REQUIREMENT)
    return python


def _versions(python: Path, names: list[str]) -> dict[str, Any]:
    code = ("import importlib.metadata as m, json, platform\n"
            "def v(name):\n"
            "    try:\n        return m.version(name)\n"
            "    except m.PackageNotFoundError:\n        return None\n"
            f"print(json.dumps({{'python': platform.python_version(), "
            f"**{{n: v(n) for n in {names!r}}}}}))")
    out = _probe(python, code)
    return json.loads(out) if out else {}


def _redis_version(host: str, port: int) -> str | None:
    """The server's version (``INFO server`` over a plain socket), None when it is down."""
    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            sock.sendall(b"INFO server\r\n")
            data = b""
            while b"redis_version:" not in data or not data.endswith(b"\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("redis_version:"):
            return line.split(":", 1)[1].strip()
    return None


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants (Linux /proc; 0 elsewhere)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines()
                          if line.startswith("VmRSS:")) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


# -- running the workers -----------------------------------------------------------------------

class Runner:
    """Starts workers in fresh temp dirs under a watchdog; results are cached by arguments."""

    def __init__(self, args: argparse.Namespace, sizes: Sizes, pythons: dict[str, Path],
                 root: Path, data: Path) -> None:
        self.args = args
        self.sizes = sizes
        self.pythons = pythons
        self.root = root
        self.data = data
        self.max_rss_mb = args.max_rss_gb * 1024
        self._cache: dict[tuple[Any, ...], dict[str, Any] | BenchError] = {}
        self.raw: dict[str, Any] = {}

    def env(self, workdir: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "FEAST_"))}
        env.update(SHIPYARD_HOME=str(workdir / "home"),
                   SHIPYARD_DB=f"sqlite:///{workdir / 'home' / 'shipyard.db'}",
                   PYTHONUNBUFFERED="1")
        return env

    def workdir(self, side: str, what: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{side}-{what}-", dir=self.root))

    def run(self, cmd: list[str], workdir: Path, label: str,
            timeout: float = WORKER_TIMEOUT_S) -> tuple[float, float, float]:
        """Run ``cmd`` in ``workdir`` under the watchdog; (wall seconds, CPU seconds of the
        process and its children, peak RSS MB of the process tree as the watchdog saw it)."""
        stdout, stderr = workdir / "stdout.txt", workdir / "stderr.txt"
        peak, reason, cpu, code = 0.0, None, 0.0, None
        t0 = time.perf_counter()
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            proc = subprocess.Popen(cmd, cwd=workdir, env=self.env(workdir), stdout=out,
                                    stderr=err, start_new_session=True)
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:  # reaped here, for its rusage: tell Popen
                    code = proc.returncode = os.waitstatus_to_exitcode(status)
                    cpu = usage.ru_utime + usage.ru_stime
                    break
                rss = _tree_rss_mb(proc.pid)
                peak = max(peak, rss)
                if rss > self.max_rss_mb:
                    reason = f"killed at {rss / 1024:.1f} GiB RSS (--max-rss-gb " \
                             f"{self.args.max_rss_gb:g})"
                elif time.perf_counter() - t0 > timeout:
                    reason = f"killed after {timeout:.0f} s"
                if reason:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)  # its own session: pgid == pid
                    proc.wait()
                    break
                time.sleep(0.05)
        seconds = time.perf_counter() - t0
        if reason:
            raise BenchError(f"{label}: {reason}")
        if code:
            tail = stderr.read_text(errors="replace")[-4000:]
            raise BenchError(f"{label} failed (exit {code}):\n{tail}")
        return seconds, cpu, peak

    def worker(self, side: str, bench: str, variant: str = "", *, feature_rows: int = 0,
               entity_rows: int = 0) -> dict[str, Any]:
        key = (side, bench, variant, feature_rows, entity_rows)
        if key in self._cache:
            cached = self._cache[key]
            if isinstance(cached, BenchError):
                raise cached
            return cached
        label = " ".join(x for x in (side, bench, variant) if x)
        sizes = f"{human(feature_rows)} x {human(entity_rows)}" if entity_rows else \
            human(feature_rows)
        say(f"  {label} ({sizes}) ...")
        workdir = self.workdir(side, f"{bench}-{variant}" if variant else bench)
        out = workdir / "result.json"
        cmd = [str(self.pythons[side]), str(BENCH_DIR / f"_features_worker_{side}.py"), bench,
               "--data", str(self.data), "--feature-rows", str(feature_rows),
               "--entity-rows", str(entity_rows), "--variant", variant,
               "--redis", self.args.redis,
               "--calls", f"{self.sizes.calls_1},{self.sizes.calls_100}",
               "--workdir", str(workdir), "--out", str(out)]
        try:
            seconds, _, peak = self.run(cmd, workdir, label, self.args.timeout)
        except BenchError as exc:
            self._cache[key] = exc
            raise
        result = json.loads(out.read_text())
        result.update(process_s=seconds, watchdog_peak_tree_mb=peak, workdir=str(workdir))
        figures = f"wall {result['wall_s']:.2f} s, CPU {result['cpu_s']:.2f} s, peak RSS " \
            f"{result['peak_rss_mb']:,.0f} MB, " if "wall_s" in result else ""
        say(f"  {label}: done in {seconds:.1f} s ({figures}load {_load_avg()})")
        self._cache[key] = result
        self.raw[f"{label} {sizes}"] = result
        return result

    def prepare_data(self, feature_rows: int, entity_rows: int = 0) -> None:
        self.worker("shipyard", "data", feature_rows=feature_rows, entity_rows=entity_rows)


# -- the benchmarks ----------------------------------------------------------------------------

def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def compare_training(feast: dict[str, Any], ship: dict[str, Any]) -> list[str]:
    """Differences between two training sets' checksums and samples (empty: the same)."""
    out = []
    if feast["rows"] != ship["rows"]:
        out.append(f"{feast['rows']:,} rows, Shipyard {ship['rows']:,}")
    bad = [f for f, s in ship["features"].items()
           if feast["features"][f]["non_null"] != s["non_null"]
           or not _close(feast["features"][f]["sum"], s["sum"])]
    if bad:
        f = bad[0]
        out.append(f"{len(bad)} of 10 features differ in count or sum (e.g. {f}: "
                   f"{feast['features'][f]['non_null']:,} values summing to "
                   f"{feast['features'][f]['sum']:.4f}, Shipyard "
                   f"{ship['features'][f]['non_null']:,} summing to "
                   f"{ship['features'][f]['sum']:.4f})")
    missing = [k for k in ship["sample"] if k not in feast["sample"]]
    differ = [k for k in ship["sample"] if k in feast["sample"]
              and not _same_values(feast["sample"][k], ship["sample"][k])]
    if missing or differ:
        out.append(f"of {len(ship['sample'])} sampled entity rows, {len(missing)} missing and "
                   f"{len(differ)} with other values")
    return out


def _same_values(a: list[Any] | None, b: list[Any] | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return all((x is None and y is None) or (x is not None and y is not None and _close(x, y))
               for x, y in zip(a, b, strict=True))


def bench_historical(r: Runner) -> list[Row]:
    n, m = r.sizes.feature_rows, r.sizes.entity_rows
    r.prepare_data(n, m)
    size = f"{human(n)} x {human(m)}"
    ship = r.worker("shipyard", "historical", feature_rows=n, entity_rows=m)
    rows: list[Row] = []
    # (variant, name, row keys, CPU ratio target, peak RSS limit for Shipyard)
    stores: list[tuple[str, str, str, float, float | None]] = [
        ("duckdb", "DuckDB", "1 1b 1c", 4.0, 2048.0)]
    if r.sizes.file_store:
        stores.append(("file", "file (dask)", "1d 1e 1f", 20.0, None))
    else:
        say(f"  Feast file (dask) offline store skipped at {size}: it would need ~13.6 GB")
    for variant, name, keys, target, limit in stores:
        k_cpu, k_wall, k_rss = keys.split()
        try:
            feast: dict[str, Any] | None = r.worker("feast", "historical", variant,
                                                    feature_rows=n, entity_rows=m)
            error = None
        except BenchError as exc:
            feast, error = None, str(exc).splitlines()[0]
            say(f"  FAILED: {exc}")
        diffs = [] if feast is None else compare_training(feast["check"], ship["check"])
        cpu = Row(k_cpu, f"historical {size}: CPU ({name})", "CPU s",
                  None if feast is None else feast["cpu_s"], ship["cpu_s"], target,
                  check="-" if feast is None else ("DIFF" if diffs else "same"))
        cpu.notes += [f"Feast {name} vs Shipyard: {d}" for d in diffs]
        if error:
            cpu.notes.append(f"Feast {name}: {error}")
        rows += [cpu,
                 Row(k_wall, f"historical {size}: wall ({name})", "s",
                     None if feast is None else feast["wall_s"], ship["wall_s"]),
                 Row(k_rss, f"historical {size}: peak RSS ({name})", "MB",
                     None if feast is None else feast["peak_rss_mb"], ship["peak_rss_mb"],
                     limit=limit)]
    return rows


def _materialized(r: Runner, side: str, store: str) -> dict[str, Any]:
    n = r.sizes.materialize_rows
    r.prepare_data(n)
    return r.worker(side, "materialize", store, feature_rows=n)


def _materialize_pair(r: Runner, store: str) -> tuple[dict[str, Any] | None, dict[str, Any],
                                                      list[str]]:
    """(Feast's result or None, Shipyard's, notes) of one online store."""
    notes: list[str] = []
    ship = _materialized(r, "shipyard", store)
    if store == "redis" and not r.args.feast_redis:
        return None, ship, ["Feast's redis extra is not installed: Shipyard only"]
    try:
        feast = _materialized(r, "feast", store)
    except BenchError as exc:
        return None, ship, [str(exc).splitlines()[0]]
    sample_s, sample_f = ship["sample"], feast["sample"]
    differ = [k for k in sample_s if not _same_values(sample_s[k], sample_f.get(k))]
    if differ:
        notes.append(f"{len(differ)} of {len(sample_s)} sampled keys read back other values")
    written = feast.get("online_rows", feast.get("redis_keys_removed"))  # keys Feast wrote
    if written is not None and written != ship["entities_written"]:
        notes.append(f"Feast wrote {written:,} keys, Shipyard {ship['entities_written']:,}")
    return feast, ship, notes


def _redis_rows_skipped(r: Runner) -> bool:
    if r.args.redis_version is None:
        say(f"  Redis is not reachable at {r.args.redis}: SQLite only")
        return True
    return False


def bench_materialize(r: Runner) -> list[Row]:
    n = human(r.sizes.materialize_rows)
    rows: list[Row] = []
    stores = [("sqlite", "SQLite", "2")]
    if not _redis_rows_skipped(r):
        stores.append(("redis", "Redis", "2c"))
    for store, name, key in stores:
        feast, ship, notes = _materialize_pair(r, store)
        check = "-" if feast is None else ("DIFF" if notes else "same")
        wall = Row(key, f"materialize {n} -> {name}: wall", "s",
                   None if feast is None else feast["wall_s"], ship["wall_s"], 10.0,
                   check=check, notes=notes)
        cpu_key = "2b" if key == "2" else "2d"
        rss_key = "2e" if key == "2" else "2f"
        rows += [wall,
                 Row(cpu_key, f"materialize {n} -> {name}: CPU", "CPU s",
                     None if feast is None else feast["cpu_s"], ship["cpu_s"]),
                 Row(rss_key, f"materialize {n} -> {name}: peak RSS", "MB",
                     None if feast is None else feast["peak_rss_mb"], ship["peak_rss_mb"])]
    rows.sort(key=lambda row: row.key)
    return rows


def bench_online(r: Runner) -> list[Row]:
    rows: list[Row] = []
    stores = [("sqlite", "SQLite", "3", 1.0)]
    if not _redis_rows_skipped(r):
        stores.append(("redis", "Redis", "3e", 2.0))
    for store, name, key, p99_one in stores:
        feast, ship, notes = _materialize_pair(r, store)
        check = "-" if feast is None else ("DIFF" if notes else "same")
        letters = iter("abcd" if key == "3" else "efgh")
        for keys, p99_limit in (("1", p99_one), ("100", 5.0)):
            f = None if feast is None else feast["online"][keys]
            s = ship["online"][keys]
            what = f"online {keys} key{'s' if keys != '1' else ''}, {name}"
            p50 = Row("", f"{what}: p50", "ms", None if f is None else f["p50_ms"],
                      s["p50_ms"], 10.0, check=check)
            p99 = Row("", f"{what}: p99", "ms", None if f is None else f["p99_ms"],
                      s["p99_ms"], limit=p99_limit)
            for row in (p50, p99):
                row.key = "3" + next(letters)
            rows += [p50, p99]
        rows[-4].notes += notes
    rows[0].key = "3"
    return rows


def bench_apply(r: Runner) -> list[Row]:
    repeats = r.sizes.apply_repeats
    feast_repo = Path(r.worker("feast", "apply_setup")["repo"])
    ship_repo = Path(r.worker("shipyard", "apply_setup")["repo"])
    feast_cli = r.pythons["feast"].parent / "feast"
    ship_cli = r.pythons["shipyard"].parent / "shipyard"
    commands = {  # (command, working dir: for Shipyard, its home/ is a fresh SHIPYARD_HOME)
        "feast": ([str(feast_cli)] if feast_cli.exists() else
                  [str(r.pythons["feast"]), "-c", "from feast.cli.cli import cli; cli()"],
                  feast_repo),
        "shipyard": ([str(ship_cli)] if ship_cli.exists() else
                     [str(r.pythons["shipyard"]), "-m", "shipyard.cli"], ship_repo.parent),
    }
    args = {"feast": ["apply"], "shipyard": ["features", "apply", str(ship_repo)]}
    figures: dict[str, dict[str, Any]] = {}
    for side, (cli, cwd) in commands.items():
        cmd = [*cli, *args[side]]
        say(f"  {side} apply: 1 fresh + {repeats} unchanged, each a new process ...")
        first = r.run(cmd, cwd, f"{side} apply")
        again = [r.run(cmd, cwd, f"{side} apply") for _ in range(repeats)]
        figures[side] = {"cmd": cmd, "fresh_s": first[0], "fresh_cpu_s": first[1],
                         "unchanged_s": [x[0] for x in again],
                         "unchanged_cpu_s": [x[1] for x in again],
                         "wall_s": statistics.median(x[0] for x in again),
                         "cpu_s": statistics.median(x[1] for x in again)}
        r.raw[f"{side} apply"] = figures[side]
        say(f"  {side} apply: fresh {first[0]:.2f} s, unchanged {figures[side]['wall_s']:.2f} s"
            f" (CPU {figures[side]['cpu_s']:.2f} s; load {_load_avg()})")
    feast, ship = figures["feast"], figures["shipyard"]
    return [
        Row("4", "apply, new process, registry up to date", "s", feast["wall_s"],
            ship["wall_s"], limit=1.0),
        Row("4b", "apply, new process, registry up to date: CPU", "CPU s", feast["cpu_s"],
            ship["cpu_s"]),
        Row("4c", "apply, new process, fresh registry", "s", feast["fresh_s"],
            ship["fresh_s"], limit=1.0),
        Row("4d", "apply, new process, fresh registry: CPU", "CPU s", feast["fresh_cpu_s"],
            ship["fresh_cpu_s"]),
    ]


BENCHMARKS: dict[str, Callable[[Runner], list[Row]]] = {
    "historical": bench_historical,
    "materialize": bench_materialize,
    "online": bench_online,
    "apply": bench_apply,
}


# -- main --------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    size.add_argument("--big", action="store_true",
                      help="historical retrieval at 10M x 1M (the issue's targets' size; no "
                           "Feast file store); materialization stays at 1M rows")
    ap.add_argument("--file-store", action="store_true",
                    help="with --big: run Feast's file (dask) offline store too (needs ~14 "
                         "GB of memory: raise --max-rss-gb)")
    ap.add_argument("--only", action="append", metavar="NAME",
                    help=f"run only these (repeat or comma-separate): {', '.join(BENCHMARKS)}")
    ap.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    ap.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    ap.add_argument("--feast-python", metavar="PATH",
                    help=f"interpreter with feast[duckdb,redis]=={FEAST_VERSION} "
                         "(default: bench/.venvs/feast, created when missing)")
    ap.add_argument("--shipyard-python", metavar="PATH",
                    help="interpreter with shipyard installed (default: see bench/tracking.py)")
    ap.add_argument("--redis", default="127.0.0.1:6379", metavar="HOST:PORT",
                    help="Redis for the online-store workloads (default: %(default)s)")
    ap.add_argument("--data-dir", metavar="PATH",
                    help="keep the generated Parquet data here and reuse it (default: a temp "
                         "dir, removed at the end)")
    ap.add_argument("--max-rss-gb", type=float, default=10.0,
                    help="kill a worker whose process tree uses more (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=WORKER_TIMEOUT_S,
                    help="kill a worker after this many seconds (default: %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    args = ap.parse_args(argv)
    names = [n.strip() for item in args.only or [] for n in item.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    args.names = [name for name in BENCHMARKS if name in names] or list(BENCHMARKS)
    return args


FEAST_PACKAGES = ["feast", "duckdb", "ibis-framework", "dask", "pandas", "pyarrow", "redis"]
SHIPYARD_PACKAGES = ["shipyard-mlops", "duckdb", "pandas", "pyarrow", "redis", "sqlalchemy"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else BIG if args.big else FULL
    if args.file_store:
        sizes = replace(sizes, file_store=True)
    t_start = time.perf_counter()
    say("Preparing interpreters ...")
    pythons = {"feast": feast_python(args.feast_python),
               "shipyard": shipyard_python(args.shipyard_python)}
    versions = {"feast": _versions(pythons["feast"], FEAST_PACKAGES),
                "shipyard": _versions(pythons["shipyard"], SHIPYARD_PACKAGES)}
    host, port = args.redis.rsplit(":", 1)
    args.redis_version = _redis_version(host, int(port))
    args.feast_redis = versions["feast"].get("redis") is not None
    versions["redis_server"] = args.redis_version
    say(f"  Feast {versions['feast'].get('feast')} ({pythons['feast']}); Shipyard "
        f"{versions['shipyard'].get('shipyard-mlops')} ({pythons['shipyard']}); Redis "
        f"{args.redis_version or 'not reachable'} at {args.redis}")
    load = _load_avg()
    say(f"  load average {load} on {os.cpu_count()} cores")
    if load is not None and load > 0.5:
        say("  note: other processes use the CPU, so the figures will be noisy")
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-features-"))
    data = Path(args.data_dir).resolve() if args.data_dir else root / "data"
    runner = Runner(args, sizes, pythons, root, data)
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
    finally:
        if args.keep:
            say(f"Temp dirs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - t_start
    kind = "quick" if args.quick else "big" if args.big else "default"
    print_table(rows, f"Shipyard vs Feast {FEAST_VERSION}: feature store ({kind} sizes)")
    if args.markdown:
        print(markdown_table(rows), flush=True)
    if not args.big:
        say(f"historical retrieval at {human(sizes.feature_rows)} x {human(sizes.entity_rows)}"
            ": the issue's targets for it (rows 1, 1c, 1d) are stated for 10M x 1M (--big)")
    say(f"{kind} run, {elapsed:.0f} s in all; load average {load} at the start, "
        f"{_load_avg()} at the end")
    if args.json:
        report = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "sizes": asdict(sizes),
            "kind": kind, "elapsed_s": elapsed, "machine": _machine(), "versions": versions,
            "load_avg_1m": {"start": load, "end": _load_avg()},
            "rows": [{**asdict(r), "ratio": r.ratio, "verdict": r.verdict, "target": r.target}
                     for r in rows],
            "failed": failed, "raw": runner.raw,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        say(f"Saved {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
