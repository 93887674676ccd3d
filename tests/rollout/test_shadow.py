"""Shadow: the primary answers alone; the challenger's copies are logged and compared."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shipyard.client import Client
from shipyard.rollout import RouterState
from shipyard.serving import read_predictions

from .conftest import FAST, register, row, serving, wait_for
from .models import HOLD, Constant, FailsOnOld, Gated

if TYPE_CHECKING:
    from starlette.testclient import TestClient


def shadow(client: Client, name: str, model: str = "credit") -> None:
    client.deployments.create(name, model, {"champion": "1", "challenger": "2"},
                              {"kind": "shadow", "primary": "champion",
                               "shadows": ["challenger"]}, auto=False)


def test_shadow_answers_with_the_primary_and_logs_the_challenger(
        client: Client, credit: str, shipyard_home: Path) -> None:
    shadow(client, "mirror")
    with serving("mirror", client) as (http, router):
        bodies = [http.post("/predict", json=row(age=20 + i)).json() for i in range(30)]
        asyncio.run_coroutine_threadsafe(router.wait_for_shadows(), router._loop).result(15)
        evidence = router.describe()["evidence"]["challenger"]
        metrics = http.get("/metrics").text
    assert {b["model_version"] for b in bodies} == {1}
    assert {b["predictions"][0] for b in bodies} == {0}  # v2 would have said 1
    assert evidence["shadow_copies"] == 30 and evidence["compared_rows"] == 30
    assert evidence["agreement"] == 0.0
    assert evidence["proba_abs_diff"] == pytest.approx(0.7)  # |0.2 - 0.9|
    assert 'shipyard_rollout_shadow_agreement{arm="challenger",deployment="mirror"} 0.0' \
        in metrics
    assert 'outcome="compared"} 30.0' in metrics
    log = read_predictions(shipyard_home, "credit")
    primary = log[log["endpoint"] == "predict"]
    copies = log[log["endpoint"] == "shadow"]
    assert len(primary) == 30 and set(primary["arm"]) == {"champion"}
    assert len(copies) == 30 and set(copies["arm"]) == {"challenger"}
    assert set(copies["model_version"]) == {2}
    assert set(copies["request_id"]) == set(primary["request_id"])  # one copy per request
    assert set(copies["prediction"]) == {1}


def test_a_failing_shadow_never_fails_the_primary(client: Client) -> None:
    register(client, "fragile", Constant(0), FailsOnOld(1))
    shadow(client, "fragile-mirror", "fragile")
    with serving("fragile-mirror", client) as (http, router):
        answers = [http.post("/predict", json=row(age=70)) for _ in range(10)]
        asyncio.run_coroutine_threadsafe(router.wait_for_shadows(), router._loop).result(15)
        evidence = router.describe()["evidence"]
    assert [a.status_code for a in answers] == [200] * 10
    assert evidence["champion"]["error_rate"] == 0.0
    assert evidence["challenger"]["error_rate"] == 1.0
    assert evidence["challenger"]["error_rate_samples"] == 10


def test_copies_are_dropped_when_the_shadow_queue_is_full(client: Client) -> None:
    register(client, "stuck", Constant(0), Gated(0))
    shadow(client, "stuck-mirror", "stuck")
    options = dataclasses.replace(FAST, shadow_queue=2)
    try:
        with serving("stuck-mirror", client, options) as (http, router):
            HOLD.set()
            answers = [http.post("/predict", json=row()) for _ in range(12)]
            assert [a.status_code for a in answers] == [200] * 12  # never delayed by it
            evidence = router.describe()["evidence"]["challenger"]
            # one copy is stuck in the model, at most two wait: the rest were dropped
            assert evidence["shadow_dropped"] >= 12 - 1 - 2
            HOLD.clear()
            asyncio.run_coroutine_threadsafe(router.wait_for_shadows(),
                                             router._loop).result(15)
            evidence = router.describe()["evidence"]["challenger"]
            assert evidence["shadow_copies"] + evidence["shadow_dropped"] == 12
            assert evidence["agreement"] == 1.0
    finally:
        HOLD.clear()


def test_labels_score_the_shadow_too(client: Client, credit: str) -> None:
    shadow(client, "scored")
    with serving("scored", client) as (http, router):
        ids = [http.post("/predict", json=row()).json()["prediction_ids"][0]
               for _ in range(8)]
        asyncio.run_coroutine_threadsafe(router.wait_for_shadows(), router._loop).result(15)
        for pid in ids:
            assert http.post("/feedback", json={"prediction_id": pid, "label": 1}).status_code \
                == 200
        evidence = wait_for(lambda: (e := router.describe()["evidence"])["challenger"][
            "accuracy_samples"] == 8 and e, what="the labels to be scored")
    assert evidence["champion"]["accuracy"] == 0.0  # v1 said 0
    assert evidence["challenger"]["accuracy"] == 1.0  # v2 said 1


def test_a_shadow_that_breaches_is_stopped_and_one_that_holds_is_promoted(
        client: Client, credit: str) -> None:
    register(client, "fragile", Constant(0), FailsOnOld(1))
    guard = [{"metric": "error_rate", "op": "<=", "threshold": 0.05, "min_samples": 5}]
    for name, model in (("bad-shadow", "fragile"), ("good-shadow", "credit")):
        client.deployments.create(name, model, {"champion": "1", "challenger": "2"},
                                  {"kind": "shadow", "primary": "champion",
                                   "shadows": ["challenger"]}, guards=guard)
        with serving(name, client) as (http, router):
            def decided(router: RouterState = router, http: TestClient = http) -> bool:
                for _ in range(5):
                    assert http.post("/predict", json=row(age=70)).status_code == 200
                return router.view.deployment.status != "active"

            wait_for(decided, what=f"{name} to be decided")
    bad, good = client.deployments.get("bad-shadow"), client.deployments.get("good-shadow")
    assert (bad.status, bad.strategy.arm) == ("rolled_back", "champion")
    assert client.deployments.decisions("bad-shadow")[-1].evidence["arms"]["challenger"][
        "error_rate"] == 1.0
    assert (good.status, good.strategy.arm) == ("promoted", "challenger")
    promoted = client.deployments.decisions("good-shadow")[-1]
    assert promoted.actor == "router" and promoted.evidence["arms"]["challenger"][
        "shadow_copies"] >= 5
    assert client.registry.get_model("credit").aliases["champion"] == 2
