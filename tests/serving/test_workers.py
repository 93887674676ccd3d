"""`shipyard serve --workers N`: a worker killed under load is replaced, the others carry on."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipyard.client import Client

from .conftest import register
from .serveproc import Load, ServeProcess


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_the_others_keep_serving(shipyard_home: Path) -> None:
    from sklearn.tree import DecisionTreeClassifier

    X = pd.DataFrame({"x": np.arange(20.0), "y": np.arange(20.0) % 3})
    register(DecisionTreeClassifier().fit(X, (X["x"] > 9).astype(int)), X, "tree")
    Client().registry.set_alias("tree", "champion", 1)
    threads = 4
    # Following an alias: the replacement worker resolves it when it starts.
    with ServeProcess(shipyard_home, "tree@champion", "--workers", "2") as server:
        before = server.worker_pids(2)
        assert len(before) == 2, before
        # A new connection per request, so that requests spread over both workers.
        with Load(f"{server.url}/predict", {"records": [{"x": 15.0, "y": 1.0}]},
                  threads=threads, keep_alive=False) as load:
            load.wait_for_successes(50)
            victim = min(before)
            os.kill(victim, signal.SIGKILL)
            killed_at = len(load.ok)
            server.wait_for(lambda: server.get("/health").json()["pid"] not in before,
                            "answering from a replacement worker")
            replaced_at = len(load.ok)
            load.wait_for_successes(50)
        after = server.worker_pids(2)
    # Only requests the killed worker had accepted can fail: one per client thread at most.
    assert len(load.failures) <= threads, load.failures
    assert all("Error" in f for f in load.failures), load.failures  # dropped, never a 5xx
    assert replaced_at > killed_at  # the surviving worker answered while it was replaced
    assert len(load.ok) >= replaced_at + 50 and set(load.ok) == {1}
    assert victim not in after and len(after) == 2 and after - before
