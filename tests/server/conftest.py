"""A real Shipyard server (uvicorn in a thread, loopback, a free port) for remote tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.client import Client, reset_default_client
from shipyard.config import Settings, reset_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 until stopped."""

    def __init__(self, app: object) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def server_client(tmp_path: Path) -> Client:
    """The server side's own client: its stores live in a home of their own."""
    return Client(Settings(home=tmp_path / "server-home"))


@pytest.fixture
def live_server(server_client: Client) -> Iterator[ServerThread]:
    from shipyard.server import create_app

    with ServerThread(create_app(server_client)) as server:
        yield server


@pytest.fixture(params=["local", "remote"])
def sdk_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with the SDK on local stores, then against a live server."""
    if request.param == "remote":
        server = request.getfixturevalue("live_server")
        monkeypatch.setenv("SHIPYARD_URI", server.url)
        reset_settings()
        reset_default_client()
    return str(request.param)
