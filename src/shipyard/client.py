"""The SDK facade: one object that reaches every capability.

``Client()`` works on the embedded default (or whatever ``SHIPYARD_DB`` /
``SHIPYARD_ARTIFACTS`` name). Capability services hang off it as attributes; the most used
tracking calls are also methods of the client itself, so ``Client().search_runs(...)``
reads like MLflow's ``MlflowClient``.
"""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

from shipyard.config import Settings, get_settings

if TYPE_CHECKING:
    from shipyard.artifacts import ArtifactStore
    from shipyard.registry import RegistryService
    from shipyard.store import Database
    from shipyard.tracking import TrackingService

__all__ = ["Client", "default_client", "reset_default_client"]


class Client:
    """Shipyard over local stores (a remote HTTP twin comes with the tracking server)."""

    def __init__(self, settings: Settings | None = None, *, db: str | None = None,
                 artifacts: str | None = None) -> None:
        base = settings or get_settings()
        overrides = {k: val for k, val in (("db", db), ("artifacts", artifacts)) if val}
        self.settings = base.model_copy(update=overrides) if overrides else base

    @cached_property
    def db(self) -> Database:
        from shipyard.store import Database

        return Database(self.settings.db_url)

    @cached_property
    def artifact_store(self) -> ArtifactStore:
        from shipyard.artifacts import ArtifactStore

        return ArtifactStore(self.settings.artifacts_uri,
                             s3_endpoint_url=self.settings.s3_endpoint_url)

    @cached_property
    def tracking(self) -> TrackingService:
        from shipyard.tracking import TrackingService

        return TrackingService(self.db, self.artifact_store, self.settings.actor)

    @cached_property
    def registry(self) -> RegistryService:
        from shipyard.registry import RegistryService

        return RegistryService(self.tracking, self.settings.home / "cache" / "models")

    # The tracking service's public methods, reachable on the client directly.
    _TRACKING = frozenset({
        "create_experiment", "get_experiment", "get_experiment_by_name",
        "get_or_create_experiment", "list_experiments", "rename_experiment",
        "delete_experiment", "restore_experiment", "set_experiment_tag", "create_run",
        "get_run", "get_runs", "end_run", "set_run_name", "delete_run", "restore_run",
        "gc_runs", "log_batch", "log_metric", "log_param", "set_tag", "delete_tag",
        "get_metric_history", "search_runs", "log_input", "log_artifact_file",
        "log_artifact_bytes", "list_artifacts", "read_artifact", "download_artifacts",
        "audit_events",
    })

    def __getattr__(self, name: str) -> Any:
        if name in Client._TRACKING:
            return getattr(self.tracking, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | Client._TRACKING)


_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The process-wide client used by the module-level SDK functions."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Client()
    return _default


def reset_default_client() -> None:
    """Forget the default client (after changing settings; in tests)."""
    global _default
    with _default_lock:
        _default = None
