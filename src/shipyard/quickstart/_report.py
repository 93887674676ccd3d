"""The closing steps: the leaderboard of candidate runs and where to look next."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.table import Table

from shipyard import errors
from shipyard.config import Settings
from shipyard.fluent import search_runs

from ._run import EXPERIMENT

if TYPE_CHECKING:
    from ._run import QuickstartContext

__all__ = ["print_leaderboard", "print_where_to_look"]

_COLUMNS = ("roc_auc", "f1", "log_loss", "train_roc_auc")


def print_leaderboard(ctx: QuickstartContext) -> None:
    """The candidate runs sorted by validation ROC AUC (found with ``search_runs``)."""
    if not ctx.parent_run_id:
        raise errors.Conflict("the compare step needs trained runs: run the train step first")
    runs = search_runs(experiment_ids=[ctx.experiment_id],
                       filter_string=f"attributes.parent_run_id = '{ctx.parent_run_id}'",
                       order_by=["metrics.roc_auc DESC"], output_format="list",
                       client=ctx.client)
    table = Table(title=f"Candidates of run {ctx.parent_run_id[:8]}, best first",
                  title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    for name in ("run", "model", *_COLUMNS):
        table.add_column(name.replace("_roc_", "_"), no_wrap=True,
                         justify="left" if name in ("run", "model") else "right")
    for rank, run in enumerate(runs, start=1):
        table.add_row(run.run_id[:8], run.run_name or "",
                      *(f"{run.metrics.get(k, float('nan')):.4f}" for k in _COLUMNS),
                      style="bold green" if rank == 1 else "")
    ctx.console.print(table)
    if runs:
        best = runs[0]
        ctx.best_run_id = best.run_id
        ctx.console.print(f"Best run: [bold]{best.run_id}[/] ({best.run_name}, "
                          f"roc_auc {best.metrics.get('roc_auc', float('nan')):.4f})")


def print_where_to_look(ctx: QuickstartContext) -> None:
    """The home folder, database, artifacts and the CLI commands to explore the results."""
    settings = ctx.client.settings
    out = ctx.console
    out.print(f"  home       {ctx.home}", markup=False)
    out.print(f"  database   {settings.db_url}", markup=False)
    out.print(f"  artifacts  {settings.artifacts_uri}", markup=False)
    out.print("\nExplore the runs from this folder:")
    if Settings().home != ctx.home:
        out.print(f"  export SHIPYARD_HOME={ctx.home}", soft_wrap=True, markup=False)
    commands = [
        f"shipyard runs list --experiment {EXPERIMENT}",
        f"shipyard runs search --experiment {EXPERIMENT} --filter \"metrics.roc_auc > 0.7\" "
        "--order-by \"metrics.roc_auc DESC\"",
        f"shipyard runs compare {' '.join(ctx.run_ids)}",
    ]
    if ctx.best_run_id:
        commands.append(f"shipyard runs show {ctx.best_run_id}")
    if "champion" in ctx.extras:
        commands += ["shipyard models list", "shipyard models show credit-risk@champion",
                     "shipyard models lineage credit-risk@champion",
                     "shipyard models package credit-risk@champion --out deploy/"]
    if "feature_repo" in ctx.extras and ctx.data is not None:
        customer = ctx.data["customer_id"].iloc[0]
        commands += [f"shipyard features plan {ctx.extras['feature_repo']}",
                     "shipyard features describe customer_profile",
                     "shipyard features online --service credit_model_features "
                     f"-e customer_id={customer}"]
    for command in commands:
        out.print(f"  {command}", soft_wrap=True, markup=False)
