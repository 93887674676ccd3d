"""``shipyard quickstart``: the guided tour (the work lives in :mod:`shipyard.quickstart`)."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["quickstart"]


def quickstart(
    home: Path | None = typer.Option(
        None, "--home", metavar="DIR", file_okay=False,
        help="Shipyard home for the results. Default: $SHIPYARD_HOME, else ./.shipyard."),
    rows: int = typer.Option(5000, "--rows", min=200, max=1_000_000,
                             help="Customers in the synthetic credit data set."),
    seed: int = typer.Option(7, "--seed", help="Random seed of the data and the models."),
) -> None:
    """Generate credit-risk data, train and track three models, and show where to look.

    Everything lands in a local Shipyard home (SQLite + files); takes well under a minute.
    """
    from shipyard.quickstart import run_quickstart

    run_quickstart(home=home, rows=rows, seed=seed)
