"""Fixtures: a registered model ``credit`` with three versions (``champion`` → v1), on the
embedded default or on each metadata backend, and the SDK suite's local/remote modes."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.client import Client
from shipyard.deployments import DeploymentService
from shipyard.registry import RegistryService, VersionStatus
from shipyard.store import now_ms
from shipyard.tracking import TrackingService

# The shared SDK suite's fixtures: a live server in a thread, and local/remote modes.
from tests.server.conftest import live_server, sdk_mode, server_client  # noqa: F401

MODEL = "credit"


def register_versions(registry: RegistryService, count: int = 3) -> None:
    """``count`` ready versions of MODEL, the first one aliased ``champion``.

    The version rows go straight into the registry's tables (a deployment only reads
    versions and moves aliases), which keeps each test's setup in milliseconds; the
    registry's own tests cover logging real models.
    """
    now = now_ms()
    with registry.db.write() as conn:
        registry.store.insert_model(conn, MODEL, None, "tester", now)
        for version in range(1, count + 1):
            registry.store.insert_version(conn, {
                "name": MODEL, "version": version, "status": VersionStatus.READY.value,
                "source": f"runs:/{'0' * 32}/model", "run_id": None,
                "digest": f"{version:064x}", "flavor": "sklearn", "creator": "tester",
                "creation_time": now, "last_update_time": now})
    registry.set_alias(MODEL, "champion", 1)


@pytest.fixture
def deployments(tracking: TrackingService, tmp_path: Path) -> DeploymentService:
    """A deployment service on ``backend_url`` (SQLite and PostgreSQL), MODEL registered."""
    registry = RegistryService(tracking, tmp_path / "model-cache")
    register_versions(registry)
    return DeploymentService(registry)


@pytest.fixture
def local_deployments(client: Client) -> DeploymentService:
    """The embedded default's deployment service, MODEL registered."""
    register_versions(client.registry)
    return client.deployments


CANARY = {"kind": "canary", "stable": "champion", "canary": "challenger", "percent": 10,
          "steps": [10, 25, 50, 100], "step_interval_s": 60}
ARMS = {"champion": "@champion", "challenger": "3"}
