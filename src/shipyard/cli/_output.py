"""Printing for the CLI: rich tables for people, JSON and CSV for scripts, value formatting.

Imported inside command functions only (rich is not needed for ``--help``).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = [
    "console",
    "make_table",
    "print_json",
    "print_csv",
    "fmt_time",
    "fmt_duration",
    "fmt_value",
    "fmt_size",
]


def console() -> Console:
    """A console on the current stdout (rich honours ``COLUMNS`` when stdout is no terminal)."""
    return Console(highlight=False)


def make_table(title: str | None, columns: Sequence[str], *,
               no_wrap: Iterable[str] = ()) -> Table:
    """A table with the house style; columns named in ``no_wrap`` are never folded."""
    keep = set(no_wrap)
    table = Table(title=title, title_justify="left", header_style="bold")
    for name in columns:
        table.add_column(name, no_wrap=name in keep, overflow="fold")
    return table


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON (NaN and infinities become null) to stdout."""
    sys.stdout.write(json.dumps(_finite(data), indent=2, default=str) + "\n")


def print_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Write ``rows`` as CSV with a header; ``columns`` default to every key, first-seen order."""
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _finite(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def fmt_time(ms: int | None) -> str:
    """Epoch milliseconds as local ``YYYY-MM-DD HH:MM:SS``; empty for None."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(ms: int | None) -> str:
    """A duration in milliseconds as ``850ms``, ``12.3s``, ``4m 05s`` or ``2h 03m``."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def fmt_value(value: Any) -> str:
    """A metric or param value for a table: floats with up to 6 significant digits."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    return str(value)


def fmt_size(size: int) -> str:
    """A byte count as ``512 B``, ``1.5 KiB``, ``3.2 MiB`` or ``1.1 GiB``."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
