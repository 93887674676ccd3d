"""``shipyard runs …``: list, show, search, compare, delete, restore and gc runs.

The commands parse options and call the tracking service; the tables are drawn by
:mod:`._run_views` (imported on use, like everything that needs rich or the database).
"""

from __future__ import annotations

import typer

from ._options import Output, OutputWithCsv, View, output_option, view_option

__all__ = ["app"]

app = typer.Typer(help="Inspect, search, compare and clean up runs.", no_args_is_help=True)

_RUN_ID = typer.Argument(..., metavar="RUN_ID", help="The run's 32-character id.")


@app.command("list")
def list_runs(
    experiment: list[str] = typer.Option([], "--experiment", "-e", metavar="NAME",
                                         help="Only runs of this experiment (name or id); "
                                         "repeat for several. Default: every experiment."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=50_000,
                              help="Show at most this many runs."),
    view: View = view_option("runs"),
    output: OutputWithCsv = output_option(csv=True),
) -> None:
    """List the most recent runs, newest first."""
    from ._common import experiment_ids, tracking
    from ._run_views import print_runs

    service = tracking()
    runs, _ = service.search_runs(experiment_ids(service, experiment), max_results=limit,
                                  run_view=view.value)
    print_runs(service, runs, output, title="Runs", with_data=False)


@app.command("search")
def search(
    filter_string: str = typer.Option("", "--filter", "-f", metavar="FILTER",
                                      help="Filter such as \"metrics.auc > 0.8 and "
                                      "params.model = 'gbm'\" (clauses joined by AND)."),
    order_by: list[str] = typer.Option([], "--order-by", metavar="KEY [ASC|DESC]",
                                       help="Sort key such as \"metrics.auc DESC\"; repeat "
                                       "for several. Default: newest first."),
    experiment: list[str] = typer.Option([], "--experiment", "-e", metavar="NAME",
                                         help="Only runs of this experiment (name or id); "
                                         "repeat for several. Default: every experiment."),
    max_results: int = typer.Option(100, "--max-results", "-n", min=1, max=50_000,
                                    help="Return at most this many runs."),
    view: View = view_option("runs"),
    output: OutputWithCsv = output_option(csv=True),
) -> None:
    """Search runs with a filter expression; print their params and latest metrics."""
    from ._common import experiment_ids, tracking
    from ._run_views import fetch_all, print_runs

    service = tracking()
    runs = fetch_all(service, experiment_ids(service, experiment), filter_string or None,
                     order_by, max_results, view.value)
    print_runs(service, runs, output, title="Matching runs", with_data=True,
               lead_metrics=_metric_keys(order_by))


def _metric_keys(order_by: list[str]) -> list[str]:
    """Metric names an order_by list sorts on, so their columns come first."""
    keys = []
    for item in order_by:
        head = item.strip().split()[0] if item.strip() else ""
        entity, _, key = head.partition(".")
        if entity in ("metric", "metrics") and key:
            keys.append(key.strip("`\""))
    return keys


@app.command("show")
def show(run_id: str = _RUN_ID, output: Output = output_option()) -> None:
    """Show one run: attributes, params, latest metrics, tags, dataset inputs, artifacts."""
    from ._common import tracking
    from ._run_views import print_run

    print_run(tracking(), run_id, output)


@app.command("compare")
def compare(
    run_ids: list[str] = typer.Argument(..., metavar="RUN_ID...",
                                        help="Two or more run ids."),
    output: Output = output_option(),
) -> None:
    """Compare runs side by side: differing params and the best value of each metric stand
    out (lower is better for metrics named like loss, error, mse, mae or rmse)."""
    from ._common import tracking
    from ._compare import print_comparison

    unique = list(dict.fromkeys(run_ids))
    if len(unique) < 2:
        raise typer.BadParameter("give at least two different run ids",
                                 param_hint="'RUN_ID...'")
    print_comparison(tracking(), unique, output)


@app.command("delete")
def delete(run_id: str = _RUN_ID) -> None:
    """Mark a run deleted (hidden from listings; restore brings it back)."""
    from ._common import tracking

    tracking().delete_run(run_id)
    typer.echo(f"deleted run {run_id}")


@app.command("restore")
def restore(run_id: str = _RUN_ID) -> None:
    """Bring back a deleted run."""
    from ._common import tracking

    tracking().restore_run(run_id)
    typer.echo(f"restored run {run_id}")


@app.command("gc")
def gc(stale_after: float | None = typer.Option(
        None, "--stale-after", metavar="SECONDS", min=0,
        help="Also fail runs of other hosts whose last heartbeat is older than this. "
        "Default: only runs of this host whose process is gone.")) -> None:
    """Mark orphaned RUNNING runs (their process died) as FAILED."""
    from ._common import tracking
    from ._output import console, make_table

    failed = tracking().gc_runs(stale_after_s=stale_after)
    if not failed:
        typer.echo("no orphaned runs")
        return
    table = make_table(f"Marked {len(failed)} orphaned run(s) FAILED", ["run_id"],
                       no_wrap=["run_id"])
    for run_id in failed:
        table.add_row(run_id)
    console().print(table)
