"""The router through the real HTTP app: traffic splits, assignments, runtime changes."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shipyard.client import Client
from shipyard.rollout import _worker
from shipyard.serving import read_predictions

from .conftest import FAST, row, serving, wait_for

KEY = "X-Shipyard-Routing-Key"

if TYPE_CHECKING:
    from starlette.testclient import TestClient


def version_of(http: TestClient, key: str | None = None, **payload: object) -> int:
    headers = {KEY: key} if key is not None else {}
    response = http.post("/predict", json={**row(), **payload}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


def test_canary_split_is_sticky_by_key(client: Client, credit: str) -> None:
    client.deployments.create("canary", credit, {"stable": "@champion", "canary": "2"},
                              {"kind": "canary", "stable": "stable", "canary": "canary",
                               "percent": 20}, auto=False)
    with serving("canary", client) as (http, router):
        first = {f"user-{i}": version_of(http, f"user-{i}") for i in range(400)}
        share = sum(v == 2 for v in first.values()) / len(first)
        assert 0.14 < share < 0.26, share
        again = {k: version_of(http, k) for k in list(first)[:100]}
        assert again == {k: first[k] for k in again}  # same key, same version
        # the key may also come in the payload
        assert version_of(http, None, routing_key="user-7") == first["user-7"]
        assert router.served.version == 1  # what V2 metadata describes: the stable arm


def test_ab_split_records_assignments_and_pulls(client: Client, credit: str) -> None:
    client.deployments.create("ab", credit, {"a": "1", "b": "2"},
                              {"kind": "ab", "weights": {"a": 1, "b": 1}}, auto=False)
    answered: dict[str, int] = {}
    with serving("ab", client) as (http, router):
        for i in range(200):
            body = http.post("/predict", json=row(), headers={KEY: f"k{i}"}).json()
            answered[body["prediction_ids"][0]] = body["model_version"]
        router.worker.flush()
    counts = Counter(answered.values())
    assert 70 < counts[1] < 130 and counts[1] + counts[2] == 200, counts
    service = client.deployments
    arm_of = {1: "a", 2: "b"}
    for pid, version in list(answered.items())[:50]:
        assert service.assignment_of(pid) == ("ab", arm_of[version])
    stats = service.arm_stats("ab")
    assert stats["a"].pulls == counts[1] and stats["b"].pulls == counts[2]


def test_the_router_prunes_assignments_past_their_retention(
        client: Client, credit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client.deployments.create("ab", credit, {"a": "1", "b": "2"},
                              {"kind": "ab", "weights": {"a": 1, "b": 1}}, auto=False)
    options = dataclasses.replace(FAST, assignment_retention=3600.0)
    with serving("ab", client, options, start=False) as (http, router):
        pids = [http.post("/predict", json=row(), headers={KEY: f"k{i}"}).json()[
            "prediction_ids"][0] for i in range(20)]
        router.worker.flush()
        router.worker.prune()  # all of them are recent: kept
        assert router.worker.pruned == 0
        assert all(client.deployments.assignment_of(p) is not None for p in pids)
        router.options = dataclasses.replace(router.options,
                                             assignment_retention=float("inf"))
        assert router.worker.prune() is False and router.worker.pruned == 0  # keep all
        router.options = dataclasses.replace(router.options, assignment_retention=0.0)
        monkeypatch.setattr(_worker, "PRUNE_LIMIT", 15)
        assert router.worker.prune() is True  # 15 of 20: more are left
        assert router.worker.prune() is False
        assert router.worker.pruned == 20
        assert all(client.deployments.assignment_of(p) is None for p in pids)


def test_the_log_names_the_deployment_and_arm(client: Client, credit: str,
                                              shipyard_home: Path) -> None:
    client.deployments.create("logged", credit, {"a": "1", "b": "2"},
                              {"kind": "ab", "weights": {"a": 1, "b": 1}}, auto=False)
    with serving("logged", client) as (http, _):
        for i in range(20):
            http.post("/predict", json=row(), headers={KEY: f"k{i}"})
    log = read_predictions(shipyard_home, "credit")
    assert len(log) == 20 and set(log["deployment"]) == {"logged"}
    assert {(a, v) for a, v in zip(log["arm"], log["model_version"], strict=True)} == {
        ("a", 1), ("b", 2)}


def test_runtime_update_takes_effect_without_restart(client: Client, credit: str) -> None:
    client.deployments.create("live", credit, {"champ": "1", "chal": "2"},
                              {"kind": "single", "arm": "champ"}, auto=False)
    with serving("live", client) as (http, router):
        assert {version_of(http) for _ in range(10)} == {1}
        client.deployments.update("live", strategy={"kind": "canary", "stable": "champ",
                                                    "canary": "chal", "percent": 100},
                                  reason="all traffic to the challenger")
        seen: list[int] = []

        def switched() -> bool:
            seen.append(version_of(http))  # every request answers while it switches
            return seen[-1] == 2

        wait_for(switched, what="the router to serve revision 2")
        assert router.view.revision == 2
        assert {version_of(http) for _ in range(10)} == {2}


def test_a_stopped_deployment_answers_503(client: Client, credit: str) -> None:
    client.deployments.create("halt", credit, {"champ": "1"},
                              {"kind": "single", "arm": "champ"}, auto=False)
    with serving("halt", client) as (http, router):
        assert http.post("/predict", json=row()).status_code == 200
        client.deployments.stop("halt", reason="maintenance")
        wait_for(lambda: router.view.deployment.status == "stopped", what="the stop")
        response = http.post("/predict", json=row())
        assert response.status_code == 503
        assert "stopped" in response.json()["error"]["message"]


def test_bad_input_is_a_4xx_and_not_an_arm_error(client: Client, credit: str) -> None:
    client.deployments.create("strict", credit, {"a": "1", "b": "2"},
                              {"kind": "ab", "weights": {"a": 1, "b": 1}}, auto=False)
    with serving("strict", client) as (http, router):
        response = http.post("/predict", json={"records": [{"age": "old"}]})
        assert response.status_code == 400
        assert response.json()["error"]["field"] == "inputs"
        evidence = router.describe()["evidence"]
        assert all(e["requests"] == 0 for e in evidence.values())


def test_metrics_show_every_arm_and_the_rollout(client: Client, credit: str) -> None:
    client.deployments.create("seen", credit, {"a": "1", "b": "2"},
                              {"kind": "ab", "weights": {"a": 1, "b": 1}}, auto=False)
    with serving("seen", client) as (http, _):
        for i in range(30):
            http.post("/predict", json=row(), headers={KEY: f"k{i}"})
        text = http.get("/metrics").text
    assert 'shipyard_rollout_requests_total{arm="a",deployment="seen",outcome="ok"}' in text
    assert 'shipyard_serving_predictions_total{model="credit",version="2"}' in text
    assert 'shipyard_rollout_revision{deployment="seen"} 1.0' in text
    assert text.count("# TYPE shipyard_serving_predictions_total counter") == 1
