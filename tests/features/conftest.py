"""Fixtures of the feature-store tests: one URL per online store backend."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import service_unavailable

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


@pytest.fixture(scope="session")
def redis_available() -> None:
    """Skip (or fail, with SHIPYARD_REQUIRE_SERVICES) when Redis does not answer."""
    try:
        import redis
    except ModuleNotFoundError:
        service_unavailable("redis is not installed: pip install 'shipyard-mlops[redis]'")
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable(f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}: {exc}")
    finally:
        client.close()


@pytest.fixture
def redis_online_url(redis_available: None) -> Iterator[str]:
    """A Redis online store URL with a key prefix of its own, emptied after the test."""
    import redis

    prefix = f"shipyard-test-{uuid.uuid4().hex[:12]}"
    yield f"redis://{REDIS_HOST}:{REDIS_PORT}/0?prefix={prefix}"
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=5000))
        for start in range(0, len(keys), 5000):
            client.unlink(*keys[start:start + 5000])
    finally:
        client.close()


@pytest.fixture(params=["sqlite", "redis"])
def online_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same online store test on an SQLite file in tmp and on the local Redis."""
    if request.param == "redis":
        return str(request.getfixturevalue("redis_online_url"))
    return f"sqlite:///{tmp_path / 'online' / 'online.db'}"
