"""Fixtures for rollout tests: registered versions, deployments, an in-process router app."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

from shipyard.client import Client
from shipyard.rollout import RouterOptions, RouterState, create_router_app
from shipyard.serving import ServingConfig

from .models import Constant

if TYPE_CHECKING:
    from starlette.testclient import TestClient

#: Router intervals short enough for a test to see several rounds in well under a second.
FAST = RouterOptions(refresh_interval=0.05, control_interval=0.05, flush_interval=0.05,
                     credit_wait=5.0, seed=11)
CONFIG = ServingConfig(max_wait_ms=0.0, predlog_flush_interval=0.05)


def frame(n: int = 5, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"age": rng.integers(20, 60, n).astype(np.int64),
                         "income": rng.normal(50.0, 10.0, n)})


def register(client: Client, name: str, *models: Any) -> list[int]:
    """Register each model as the next version of ``name``; returns the versions."""
    tracking = client.tracking
    run = tracking.create_run(tracking.get_or_create_experiment("rollout-tests").experiment_id)
    versions = []
    for i, model in enumerate(models):
        info = client.registry.log_model(run.run_id, model, f"model-{i}",
                                         input_example=frame(), registered_model_name=name)
        assert info.registered_version is not None
        versions.append(info.registered_version.version)
    return versions


@pytest.fixture
def credit(client: Client) -> str:
    """``credit``: v1 always predicts 0 (p=0.2), v2 always predicts 1 (p=0.9); champion=v1."""
    register(client, "credit", Constant(0, 0.2), Constant(1, 0.9))
    client.registry.set_alias("credit", "champion", 1)
    return "credit"


def make_client(app: Any) -> TestClient:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    return TestClient(app)


@contextmanager
def serving(name: str, client: Client, options: RouterOptions = FAST,
            config: ServingConfig = CONFIG, *, start: bool = True,
            ) -> Iterator[tuple[TestClient, RouterState]]:
    """The router of deployment ``name`` behind the model server's app, in process
    (``start=False``: no background thread; the test calls ``router.worker``'s duties)."""
    router = RouterState(name, config, client=client, options=options, start=start)
    with make_client(create_router_app(router)) as http:
        yield http, router


def row(age: int = 30, income: float = 50.0) -> dict[str, Any]:
    return {"records": [{"age": age, "income": income}]}


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (fails after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
