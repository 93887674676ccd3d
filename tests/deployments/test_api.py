"""The deployment routes over HTTP: bad input is a 4xx naming the field, never a 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from starlette.testclient import TestClient

from shipyard.client import Client
from shipyard.config import Settings
from shipyard.server import create_app

from .conftest import ARMS, CANARY, MODEL, register_versions

_HOME = Path(tempfile.mkdtemp(prefix="shipyard-deployments-fuzz-"))
_CLIENT = Client(Settings(home=_HOME))
register_versions(_CLIENT.registry)
_CLIENT.deployments.create("x", MODEL, ARMS, CANARY)  # path parameters fuzz as "x" often
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_CLIENT)).include(
    path_regex="deployment")


@schema.parametrize()
@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_no_input_produces_a_server_error(case) -> None:  # noqa: ANN001
    response = case.call()
    assert response.status_code < 500, (case.method, case.formatted_path, case.body,
                                        response.status_code, response.text[:500])


@pytest.fixture
def http(client: Client):  # noqa: ANN201
    register_versions(client.registry)
    with TestClient(create_app(client)) as test_client:
        yield test_client


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"name": "d", "model": MODEL, "arms": ARMS, "strategy": {**CANARY, "percent": "lots"}},
     400, "strategy.percent"),
    ({"name": "d", "model": MODEL, "arms": ARMS}, 400, "strategy"),
    ({"name": "d", "model": MODEL, "arms": ARMS, "strategy": CANARY,
      "guards": [{"metric": "error_rate", "op": "=", "threshold": 1}]}, 400, "guards.0.op"),
    ({"name": "d", "model": MODEL, "arms": {"a": "@nope"},
      "strategy": {"kind": "single", "arm": "a"}}, 404, "arms.a"),
    ({"name": "d", "model": MODEL, "arms": ARMS, "strategy": CANARY, "colour": 1}, 400,
     "colour"),
])
def test_create_errors(http: TestClient, body: dict, status: int, field: str) -> None:
    response = http.post("/api/v1/deployments", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field


def test_routes_round_trip_json(http: TestClient) -> None:
    created = http.post("/api/v1/deployments", json={
        "name": "d", "model": MODEL, "arms": ARMS, "strategy": CANARY,
        "guards": [{"metric": "error_rate", "op": "<=", "threshold": 0.01}]})
    assert created.status_code == 200, created.text
    assert created.json()["strategy"]["kind"] == "canary"
    assert http.post("/api/v1/deployments/d/rewards",
                     json={"arm": "challenger", "reward": 1.0, "success": True}).json() is None
    assert http.post("/api/v1/deployments/d/rewards/batch", json={"rows": [
        ["challenger", 2.0, None], ["champion", 0.0, False]]}).status_code == 200
    stats = http.get("/api/v1/deployments/d/arm-stats").json()
    assert stats["challenger"]["successes"] == 1.0 and stats["challenger"]["rewards"] == 2
    assert stats["champion"]["failures"] == 1.0
    bad = http.post("/api/v1/deployments/d/rewards/batch", json={"rows": [["champion"]]})
    assert bad.status_code == 400 and bad.json()["error"]["field"].startswith("rows")
    assert http.post("/api/v1/deployments/d/evidence", json={
        "revision": 1, "counts": {"challenger": {"requests": 2}}}).status_code == 200
    assert http.get("/api/v1/deployments/d/evidence", params={"revision": 1}).json() == {
        "challenger": {"requests": 2.0}}
    bad = http.post("/api/v1/deployments/d/evidence", json={
        "revision": 1, "counts": {"challenger": {"requests": -2}}})
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "counts.challenger.requests"
    http.post("/api/v1/deployments/d/assignments", json={"rows": [["p-1", "champion", 1]]})
    assert http.get("/api/v1/deployment-assignments/p-1").json() == ["d", "champion"]
    bad = http.post("/api/v1/deployments/d/pulls", json={"counts": {"champion": "many"}})
    assert bad.status_code == 400 and bad.json()["error"]["field"].startswith("counts")
    assert http.get("/api/v1/deployments/d/decisions", params={"limit": 1}).json()[0][
        "action"] == "create"
