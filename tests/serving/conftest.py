"""Fixtures for serving tests: registered models, an in-process client, a live server."""

from __future__ import annotations

import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

import shipyard as sy
from shipyard.client import Client
from shipyard.config import Settings
from shipyard.serving import ServedModel, ServingConfig, create_app

if TYPE_CHECKING:
    from starlette.testclient import TestClient


@dataclass
class Registered:
    name: str
    X: pd.DataFrame
    model: Any


def register(model: Any, X: pd.DataFrame, name: str, **kwargs: Any) -> Registered:
    """Register ``model`` in this test's home, the way a user does."""
    with sy.start_run("serving-tests") as run:
        run.log_model(model, input_example=X.head(), registered_model_name=name, **kwargs)
    return Registered(name, X, model)


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Client:
    """A home of its own for models shared by many tests (registering takes ~0.5 s)."""
    home = Path(tmp_path_factory.mktemp("model-home"))
    return Client(Settings(home=home, db=f"sqlite:///{home / 'shipyard.db'}",
                           artifacts=str(home / "artifacts")))


def credit_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"age": rng.integers(18, 80, n),
                         "income": rng.normal(50.0, 10.0, n),
                         "debt": rng.normal(20.0, 5.0, n)})


@pytest.fixture(scope="session")
def credit(model_home: Client) -> Registered:
    """A logistic regression on three numeric columns (age: long, income/debt: double),
    registered as ``credit`` v1 in :func:`model_home`."""
    from sklearn.linear_model import LogisticRegression

    X = credit_frame()
    y = (X["income"] - X["debt"] + rng_noise(len(X)) > 30).astype(int)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    run = model_home.tracking.create_run(
        model_home.tracking.get_or_create_experiment("serving").experiment_id)
    model_home.registry.log_model(run.run_id, model, input_example=X.head(),
                                  registered_model_name="credit")
    return Registered("credit", X, model)


def rng_noise(n: int) -> np.ndarray:
    return np.random.default_rng(1).normal(0, 3, n)


@pytest.fixture(scope="session")
def served(credit: Registered, model_home: Client) -> ServedModel:
    return ServedModel.load("credit/1", model_home)


@pytest.fixture
def app_client(served: ServedModel) -> Iterator[TestClient]:
    with make_client(create_app(served, ServingConfig(max_body_bytes=64 * 1024))) as client:
        yield client


def make_client(app: Any) -> TestClient:
    """Starlette's in-process client (its import warns about httpx; not our concern)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    return TestClient(app)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 (lifespan on, so shutdown flushes the log)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", loop="asyncio", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
