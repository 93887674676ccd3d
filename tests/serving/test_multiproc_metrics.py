"""`/metrics` with several workers: Prometheus multiprocess mode sums every worker's samples."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from .conftest import register
from .serveproc import ServeProcess, metric


def client_per_worker(url: str, workers: int) -> dict[int, httpx.Client]:
    """One keep-alive client pinned to each worker: its one connection stays with the
    worker that accepted it, which /health names."""
    pinned: dict[int, httpx.Client] = {}
    while len(pinned) < workers:
        client = httpx.Client(base_url=url, timeout=10, limits=httpx.Limits(max_connections=1))
        pid = client.get("/health").json()["pid"]
        if pid in pinned:
            client.close()
        else:
            pinned[pid] = client
    return pinned


@pytest.mark.slow
def test_metrics_on_any_worker_report_the_total(shipyard_home: Path, tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    X = pd.DataFrame({"x": np.arange(10.0), "y": np.arange(10.0) % 3})
    register(LinearRegression().fit(X, X["x"] * 2), X, "linear")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with ServeProcess(shipyard_home, "linear/1", "--workers", "2",
                      env={"TMPDIR": str(tmp)}) as server:
        server.worker_pids(2)  # both workers up
        folders = list(tmp.glob("shipyard-metrics-*"))
        assert len(folders) == 1  # the server's own multiprocess folder
        clients = client_per_worker(server.url, 2)
        sent = {}
        for (pid, client), n in zip(clients.items(), (15, 25), strict=True):
            for i in range(n):
                r = client.post("/predict", json={"records": [{"x": i, "y": 0.0}]})
                assert r.status_code == 200, r.text
            sent[pid] = n
        scrapes = [c.get("/metrics").text for c in clients.values()]  # one from each
        for c in clients.values():
            assert c.get("/health").json()["pid"] in sent  # still the same worker
            c.close()
        counters = sorted(p.name for p in folders[0].glob("counter_*.db"))
    assert len(counters) == 2, counters  # one file per worker
    labels = {"model": "linear", "version": "1"}
    for text in scrapes:  # each worker reports both workers' requests
        assert metric(text, "shipyard_serving_requests_total", endpoint="predict",
                      status="200", **labels) == 40
        assert metric(text, "shipyard_serving_predictions_total", **labels) == 40
        assert metric(text, "shipyard_serving_batch_size_sum", **labels) == 40
        assert metric(text, "shipyard_serving_queue_depth", **labels) == 0
    assert not folders[0].exists()  # removed when the server stopped
