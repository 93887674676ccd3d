"""Drawing runs: the listing of many runs and the detail view of one.

Every function takes the tracking service and an output format, so ``runs list``,
``runs search`` and ``runs show`` share one look and one JSON/CSV shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from ._common import experiment_names
from ._options import Output, OutputWithCsv
from ._output import (
    console,
    fmt_duration,
    fmt_size,
    fmt_time,
    fmt_value,
    make_table,
    print_csv,
    print_json,
)

if TYPE_CHECKING:
    from shipyard.tracking import Run, TrackingService

__all__ = ["fetch_all", "print_runs", "print_run", "run_record", "status_text"]

_STATUS_STYLE = {"FINISHED": "green", "FAILED": "red", "RUNNING": "yellow", "KILLED": "magenta",
                 "SCHEDULED": "cyan"}


def status_text(status: str) -> Text:
    """A run status coloured by outcome."""
    return Text(status, style=_STATUS_STYLE.get(status, ""))


def fetch_all(service: TrackingService, experiment_ids: list[str] | None,
              filter_string: str | None, order_by: Sequence[str], max_results: int,
              view: str) -> list[Run]:
    """Every run matching the search, following page tokens up to ``max_results`` runs."""
    runs: list[Run] = []
    token = None
    while len(runs) < max_results:
        page, token = service.search_runs(experiment_ids, filter_string=filter_string,
                                          order_by=list(order_by),
                                          max_results=max_results - len(runs),
                                          page_token=token, run_view=view)
        runs.extend(page)
        if token is None or not page:
            break
    return runs


def run_record(run: Run, names: dict[str, str]) -> dict[str, Any]:
    """A run as a JSON-ready dict, with its experiment's name added."""
    record = run.model_dump(mode="json", by_alias=True)
    record["experiment_name"] = names.get(run.experiment_id)
    return record


def print_runs(service: TrackingService, runs: Sequence[Run], output: OutputWithCsv, *,
               title: str, with_data: bool, lead_metrics: Sequence[str] = ()) -> None:
    """Print ``runs`` as a table (with metric and param columns when ``with_data``),
    JSON (full runs) or CSV (one flat row per run)."""
    names = experiment_names(service)
    if output is OutputWithCsv.json:
        print_json([run_record(r, names) for r in runs])
        return
    if output is OutputWithCsv.csv:
        rows = []
        for r in runs:
            flat = r.flat()
            rows.append({"run_id": flat.pop("run_id"), "experiment": names.get(r.experiment_id),
                         **flat})
        print_csv(rows)
        return
    console().print(_runs_table(runs, names, title, with_data, lead_metrics))


def _runs_table(runs: Sequence[Run], names: dict[str, str], title: str, with_data: bool,
                lead_metrics: Sequence[str]) -> Table:
    metric_keys = _ordered_keys((r.metrics for r in runs), lead_metrics) if with_data else []
    param_keys = _ordered_keys((r.params for r in runs), ()) if with_data else []
    columns = ["run_id", "name", "experiment", "status", "started", "duration", "parent"]
    if with_data:
        columns = columns[:-1]
    columns += [f"metrics.{k}" for k in metric_keys] + [f"params.{k}" for k in param_keys]
    table = make_table(f"{title} ({len(runs)})", columns, no_wrap=["run_id"])
    for r in runs:
        cells: list[Any] = [r.run_id, r.run_name or "", names.get(r.experiment_id, r.experiment_id),
                            status_text(r.status.value), fmt_time(r.start_time),
                            fmt_duration(r.duration_ms)]
        if not with_data:
            cells.append((r.parent_run_id or "")[:8])
        cells += [fmt_value(r.metrics.get(k)) for k in metric_keys]
        cells += [r.params.get(k, "") for k in param_keys]
        table.add_row(*cells)
    if not runs:
        table.caption = "no runs"
    return table


def _ordered_keys(mappings: Any, lead: Sequence[str]) -> list[str]:
    keys = sorted({k for m in mappings for k in m})
    first = [k for k in lead if k in keys]
    return first + [k for k in keys if k not in first]


def print_run(service: TrackingService, run_id: str, output: Output) -> None:
    """Print one run with its artifacts and child runs."""
    run = service.get_run(run_id)
    artifacts = service.list_artifacts(run_id)
    children, _ = service.search_runs(
        None, filter_string=f"attributes.parent_run_id = '{run_id}'", run_view="all",
        max_results=1000)
    names = experiment_names(service)
    if output is Output.json:
        record = run_record(run, names)
        record["artifacts"] = [a.model_dump(mode="json") for a in artifacts]
        record["child_run_ids"] = [c.run_id for c in children]
        print_json(record)
        return
    out = console()
    out.print(_attributes_table(run, names))
    out.print(_pairs_table("Params", run.params.items()))
    out.print(_pairs_table("Metrics (latest)", ((k, fmt_value(v))
                                                for k, v in run.metrics.items())))
    out.print(_pairs_table("Tags", run.tags.items()))
    inputs = make_table("Dataset inputs", ["name", "context", "rows", "digest", "source"])
    for d in run.inputs:
        inputs.add_row(d.name, d.context, "" if d.num_rows is None else str(d.num_rows),
                       d.digest[:12], d.source or "")
    out.print(_maybe_empty(inputs, run.inputs))
    files = make_table("Artifacts", ["path", "size", "digest"])
    for a in artifacts:
        files.add_row(a.path, fmt_size(a.size), a.digest[:12])
    out.print(_maybe_empty(files, artifacts))
    if children:
        kids = make_table("Child runs", ["run_id", "name", "status"], no_wrap=["run_id"])
        for c in children:
            kids.add_row(c.run_id, c.run_name or "", status_text(c.status.value))
        out.print(kids)


def _attributes_table(run: Run, names: dict[str, str]) -> Table:
    rows = [
        ("run_id", run.run_id),
        ("name", run.run_name or ""),
        ("experiment", f"{names.get(run.experiment_id, '?')} (id {run.experiment_id})"),
        ("status", status_text(run.status.value)),
        ("lifecycle", run.lifecycle_stage.value),
        ("user", run.user_id or ""),
        ("started", fmt_time(run.start_time)),
        ("ended", fmt_time(run.end_time)),
        ("duration", fmt_duration(run.duration_ms)),
        ("parent run", run.parent_run_id or ""),
    ]
    return _pairs_table(f"Run {run.run_name or run.run_id}", rows, sort=False)


def _pairs_table(title: str, pairs: Any, *, sort: bool = True) -> Table:
    items = sorted(pairs) if sort else list(pairs)
    table = make_table(title, ["key", "value"])
    for key, value in items:
        table.add_row(key, value if isinstance(value, Text) else str(value))
    return _maybe_empty(table, items)


def _maybe_empty(table: Table, items: Sequence[Any]) -> Table:
    if not items:
        table.caption = "none"
    return table
