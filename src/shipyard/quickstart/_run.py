"""The quickstart walk-through: a list of named steps sharing one :class:`QuickstartContext`.

Each :class:`Step` prints a heading and does one thing (make data, train, compare, point the
way). Later capabilities add their own steps (register the best model, build features, serve,
monitor) by inserting into :data:`STEPS` before ``where-to-look``, reading what earlier
steps left on the context (``data``, ``run_ids``, ``best_run_id``, ``models``…).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from shipyard import errors
from shipyard.client import Client
from shipyard.config import Settings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["QuickstartContext", "Step", "STEPS", "EXPERIMENT", "DATASET", "resolve_home",
           "run_quickstart"]

EXPERIMENT = "credit-risk"
DATASET = "credit-applications"
PARENT_RUN = "model-selection"
MIN_ROWS = 200


@dataclass
class QuickstartContext:
    """What the steps share: where to write, the inputs, and what each step produced."""

    client: Client
    console: Console
    home: Path
    rows: int
    seed: int
    data: pd.DataFrame | None = None
    experiment_id: str = ""
    parent_run_id: str = ""
    run_ids: list[str] = field(default_factory=list)
    best_run_id: str = ""
    #: Fitted models by run id, for later steps (registry, serving).
    models: dict[str, Any] = field(default_factory=dict)
    #: Anything else a step wants to hand on, by name.
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One step of the walk-through: ``run(ctx)`` after a heading showing ``title``."""

    name: str
    title: str
    run: Callable[[QuickstartContext], None]


def _step_data(ctx: QuickstartContext) -> None:
    from ._data import make_credit_data

    df = make_credit_data(ctx.rows, ctx.seed)
    ctx.data = df
    dates = df["application_date"]
    ctx.console.print(
        f"{len(df):,} loan applications from {dates.min():%Y-%m-%d} to {dates.max():%Y-%m-%d}, "
        f"{df.shape[1]} columns, default rate {df['default'].mean():.1%} (seed {ctx.seed})")


def _step_train(ctx: QuickstartContext) -> None:
    from ._train import train_candidates

    train_candidates(ctx)


def _step_compare(ctx: QuickstartContext) -> None:
    from ._report import print_leaderboard

    print_leaderboard(ctx)


def _step_features(ctx: QuickstartContext) -> None:
    from ._features import build_features

    build_features(ctx)


def _step_register(ctx: QuickstartContext) -> None:
    from ._registry import register_champion

    register_champion(ctx)


def _step_rollout(ctx: QuickstartContext) -> None:
    from ._rollout import run_rollout

    run_rollout(ctx)


def _step_where(ctx: QuickstartContext) -> None:
    from ._report import print_where_to_look

    print_where_to_look(ctx)


#: The walk-through, in order. Insert new steps before ``where-to-look``.
STEPS: list[Step] = [
    Step("data", "Generate synthetic credit applications", _step_data),
    Step("train", "Train and track three candidate models", _step_train),
    Step("compare", "Compare the runs", _step_compare),
    Step("register", "Register the best model as credit-risk@champion", _step_register),
    Step("features", "Feature store: point-in-time training data and online features",
         _step_features),
    Step("rollout", "Serve the champion, canary the challenger, let the router decide",
         _step_rollout),
    Step("where-to-look", "Where to look next", _step_where),
]


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """``home`` if given, else ``$SHIPYARD_HOME``, else ``./.shipyard`` (next to the user)."""
    chosen = home or os.environ.get("SHIPYARD_HOME") or Path.cwd() / ".shipyard"
    return Path(chosen).expanduser().resolve()


def run_quickstart(home: str | os.PathLike[str] | None = None, *, rows: int = 5000,
                   seed: int = 7, console: Console | None = None,
                   steps: Sequence[Step] | None = None) -> QuickstartContext:
    """Run the walk-through and return its context (run ids, best run, fitted models).

    Results go to ``home`` (see :func:`resolve_home`); the database and artifact locations
    follow the usual settings (``SHIPYARD_DB``/``SHIPYARD_ARTIFACTS`` still win).
    """
    if not isinstance(rows, int) or rows < MIN_ROWS:
        raise errors.InvalidInput(f"the quickstart needs at least {MIN_ROWS} rows, got {rows!r}",
                                  field="rows")
    resolved = resolve_home(home)
    client = Client(Settings(home=resolved))
    ctx = QuickstartContext(client=client, console=console or Console(highlight=False),
                            home=resolved, rows=rows, seed=seed)
    chosen = list(STEPS if steps is None else steps)
    started = time.perf_counter()
    for number, step in enumerate(chosen, start=1):
        ctx.console.rule(f"[bold]{number}/{len(chosen)}  {step.title}", align="left")
        step.run(ctx)
    ctx.console.print(f"\n[bold green]Done[/] in {time.perf_counter() - started:.1f}s.")
    return ctx
