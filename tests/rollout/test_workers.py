"""A real ``shipyard deployments serve --workers 2``: two processes, one shared bandit state
and one shared body of guard evidence."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from shipyard.client import Client

from .conftest import register, row, wait_for
from .models import Constant, FailsOnOld

ROOT = Path(__file__).resolve().parents[2]  # the models' module must import in the workers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def writer_pids(folder: Path) -> dict[str, set[str]]:
    """Prediction ids by the pid of the worker that wrote them (from the part file names)."""
    import pyarrow.parquet as pq

    found: dict[str, set[str]] = {}
    for part in folder.glob("date=*/part-*.parquet"):
        pid = re.match(r"part-\d+T\d+-(\d+)-", part.name)
        assert pid is not None
        ids = pq.read_table(part, columns=["prediction_id"]).column(0).to_pylist()
        found.setdefault(pid.group(1), set()).update(ids)
    return found


@contextmanager
def two_workers(name: str, shipyard_home: Path, tmp_path: Path) -> Iterator[str]:
    """``shipyard deployments serve NAME --workers 2`` until the block ends (SIGINT: the
    workers flush and close); the server's URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SHIPYARD_HOME": str(shipyard_home),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")]))}
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "shipyard.cli", "deployments", "serve", name, "--port",
         str(port), "--workers", "2", "--refresh-interval", "0.1", "--flush-interval", "0.1",
         "--control-interval", "0.1"],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                return httpx.get(f"{url}/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout=90, what="the server to start")
        yield url
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()


@pytest.mark.slow
def test_feedback_to_either_worker_credits_the_same_arm_counts(
        client: Client, credit: str, shipyard_home: Path, tmp_path: Path) -> None:
    client.deployments.create("duo", credit, {"a": "1", "b": "2"},
                              {"kind": "bandit", "arms": ["a", "b"]}, auto=False)
    made: list[tuple[str, int]] = []
    with two_workers("duo", shipyard_home, tmp_path) as url:
        # a new connection per request: the two workers take turns accepting them
        for _ in range(40):
            body = httpx.post(f"{url}/predict", json=row(), timeout=10).json()
            made.append((body["prediction_ids"][0], body["model_version"]))
        for pid, version in made:
            response = httpx.post(f"{url}/feedback", timeout=10, json={
                "prediction_id": pid, "reward": 1.0 if version == 2 else 0.0})
            assert response.status_code == 200, response.text
        wait_for(lambda: sum(s.rewards for s in client.deployments.arm_stats(
            "duo").values()) >= len(made), timeout=60, what="every reward to be credited")
    by_arm = Counter("a" if version == 1 else "b" for _, version in made)
    stats = client.deployments.arm_stats("duo")
    assert {a: stats[a].rewards for a in "ab"} == {"a": by_arm["a"], "b": by_arm["b"]}
    assert {a: stats[a].successes for a in "ab"} == {"a": 0, "b": by_arm["b"]}
    assert stats["a"].pulls + stats["b"].pulls == len(made)  # flushed at shutdown
    predictions = writer_pids(shipyard_home / "predictions" / "credit")
    feedback = writer_pids(shipyard_home / "feedback" / "credit")
    assert len(predictions) == 2, "both workers answered predictions"
    crossed = sum(len(ids - predictions.get(pid, set())) for pid, ids in feedback.items())
    assert crossed > 0, "some feedback reached the worker that did not make the prediction"


@pytest.mark.slow
def test_a_breach_spread_over_both_workers_is_detected(
        client: Client, shipyard_home: Path, tmp_path: Path) -> None:
    """The canary fails half its requests, but min_samples is every request sent: no worker
    sees that many on its own, so only the totals both workers share can roll it back."""
    register(client, "split", Constant(0), FailsOnOld(1))
    sent = 60
    client.deployments.create(
        "split", "split", {"stable": "1", "canary": "2"},
        {"kind": "canary", "stable": "stable", "canary": "canary", "percent": 100},
        guards=[{"metric": "error_rate", "op": "<=", "threshold": 0.05,
                 "min_samples": sent}])
    with two_workers("split", shipyard_home, tmp_path) as url:
        def send(i: int) -> int:
            return httpx.post(f"{url}/predict", json=row(age=70 if i % 2 else 30),
                              headers={"X-Shipyard-Routing-Key": f"user-{i}"},
                              timeout=30).status_code

        # eight at a time, a new connection each: while one worker is busy the other
        # accepts, so both serve some
        with ThreadPoolExecutor(8) as pool:
            answered = Counter(pool.map(send, range(sent)))
        wait_for(lambda: client.deployments.get("split").status == "rolled_back",
                 timeout=60, what="the rollback")
    assert answered == {200: sent // 2, 500: sent // 2}
    last = client.deployments.decisions("split")[-1]
    assert (last.action, last.actor, last.arm) == ("rollback", "router", "stable")
    canary = last.evidence["arms"]["canary"]
    assert canary["error_rate_samples"] == sent and canary["error_rate"] == 0.5
    canary_pids = writer_pids(shipyard_home / "predictions" / "split")
    assert len(canary_pids) == 2, "both workers answered canary requests"
    assert sum(len(ids) for ids in canary_pids.values()) == sent // 2
