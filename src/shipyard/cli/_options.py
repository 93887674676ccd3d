"""Choices and options shared by several commands (stdlib and typer only: loaded at startup)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import typer

__all__ = ["Output", "OutputWithCsv", "View", "output_option", "view_option"]


class Output(StrEnum):
    """How a result is printed: a rich table for people, JSON for scripts."""

    table = "table"
    json = "json"


class OutputWithCsv(StrEnum):
    """Like :class:`Output`, plus CSV for listings of runs."""

    table = "table"
    json = "json"
    csv = "csv"


class View(StrEnum):
    """Which lifecycle stage a listing shows."""

    active_only = "active_only"
    deleted_only = "deleted_only"
    all = "all"


def output_option(*, csv: bool = False) -> Any:
    """A ``--output/-o`` option; with ``csv`` the choices include CSV."""
    default = OutputWithCsv.table if csv else Output.table
    formats = "table, json or csv" if csv else "table or json"
    return typer.Option(default, "--output", "-o", help=f"Print as {formats}.",
                        case_sensitive=False)


def view_option(what: str) -> Any:
    """A ``--view`` option choosing active, deleted or all ``what``."""
    return typer.Option(View.active_only, "--view",
                        help=f"Which {what} to list: active_only, deleted_only or all.",
                        case_sensitive=False)
