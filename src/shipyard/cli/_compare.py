"""``runs compare``: runs side by side, differing params and best metric values marked."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from ._common import experiment_names
from ._options import Output
from ._output import console, fmt_duration, fmt_value, print_json
from ._run_views import status_text

if TYPE_CHECKING:
    from shipyard.tracking import Run, TrackingService

__all__ = ["print_comparison", "lower_is_better", "best_runs", "differing_params"]

_LOWER_BETTER = re.compile(r"(^|[_./-])(loss|error|err|mse|rmse|mae|mape|brier)($|[_./-])",
                           re.IGNORECASE)
_DIFF_STYLE = "bold yellow"
_BEST_STYLE = "bold green"


def lower_is_better(metric: str) -> bool:
    """True for metrics where smaller wins, judged by name: log_loss, val_error, rmse…"""
    return bool(_LOWER_BETTER.search(metric))


def best_runs(runs: Sequence[Run]) -> dict[str, list[str]]:
    """For each metric that at least two runs logged with different values, the ids of the
    runs with the best value (several when they tie)."""
    best: dict[str, list[str]] = {}
    for key in sorted({k for r in runs for k in r.metrics}):
        values = {r.run_id: r.metrics[key] for r in runs
                  if key in r.metrics and math.isfinite(r.metrics[key])}
        if len(values) < 2 or len(set(values.values())) < 2:
            continue
        top = (min if lower_is_better(key) else max)(values.values())
        best[key] = [run_id for run_id, value in values.items() if value == top]
    return best


def differing_params(runs: Sequence[Run]) -> list[str]:
    """Param keys whose value (or absence) is not the same in every run."""
    keys = sorted({k for r in runs for k in r.params})
    return [k for k in keys if len({r.params.get(k) for r in runs}) > 1]


def print_comparison(service: TrackingService, run_ids: Sequence[str], output: Output) -> None:
    """Print the runs side by side (a rich table) or their params and metrics as JSON."""
    runs = [service.get_run(run_id) for run_id in run_ids]
    best = best_runs(runs)
    differ = differing_params(runs)
    if output is Output.json:
        print_json(_comparison_record(runs, best, differ))
        return
    console().print(_comparison_table(runs, experiment_names(service), best, differ))


def _comparison_record(runs: Sequence[Run], best: dict[str, list[str]],
                       differ: list[str]) -> dict[str, Any]:
    return {
        "runs": [{"run_id": r.run_id, "run_name": r.run_name, "experiment_id": r.experiment_id,
                  "status": r.status.value} for r in runs],
        "params": {k: {r.run_id: r.params.get(k) for r in runs}
                   for k in sorted({k for r in runs for k in r.params})},
        "differing_params": differ,
        "metrics": {k: {r.run_id: r.metrics.get(k) for r in runs}
                    for k in sorted({k for r in runs for k in r.metrics})},
        "best": best,
    }


def _comparison_table(runs: Sequence[Run], names: dict[str, str], best: dict[str, list[str]],
                      differ: list[str]) -> Table:
    table = Table(title=f"Comparing {len(runs)} runs", title_justify="left",
                  header_style="bold",
                  caption="≠ param differs between runs   * best value of the metric",
                  caption_justify="left")
    table.add_column("", style="bold", no_wrap=True)
    for r in runs:
        table.add_column(f"{r.run_name or ''}\n{r.run_id[:8]}", overflow="fold")
    table.add_row("run_id", *(r.run_id for r in runs))
    table.add_row("experiment", *(names.get(r.experiment_id, r.experiment_id) for r in runs))
    table.add_row("status", *(status_text(r.status.value) for r in runs))
    table.add_row("duration", *(fmt_duration(r.duration_ms) for r in runs))
    table.add_section()
    for key in sorted({k for r in runs for k in r.params}):
        style = _DIFF_STYLE if key in differ else ""
        label = Text(f"≠ {key}" if key in differ else f"  {key}", style=style)
        table.add_row(label, *[Text(r.params.get(key, "-"), style=style) for r in runs])
    table.add_section()
    for key in sorted({k for r in runs for k in r.metrics}):
        cells = []
        for r in runs:
            value = fmt_value(r.metrics.get(key)) if key in r.metrics else "-"
            is_best = r.run_id in best.get(key, ())
            cells.append(Text(f"{value} *" if is_best else value,
                              style=_BEST_STYLE if is_best else ""))
        arrow = "↓" if lower_is_better(key) else "↑"
        table.add_row(f"  {key} {arrow}", *cells)
    return table
