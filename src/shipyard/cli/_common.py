"""Shared lookups for commands: the tracking service and name-or-id resolution.

Imported inside command functions only: it pulls in the client and SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard import errors
from shipyard.client import Client

if TYPE_CHECKING:
    from shipyard.tracking import Experiment, TrackingService

__all__ = ["tracking", "resolve_experiment", "experiment_ids", "experiment_names"]


def tracking() -> TrackingService:
    """The tracking service of the configured home (``SHIPYARD_HOME``/``SHIPYARD_DB``…)."""
    return Client().tracking


def resolve_experiment(service: TrackingService, ref: str) -> Experiment:
    """The experiment whose id (all digits) or else name is ``ref``, deleted ones included.

    Raises :class:`~shipyard.errors.NotFound` naming ``ref`` when neither matches.
    """
    if ref.strip().isdigit():
        try:
            return service.get_experiment(ref.strip())
        except errors.NotFound:
            pass  # a name made of digits
    try:
        return service.get_experiment_by_name(ref)
    except errors.NotFound:
        raise errors.NotFound(f"experiment {ref!r} does not exist") from None


def experiment_ids(service: TrackingService, refs: list[str] | None) -> list[str] | None:
    """Experiment ids for ``refs`` (names or ids); None (every experiment) when empty."""
    if not refs:
        return None
    return [resolve_experiment(service, ref).experiment_id for ref in refs]


def experiment_names(service: TrackingService) -> dict[str, str]:
    """Every experiment's name by id, deleted ones included."""
    return {e.experiment_id: e.name for e in service.list_experiments("all")}
