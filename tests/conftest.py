"""Shared fixtures.

Every test gets its own SHIPYARD_HOME (SQLite + local artifacts). Backend fixtures run the
same test on every real backend: ``backend_url`` on SQLite and PostgreSQL, ``artifact_store``
on a local folder and S3 (moto on loopback). A missing service skips those tests with the
reason, or fails them when ``SHIPYARD_REQUIRE_SERVICES`` is set (CI).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from shipyard import fluent
from shipyard.artifacts import ArtifactStore
from shipyard.client import Client, reset_default_client
from shipyard.config import reset_settings
from shipyard.store import Database
from shipyard.tracking import TrackingService

PG_ADMIN_URL = os.environ.get(
    "SHIPYARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# -- services: skip when absent, fail when SHIPYARD_REQUIRE_SERVICES is set -------------------

def services_required() -> bool:
    return os.environ.get("SHIPYARD_REQUIRE_SERVICES", "").lower() not in ("", "0", "false", "no")


def service_unavailable(reason: str) -> NoReturn:
    """Skip the test with ``reason``; fail it instead when the environment demands services."""
    if services_required():
        pytest.fail(f"{reason} (SHIPYARD_REQUIRE_SERVICES is set)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def service() -> Callable[[str], NoReturn]:
    """The skip-or-fail helper, for tests that probe a service themselves."""
    return service_unavailable


# -- isolation ---------------------------------------------------------------------------------

def _close_fluent_writers() -> None:
    with fluent._lock:
        writers = list(fluent._writers.values())
        fluent._writers.clear()
    for writer in writers:
        with contextlib.suppress(Exception):
            writer.close()


@pytest.fixture(autouse=True)
def shipyard_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point Shipyard at a fresh home folder and forget cached settings and clients."""
    home = tmp_path / "shipyard-home"
    monkeypatch.setenv("SHIPYARD_HOME", str(home))
    for var in ("SHIPYARD_DB", "SHIPYARD_ARTIFACTS", "SHIPYARD_SYNC_LOGGING", "SHIPYARD_CONFIG",
                "SHIPYARD_SYSTEM_METRICS", "SHIPYARD_FLUSH_INTERVAL", "SHIPYARD_BUFFER_SIZE",
                "SHIPYARD_S3_ENDPOINT_URL", "SHIPYARD_USER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    reset_settings()
    reset_default_client()
    yield home
    try:
        while fluent.active_run() is not None:
            fluent.end_run()
        fluent.flush()
    finally:
        _close_fluent_writers()
        reset_settings()
        reset_default_client()


@pytest.fixture
def client(shipyard_home: Path) -> Client:
    """A client on the embedded default of this test's home."""
    return Client()


# -- PostgreSQL ----------------------------------------------------------------------------------

def _admin_engine():  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    return sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool,
                            connect_args={"connect_timeout": 3})


def _create_pg_database(prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return name


def _drop_pg_database(name: str) -> None:
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


def _pg_url(name: str) -> str:
    import sqlalchemy as sa

    return sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(
        hide_password=False)


@pytest.fixture(scope="session")
def postgres_available() -> None:
    """Skip (or fail) when PostgreSQL does not answer at PG_ADMIN_URL."""
    try:
        import psycopg  # noqa: F401
    except ModuleNotFoundError:
        service_unavailable("psycopg is not installed: pip install 'shipyard-mlops[postgres]'")
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        first_line = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        service_unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {first_line}")
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_session_url(postgres_available: None, worker_id: str) -> Iterator[str]:
    """A database of this xdist worker for the session, migrated; dropped at the end."""
    name = _create_pg_database(f"shipyard_test_{worker_id}")
    engine = _admin_engine()
    try:  # tests need no durability across a server crash; commits get much cheaper
        with engine.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    finally:
        engine.dispose()
    url = _pg_url(name)
    Database(url)
    yield url
    Database.dispose_all()
    _drop_pg_database(name)


@pytest.fixture
def postgres_url(postgres_session_url: str) -> str:
    """The worker's PostgreSQL database, emptied before the test (tables kept)."""
    db = Database(postgres_session_url)
    # DELETE beats TRUNCATE on tables this small (TRUNCATE swaps files and syncs them).
    with db.engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL lock_timeout = '20s'")
        for table in reversed(db.metadata().sorted_tables):
            conn.execute(table.delete())
    return postgres_session_url


@pytest.fixture
def fresh_postgres_url(postgres_available: None) -> Iterator[str]:
    """A brand-new, empty (unmigrated) PostgreSQL database, dropped after the test."""
    name = _create_pg_database("shipyard_fresh")
    yield _pg_url(name)
    _drop_pg_database(name)


# -- metadata backends -------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the metadata backend the test runs on."""
    return str(request.param)


@pytest.fixture
def backend_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated metadata database: a SQLite file in tmp, or PostgreSQL."""
    if backend == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'backend' / 'shipyard.db'}"


@pytest.fixture
def empty_backend_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a database nothing has touched yet (no tables), on each backend."""
    if backend == "postgres":
        return str(request.getfixturevalue("fresh_postgres_url"))
    return f"sqlite:///{tmp_path / 'fresh' / 'shipyard.db'}"


@pytest.fixture
def database(backend_url: str) -> Database:
    return Database(backend_url)


@pytest.fixture
def local_artifacts(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "artifacts"))


@pytest.fixture
def tracking(database: Database, local_artifacts: ArtifactStore) -> TrackingService:
    """A tracking service on ``backend_url`` with a local artifact store in tmp."""
    return TrackingService(database, local_artifacts, actor="tester")


@pytest.fixture
def sdk_backend(backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the SDK's default client (``sy.start_run`` …) at ``backend_url``."""
    monkeypatch.setenv("SHIPYARD_DB", backend_url)
    monkeypatch.setenv("SHIPYARD_ARTIFACTS", str(tmp_path / "sdk-artifacts"))
    reset_settings()
    reset_default_client()
    return backend_url


# -- S3 (moto on loopback) -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (a free port) for this worker, with fake credentials."""
    try:
        import s3fs  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ModuleNotFoundError as exc:
        service_unavailable(f"S3 tests need s3fs and moto[server]: {exc}")
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(_AWS_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001
        service_unavailable(f"S3 (moto) could not start on 127.0.0.1: {exc}")
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def s3_bucket(s3_endpoint: str) -> str:
    import boto3

    name = "shipyard-test"
    try:
        boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
            Bucket=name)
    except Exception as exc:  # noqa: BLE001
        service_unavailable(f"S3 not reachable at {s3_endpoint}: {exc}")
    return name


@pytest.fixture
def s3_artifacts(s3_endpoint: str, s3_bucket: str) -> ArtifactStore:
    """An S3 artifact store under a prefix of its own in the moto bucket."""
    return ArtifactStore(f"s3://{s3_bucket}/{uuid.uuid4().hex}", s3_endpoint_url=s3_endpoint)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def artifact_store(request: pytest.FixtureRequest) -> ArtifactStore:
    """The same artifact tests on a local folder and on S3."""
    name = "local_artifacts" if request.param == "local" else "s3_artifacts"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]
