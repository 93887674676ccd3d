"""V2 paths that name a version, through the real HTTP app: the arm serving that version
answers (bypassing the strategy); a version that is not an arm is a V2 404."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipyard.client import Client
from shipyard.serving import read_predictions

from .conftest import register, serving, wait_for
from .models import Constant


def tensors(age: int = 30, income: float = 50.0) -> dict[str, Any]:
    return {"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [age]},
                       {"name": "income", "shape": [1], "datatype": "FP64", "data": [income]}]}


def test_a_versioned_path_goes_to_the_arm_serving_that_version(
        client: Client, credit: str, shipyard_home: Path) -> None:
    register(client, "credit", Constant(1, 0.6))  # v3: registered, but no arm serves it
    client.deployments.create("pinned", credit, {"stable": "@champion", "canary": "2"},
                              {"kind": "canary", "stable": "stable", "canary": "canary",
                               "percent": 0}, auto=False)
    with serving("pinned", client) as (http, router):
        routed = http.post("/v2/models/credit/infer", json=tensors())
        assert routed.json()["model_version"] == "1"  # a 0 % canary: the strategy says v1
        for i in range(5):
            pinned = http.post("/v2/models/credit/versions/2/infer",
                               json={**tensors(), "id": f"pin-{i}"})
            assert pinned.status_code == 200, pinned.text
            body = pinned.json()
            assert body["model_version"] == "2" and body["outputs"][0]["data"] == [1]
        stable = http.post("/v2/models/credit/versions/1/infer", json=tensors())
        assert stable.json()["model_version"] == "1"

        meta = http.get("/v2/models/credit/versions/2").json()
        assert meta["versions"] == ["2"] and meta["name"] == "credit"
        assert http.get("/v2/models/credit").json()["versions"] == ["1"]
        ready = http.get("/v2/models/credit/versions/2/ready")
        assert ready.status_code == 200 and ready.json()["ready"] is True

        for path in ("/versions/3/infer", "/versions/3", "/versions/3/ready"):
            method = http.post if path.endswith("infer") else http.get
            missing = method(f"/v2/models/credit{path}", **(
                {"json": tensors()} if path.endswith("infer") else {}))
            assert missing.status_code == 404, missing.text
            message = missing.json()["error"]  # the V2 error body: one string
            assert "version '3'" in message and "1 (stable), 2 (canary)" in message
        other = http.post("/v2/models/other/versions/2/infer", json=tensors())
        assert other.status_code == 404 and "'other'" in other.json()["error"]

        metrics = http.get("/metrics").text
        router.worker.flush()
        evidence = router.describe()["evidence"]
    assert 'shipyard_rollout_pinned_requests_total{arm="canary",deployment="pinned"} 5.0' \
        in metrics
    assert 'endpoint="v2_infer",model="credit",status="404"' in metrics
    assert evidence["canary"]["requests"] == 5  # a pinned answer is the arm's evidence
    log = read_predictions(shipyard_home, "credit")
    pinned_rows = log[log["request_id"].str.startswith("pin-")]
    assert len(pinned_rows) == 5
    assert set(pinned_rows["arm"]) == {"canary"} and set(pinned_rows["model_version"]) == {2}
    assert set(pinned_rows["deployment"]) == {"pinned"}


def test_a_pinned_prediction_is_credited_to_its_arm(client: Client, credit: str) -> None:
    client.deployments.create("pinned-bandit", credit, {"a": "1", "b": "2"},
                              {"kind": "bandit", "arms": ["a", "b"]}, auto=False)
    with serving("pinned-bandit", client) as (http, router):
        ids = []
        for _ in range(6):
            body = http.post("/v2/models/credit/versions/2/infer", json=tensors()).json()
            ids.extend(body["parameters"]["prediction_ids"])
        for pid in ids:
            assert http.post("/feedback", json={"prediction_id": pid,
                                                "reward": 2.0}).status_code == 200
        wait_for(lambda: client.deployments.arm_stats("pinned-bandit")["b"].rewards == 6,
                 what="the rewards of the pinned predictions")
        router.worker.flush()
    stats = client.deployments.arm_stats("pinned-bandit")
    assert (stats["a"].rewards, stats["b"].reward_sum) == (0, 12.0)
    assert client.deployments.assignment_of(ids[0]) == ("pinned-bandit", "b")


def test_a_version_the_revision_no_longer_serves_is_404(client: Client, credit: str) -> None:
    client.deployments.create("retired", credit, {"stable": "1", "canary": "2"},
                              {"kind": "canary", "stable": "stable", "canary": "canary",
                               "percent": 50}, auto=False)
    with serving("retired", client) as (http, router):
        assert http.post("/v2/models/credit/versions/2/infer",
                         json=tensors()).status_code == 200
        client.deployments.rollback("retired", reason="back to stable")
        wait_for(lambda: router.view.deployment.status == "rolled_back", what="the rollback")
        gone = http.post("/v2/models/credit/versions/2/infer", json=tensors())
        assert gone.status_code == 404 and "1 (stable)" in gone.json()["error"]
        assert http.post("/v2/models/credit/versions/1/infer",
                         json=tensors()).status_code == 200
