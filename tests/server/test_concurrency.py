"""16 clients logging to one server at once, on SQLite and on PostgreSQL: nothing lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from shipyard.client import Client
from shipyard.config import Settings
from shipyard.server import create_app

from .conftest import ServerThread

CLIENTS = 16
POINTS = 400


@pytest.fixture
def backend_server(backend_url: str, tmp_path: Path) -> Iterator[tuple[ServerThread, Client]]:
    server_side = Client(Settings(home=tmp_path / "srv", db=backend_url))
    with ServerThread(create_app(server_side)) as server:
        yield server, server_side


def _worker(url: str, experiment_id: str, n: int) -> str:
    client = Client(uri=url)
    run = client.create_run(experiment_id, run_name=f"client-{n}")
    now = int(time.time() * 1000)
    for start in range(0, POINTS, 100):
        client.log_batch(run.run_id, metrics=[("loss", 1.0 / (i + 1), i, now)
                                              for i in range(start, start + 100)],
                         params={f"p{start}": n})
    client.set_tag(run.run_id, "worker", n)
    client.end_run(run.run_id)
    return run.run_id


@pytest.mark.slow
def test_sixteen_clients_at_once(backend_server) -> None:  # noqa: ANN001
    server, server_side = backend_server
    experiment_id = server_side.create_experiment("load").experiment_id
    with ThreadPoolExecutor(CLIENTS) as pool:
        run_ids = list(pool.map(lambda n: _worker(server.url, experiment_id, n),
                                range(CLIENTS)))
    assert len(set(run_ids)) == CLIENTS
    metrics = server_side.db.metadata().tables["metrics"]
    with server_side.db.read() as conn:
        per_run = dict(conn.execute(sa.select(metrics.c.run_id, sa.func.count())
                                    .group_by(metrics.c.run_id)).all())
    assert per_run == {rid: POINTS for rid in run_ids}
    for run in server_side.get_runs(run_ids):
        assert run.status.value == "FINISHED"
        assert run.metrics["loss"] == pytest.approx(1.0 / POINTS)
        assert len(run.params) == POINTS // 100
