"""The SDK facade: settings, overrides, the tracking shortcuts and the default client."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from shipyard import errors
from shipyard.client import Client, default_client, reset_default_client
from shipyard.config import Settings, reset_settings


def test_embedded_default(client: Client, shipyard_home: Path) -> None:
    assert client.settings.db_url == f"sqlite:///{shipyard_home / 'shipyard.db'}"
    exp = client.create_experiment("embedded")
    assert (shipyard_home / "shipyard.db").is_file()
    assert client.get_experiment(exp.experiment_id).name == "embedded"
    run = client.create_run(exp.experiment_id)
    client.log_artifact_bytes(run.run_id, b"x", "x.txt")
    assert (shipyard_home / "artifacts" / "objects").is_dir()


def test_overrides_leave_the_base_settings_alone(backend_url: str, tmp_path: Path) -> None:
    base = Settings(user="ann")
    client = Client(base, db=backend_url, artifacts=str(tmp_path / "arts"))
    assert client.settings.db == backend_url
    assert client.settings.actor == "ann"
    assert base.db is None
    assert client.db.url == backend_url
    assert client.artifact_store.root == str(tmp_path / "arts")
    exp = client.create_experiment("overridden")
    assert client.tracking.audit_events("experiment", exp.experiment_id)[0]["actor"] == "ann"


def test_services_are_created_once(client: Client) -> None:
    assert client.tracking is client.tracking
    assert client.tracking.db is client.db
    assert client.tracking.artifacts is client.artifact_store


def test_tracking_shortcuts(client: Client) -> None:
    for name in Client._TRACKING:
        assert getattr(client, name) == getattr(client.tracking, name)
        assert name in dir(client)
    with pytest.raises(AttributeError, match="no_such_method"):
        client.no_such_method  # noqa: B018


def test_errors_come_through_unchanged(client: Client) -> None:
    with pytest.raises(errors.InvalidInput):
        client.get_run("not-a-run")
    with pytest.raises(errors.NotFound):
        client.get_experiment_by_name("absent")


def test_default_client_follows_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    first = default_client()
    assert default_client() is first
    monkeypatch.setenv("SHIPYARD_DB", f"sqlite:///{tmp_path / 'other.db'}")
    assert default_client().settings.db is None  # cached until reset
    reset_settings()
    reset_default_client()
    second = default_client()
    assert second is not first
    assert second.settings.db_url == f"sqlite:///{tmp_path / 'other.db'}"


def test_default_client_is_one_object_across_threads() -> None:
    seen: list[Client] = []
    barrier = threading.Barrier(8)

    def get() -> None:
        barrier.wait()
        seen.append(default_client())

    threads = [threading.Thread(target=get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8
    assert len({id(c) for c in seen}) == 1


@pytest.mark.s3
def test_client_on_s3_artifacts(backend_url: str, s3_endpoint: str, s3_bucket: str,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_S3_ENDPOINT_URL", s3_endpoint)
    reset_settings()
    client = Client(db=backend_url, artifacts=f"s3://{s3_bucket}/client-test")
    run = client.create_run(client.create_experiment("s3").experiment_id)
    info = client.log_artifact_bytes(run.run_id, b"remote bytes", "data/x.bin")
    assert client.read_artifact(run.run_id, "data/x.bin") == b"remote bytes"
    assert client.artifact_store.object_path(info.digest).startswith(
        f"s3://{s3_bucket}/client-test/objects/")
