"""Shipyard vs MLflow model registry, on one machine, in one run.

    python bench/registry.py                  # everything: ~70 s on 2 quiet cores, ~3 min busy
    python bench/registry.py --quick          # fewer repeats, a smoke run (< 1 minute)
    python bench/registry.py --json results.json --markdown

Both sides fit the same scikit-learn model (a 50-tree random forest on 5,000 x 20 synthetic
rows, same seed, see :func:`fit_model`) and then, in one worker process per side, against a
fresh SQLite database and a local artifact folder in a temp dir:

1. log + register it inside a run, several times after an untimed warm-up; MLflow in its
   default skops format (requirements inferred, and given) and in the pickle format that
   Shipyard uses (requirements given);
2. point the alias ``champion`` at a version, many times (ending on version 1);
3. resolve ``models:/m@champion`` many times;
4. load ``models:/m@champion`` once, then again several times, and check the predictions.

Then fresh interpreter processes, one side after the other in turn, each import the library,
load ``models:/m@champion`` and predict one row (5: wall time of the whole process).

The interpreters, the temp dirs and the environment are those of ``bench/tracking.py``
(MLflow in ``bench/.venvs/mlflow``, telemetry off); the workloads are in
``_registry_worker_mlflow.py`` and ``_registry_worker_shipyard.py``. See
``docs/benchmarks.md`` for what each one measures and the latest figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tracking import (
    BENCH_DIR,
    HEADER,
    WORKER_TIMEOUT_S,
    BenchError,
    Row,
    Runner,
    _console,
    _fsync_ms,
    _load_avg,
    _machine,
    _versions,
    markdown_table,
    mlflow_python,
    say,
    shipyard_python,
    table_lines,
)

#: The model and data both sides fit (each in its own process, from the same seed).
MODEL = {"rows": 5_000, "features": 20, "trees": 50, "seed": 0}
NAME, ALIAS = "m", "champion"
URI = f"models:/{NAME}@{ALIAS}"


@dataclass(frozen=True)
class Sizes:
    log_repeats: int  # timed log + register calls (MLflow: pickle, then skops, reqs given)
    infer_repeats: int  # timed MLflow log + register calls that infer the requirements
    alias_calls: int
    resolve_calls: int
    load_repeats: int  # timed warm loads after the first
    cold_repeats: int  # timed fresh processes per side, after one untimed


FULL = Sizes(log_repeats=7, infer_repeats=3, alias_calls=100, resolve_calls=1_000,
             load_repeats=20, cold_repeats=3)
QUICK = Sizes(log_repeats=2, infer_repeats=1, alias_calls=20, resolve_calls=50,
              load_repeats=3, cold_repeats=1)


def fit_model(spec: dict[str, int]) -> tuple[Any, Any]:
    """(X as a DataFrame with columns f0..f19, fitted RandomForestClassifier); the workers
    of both sides call this, so they fit the same model on the same rows."""
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    x, y = make_classification(n_samples=spec["rows"], n_features=spec["features"],
                               random_state=spec["seed"])
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(spec["features"])])
    model = RandomForestClassifier(n_estimators=spec["trees"], random_state=spec["seed"])
    return frame, model.fit(frame, y)


def alias_targets(calls: int) -> list[int]:
    """Versions 2, 1, 2, 1, ... ending on 1: each call moves the alias."""
    return [1 if (calls - i) % 2 else 2 for i in range(calls)]


def predictions_digest(predictions: Any) -> str:
    import numpy as np

    return hashlib.sha256(np.asarray(predictions).astype("int64").tobytes()).hexdigest()


def worker_main(bench: Callable[[dict[str, Any], str], dict[str, Any]]) -> None:
    """A worker's command line: ``--spec JSON --workdir DIR --out FILE``."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True, help="sizes and model, as JSON")
    ap.add_argument("--workdir", required=True, help="folder of this side's store")
    ap.add_argument("--out", required=True, help="JSON file for the result")
    args = ap.parse_args()
    result = bench(json.loads(args.spec), args.workdir)
    Path(args.out).write_text(json.dumps(result))


# -- running the workers -----------------------------------------------------------------------

COLD_LOAD = {
    "mlflow": "import mlflow\nimport pandas as pd\nmlflow.set_tracking_uri({db!r})\n"
              "model = mlflow.pyfunc.load_model({uri!r})\n"
              "print(int(model.predict(pd.DataFrame({row!r}))[0]))\n",
    "shipyard": "import pandas as pd\nimport shipyard as sy\n"
                "model = sy.load_model({uri!r})\n"
                "print(int(model.predict(pd.DataFrame({row!r}))[0]))\n",
    # Not a side: what any process that predicts with this model imports (in the Shipyard
    # interpreter), the floor under both cold loads.
    "floor": "import pandas as pd\nimport sklearn.ensemble\nprint(-1)\n",
}


class RegistryRunner(Runner):
    """:class:`tracking.Runner`'s environment and temp dirs, with the registry workers."""

    def __init__(self, sizes: Sizes, pythons: dict[str, Path], root: Path,
                 mlflow_telemetry: bool) -> None:
        super().__init__(None, pythons, root, mlflow_telemetry)  # type: ignore[arg-type]
        self.registry_sizes = sizes
        self.workdirs: dict[str, Path] = {}

    def registry_worker(self, side: str) -> dict[str, Any]:
        """Workloads 1-4 in one process of ``side``; its store stays for the cold loads."""
        workdir = self.workdirs[side] = self.workdir(side, "registry")
        out = workdir / "result.json"
        spec = {**asdict(self.registry_sizes), "model": MODEL, "name": NAME, "alias": ALIAS}
        cmd = [str(self.pythons[side]), str(BENCH_DIR / f"_registry_worker_{side}.py"),
               "--spec", json.dumps(spec), "--workdir", str(workdir), "--out", str(out)]
        say(f"  {side}: log + register, alias, resolve, load ...")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=workdir, env=self.env(side, workdir),
                                  capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{side} registry worker took longer than "
                             f"{WORKER_TIMEOUT_S} s") from exc
        if proc.returncode or not out.exists():
            raise BenchError(f"{side} registry worker failed (exit {proc.returncode}):\n"
                             f"{proc.stderr[-4000:]}")
        result = json.loads(out.read_text())
        result["load_avg_1m"] = _load_avg()
        say(f"  {side}: done in {time.perf_counter() - t0:.1f} s")
        self.raw[side] = result
        return result

    def cold_loads(self, row: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
        """Fresh processes that load ``URI`` and predict ``row``, taking turns: MLflow,
        Shipyard with the model cache its worker filled, Shipyard with an empty cache; and
        processes that only import pandas and scikit-learn (``floor``)."""
        variants = {"mlflow": ("mlflow", "mlflow"), "shipyard": ("shipyard", "shipyard"),
                    "shipyard_empty_cache": ("shipyard", "shipyard"),
                    "floor": ("shipyard", "floor")}
        out: dict[str, dict[str, Any]] = {v: {"seconds": [], "predictions": []}
                                          for v in variants}
        reps = self.registry_sizes.cold_repeats
        say(f"  cold loads: 1 untimed + {reps} timed processes for each of "
            f"{', '.join(variants)} ...")
        for i in range(reps + 1):
            for variant, (side, template) in variants.items():
                workdir = self.workdirs[side]
                env = self.env(side, workdir)
                if variant == "shipyard_empty_cache":
                    env["SHIPYARD_HOME"] = tempfile.mkdtemp(prefix="home-", dir=self.root)
                code = COLD_LOAD[template].format(db=f"sqlite:///{workdir}/mlflow.db", uri=URI,
                                                  row=row)
                t0 = time.perf_counter()
                proc = subprocess.run([str(self.pythons[side]), "-c", code], cwd=workdir,
                                      env=env, capture_output=True, text=True,
                                      timeout=WORKER_TIMEOUT_S)
                seconds = time.perf_counter() - t0
                if proc.returncode:
                    raise BenchError(f"{variant} cold load failed:\n{proc.stderr[-4000:]}")
                out[variant]["predictions"].append(int(proc.stdout.split()[-1]))
                if i:  # the first round warms the OS file cache and writes .pyc files
                    out[variant]["seconds"].append(seconds)
                else:
                    out[variant]["untimed_s"] = seconds
        for variant in variants:
            out[variant]["median_s"] = statistics.median(out[variant]["seconds"])
        self.raw["cold_load"] = out
        return out


# -- the table ---------------------------------------------------------------------------------

def build_rows(m: dict[str, Any], s: dict[str, Any], cold: dict[str, Any]) -> list[Row]:
    rows = [
        Row("1", "log + register: MLflow defaults", "s",
            m["log_infer"]["median_s"], s["log"]["median_s"], False, 10),
        Row("1b", "log + register: pip_requirements given", "s",
            m["log_skops"]["median_s"], s["log"]["median_s"], False, 10),
        Row("1c", "log + register: reqs given, pickle format", "s",
            m["log"]["median_s"], s["log"]["median_s"], False, 10),
        Row("1d", "log + register, first in the process", "s",
            m["log_first_s"], s["log_first_s"], False),
        Row("2", "set alias", "ms/call",
            m["alias"]["median_s"] * 1000, s["alias"]["median_s"] * 1000, False),
        Row("3", "resolve models:/m@champion", "ms/call",
            m["resolve"]["median_s"] * 1000, s["resolve"]["median_s"] * 1000, False, 5),
        Row("4", "load warm (again, same process)", "ms",
            m["load_warm"]["median_s"] * 1000, s["load_warm"]["median_s"] * 1000, False, 5),
        Row("4b", "load warm, MLflow skops format", "ms",
            m["load_skops_warm"]["median_s"] * 1000, s["load_warm"]["median_s"] * 1000, False),
        Row("4c", "load, first in the process", "ms",
            m["load_first_s"] * 1000, s["load_first_s"] * 1000, False),
        Row("5", "load cold: new process, predict 1 row", "s",
            cold["mlflow"]["median_s"], cold["shipyard"]["median_s"], False, 5),
        Row("5b", "load cold, empty Shipyard model cache", "s",
            cold["mlflow"]["median_s"], cold["shipyard_empty_cache"]["median_s"], False, 5),
    ]
    _check(rows, m, s, cold)
    return rows


def _check(rows: list[Row], m: dict[str, Any], s: dict[str, Any], cold: dict[str, Any]) -> None:
    """Notes (verdict CHECK) where a side stored or returned something wrong."""
    by_key = {r.key: r for r in rows}
    sizes = m["sizes"]
    want_versions = {"mlflow": 2 + 2 * sizes["log_repeats"] + sizes["infer_repeats"],
                     "shipyard": 1 + sizes["log_repeats"]}
    for side, res in (("mlflow", m), ("shipyard", s)):
        if res["versions"] != want_versions[side]:
            by_key["1"].notes.append(f"{side} registered {res['versions']} versions, "
                                     f"expected {want_versions[side]}")
        if res["alias_version"] != 1:
            by_key["2"].notes.append(f"{side}: {ALIAS} points to {res['alias_version']}, not 1")
        if res["resolved_version"] != 1:
            by_key["3"].notes.append(f"{side} resolved {URI} to {res['resolved_version']}")
        if res["load_mismatches"]:
            by_key["4"].notes.append(f"{side}: the loaded model predicts {res['load_mismatches']}"
                                     " rows differently from the fitted one")
    if m["predictions_sha256"] != s["predictions_sha256"]:
        by_key["4"].notes.append("the two sides' models predict differently (not the same fit)")
    expected = m["row_prediction"]
    for variant, key in (("mlflow", "5"), ("shipyard", "5"), ("shipyard_empty_cache", "5b")):
        wrong = [p for p in cold[variant]["predictions"] if p != expected]
        if wrong:
            by_key[key].notes.append(f"{variant} cold load predicted {wrong}, expected {expected}")


def print_table(rows: list[Row]) -> None:
    """As :func:`tracking.print_table`, with this benchmark's title."""
    lines = table_lines(rows)
    if _console is not None:
        from rich.table import Table

        table = Table(title="Shipyard vs MLflow: model registry")
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


# -- main --------------------------------------------------------------------------------------

def other_benchmarks() -> list[str]:
    """Other processes running a script of bench/ (Linux; empty elsewhere): they would skew
    the figures, and be skewed."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if int(proc.name) == os.getpid() or ppid == os.getpid():
            continue
        if any(a.endswith(".py") and Path(a).parent.name == "bench" for a in argv):
            found.append(f"{proc.name}: {' '.join(argv).strip()[:100]}")
    return found


def _watch(seen: list[str]) -> None:
    """Add the bench processes running now to ``seen``, and warn about new ones."""
    for entry in other_benchmarks():
        if entry not in seen:
            seen.append(entry)
            say(f"  warning: another benchmark is running, the figures are skewed: {entry}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats: a smoke run")
    ap.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    ap.add_argument("--shipyard-python", metavar="PATH",
                    help="interpreter with shipyard installed (default: as bench/tracking.py)")
    ap.add_argument("--mlflow-telemetry", action="store_true",
                    help="leave MLflow's usage telemetry on (MLflow's default; off here)")
    ap.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    ap.add_argument("--keep", action="store_true", help="keep the temp stores")
    return ap.parse_args(argv)


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
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-registry-"))
    fsync_before = _fsync_ms(root)
    say(f"  load average {load}; disk write + fsync {fsync_before} ms (median)")
    if load is not None and load > 0.5:
        say("  note: other processes use the CPU, so the figures will be noisy")
    runner = RegistryRunner(sizes, pythons, root, args.mlflow_telemetry)
    rows: list[Row] = []
    failed = ""
    others: list[str] = []
    try:
        try:
            _watch(others)
            m = runner.registry_worker("mlflow")
            _watch(others)
            s = runner.registry_worker("shipyard")
            _watch(others)
            cold = runner.cold_loads(m["row"])
            _watch(others)
            rows = build_rows(m, s, cold)
        except BenchError as exc:
            failed = str(exc)
            say(f"  FAILED: {exc}")
        fsync_after = _fsync_ms(root)
    finally:
        if args.keep:
            say(f"Stores kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - t_start
    if rows:
        print_table(rows)
        if args.markdown:
            print(markdown_table(rows), flush=True)
        floor = runner.raw["cold_load"]["floor"]["median_s"]
        say(f"  5, 5b: a new process that only imports pandas and scikit-learn: "
            f"{floor:.3f} s (median), a floor under both sides")
    if args.quick:
        say("quick run (fewer repeats): the verdicts are for the full run only")
    say(f"{'quick' if args.quick else 'full'} run, {elapsed:.0f} s in all")
    say(f"  load average {_load_avg()} at the end; disk write + fsync {fsync_after} ms")
    if others:
        say(f"  warning: {len(others)} other benchmark process(es) ran alongside; run again")
    if args.json:
        report = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": args.quick, "elapsed_s": elapsed, "sizes": asdict(sizes),
            "model": MODEL, "machine": _machine(), "versions": versions,
            "mlflow_telemetry": args.mlflow_telemetry,
            "load_avg_1m": {"start": load, "end": _load_avg()},
            "fsync_ms": {"start": fsync_before, "end": fsync_after},
            "rows": [{**asdict(r), "speedup": r.speedup, "verdict": r.verdict} for r in rows],
            "other_benchmarks_seen": others, "failed": failed, "raw": runner.raw,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        say(f"Saved {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
