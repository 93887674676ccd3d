"""One progress bar for long jobs (batch scoring, materialization): rich, on stderr."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

__all__ = ["progress_bar"]


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, label: str,
                 unit: str = "") -> Iterator[Callable[[int], object]]:
    """A rich progress bar of ``total`` on stderr (plain, no animation, when stderr is no
    terminal); yields ``advance(n)``. Disabled: a no-op ``advance``, and rich not imported."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if unit:
        columns.append(TextColumn(unit))
    with Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
