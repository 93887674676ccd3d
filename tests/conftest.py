"""Shared fixtures: every test gets its own SHIPYARD_HOME (SQLite + local artifacts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard import fluent
from shipyard.client import Client, reset_default_client
from shipyard.config import reset_settings


@pytest.fixture(autouse=True)
def shipyard_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point Shipyard at a fresh home folder and forget cached settings and clients."""
    home = tmp_path / "shipyard-home"
    monkeypatch.setenv("SHIPYARD_HOME", str(home))
    for var in ("SHIPYARD_DB", "SHIPYARD_ARTIFACTS", "SHIPYARD_SYNC_LOGGING", "SHIPYARD_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    reset_settings()
    reset_default_client()
    yield home
    while fluent.active_run() is not None:
        fluent.end_run()
    fluent.flush()
    reset_settings()
    reset_default_client()


@pytest.fixture
def client(shipyard_home: Path) -> Client:
    """A client on the embedded default of this test's home."""
    return Client()
