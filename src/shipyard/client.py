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

from shipyard import errors
from shipyard.config import Settings, get_settings

if TYPE_CHECKING:
    from shipyard.api._remote import Transport
    from shipyard.artifacts import ArtifactStore
    from shipyard.auth import AuthService
    from shipyard.deployments import DeploymentService
    from shipyard.features import FeatureRegistry, FeatureStore
    from shipyard.registry import RegistryService
    from shipyard.store import Database
    from shipyard.tracking import TrackingService

__all__ = ["Client", "connect", "default_client", "reset_default_client"]


class Client:
    """Shipyard over local stores, or over a server when ``uri`` / ``SHIPYARD_URI`` is set.

    Remote services are the local classes with their route methods sent over HTTP
    (:mod:`shipyard.api`), so both behave the same and raise the same errors.
    """

    def __init__(self, settings: Settings | None = None, *, db: str | None = None,
                 artifacts: str | None = None, uri: str | None = None,
                 token: str | None = None) -> None:
        base = settings or get_settings()
        overrides = {k: val for k, val in (("db", db), ("artifacts", artifacts), ("uri", uri),
                                           ("token", token)) if val}
        self.settings = base.model_copy(update=overrides) if overrides else base

    @property
    def is_remote(self) -> bool:
        """True when the client talks to a server (``SHIPYARD_URI``) rather than the stores."""
        return bool(self.settings.uri)

    @cached_property
    def transport(self) -> Transport:
        from shipyard.api._remote import Transport

        if not self.settings.uri:
            raise errors.Conflict("this client is local: set SHIPYARD_URI to use a server")
        return Transport(self.settings.uri, self.settings.token)

    @cached_property
    def db(self) -> Database:
        from shipyard.store import Database

        if self.is_remote:
            raise errors.Conflict(f"this client talks to {self.settings.uri}; it has no "
                                  "database of its own")
        return Database(self.settings.db_url)

    @cached_property
    def artifact_store(self) -> ArtifactStore:
        from shipyard.artifacts import ArtifactStore

        return ArtifactStore(self.settings.artifacts_uri,
                             s3_endpoint_url=self.settings.s3_endpoint_url)

    @cached_property
    def tracking(self) -> TrackingService:
        from shipyard.tracking import TrackingService

        if self.is_remote:
            from shipyard.api._remote import RemoteTrackingMixin, remote_service

            return remote_service(TrackingService, "tracking", self.transport,
                                  mixin=RemoteTrackingMixin, actor=self.settings.actor)
        return TrackingService(self.db, self.artifact_store, self.settings.actor)

    @cached_property
    def registry(self) -> RegistryService:
        from shipyard.registry import RegistryService

        cache = self.settings.home / "cache" / "models"
        if self.is_remote:
            from shipyard.api._remote import remote_service

            return remote_service(RegistryService, "registry", self.transport,
                                  tracking=self.tracking, cache_dir=cache,
                                  actor=self.settings.actor)
        return RegistryService(self.tracking, cache)

    @cached_property
    def deployments(self) -> DeploymentService:
        """Deployments of registered models: rollout specs, decisions, shared arm state."""
        from shipyard.deployments import DeploymentService

        if self.is_remote:
            from shipyard.api._remote import remote_service

            return remote_service(DeploymentService, "deployments", self.transport,
                                  registry=self.registry, actor=self.settings.actor)
        return DeploymentService(self.registry)

    @cached_property
    def features(self) -> FeatureRegistry:
        """The feature registry (definitions applied from feature repositories)."""
        from shipyard.features import FeatureRegistry

        return FeatureRegistry(self.db, self.settings.actor, home=self.settings.home)

    @cached_property
    def feature_store(self) -> FeatureStore:
        """Training data, materialization and online features over the feature registry."""
        from shipyard.features import FeatureStore

        if self.is_remote:
            from shipyard.api._remote import remote_service

            return remote_service(FeatureStore, "features", self.transport)
        return FeatureStore(self.db, self.features, online_url=self.settings.online_store,
                            repo_path=self.settings.feature_repo)

    @cached_property
    def auth(self) -> AuthService:
        from shipyard.auth import AuthService

        if self.is_remote:
            from shipyard.api._remote import remote_service

            return remote_service(AuthService, "auth", self.transport,
                                  actor=self.settings.actor)
        return AuthService(self.db, self.settings.actor)

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


def connect(uri: str, token: str | None = None) -> Client:
    """Make the SDK's module-level functions talk to the server at ``uri``; returns the client."""
    global _default
    client = Client(uri=uri, token=token)
    with _default_lock:
        _default = client
    return client
