"""In-process flags never cross the wire: the server always validates what it stores."""

from __future__ import annotations

from starlette.testclient import TestClient

from shipyard.api import CLIENT_ONLY_PARAMS
from shipyard.client import Client
from shipyard.server import create_app


def test_the_server_refuses_to_skip_validation(client: Client) -> None:
    assert "validated" in CLIENT_ONLY_PARAMS
    run = client.create_run(client.create_experiment("e").experiment_id)
    with TestClient(create_app(client)) as http:
        url = f"/api/v1/runs/{run.run_id}/log-batch"
        sneaky = http.post(url, json={"metrics": [["bad key!", 1, 0, 1]], "validated": True})
        assert sneaky.status_code == 400 and sneaky.json()["error"]["field"] == "validated"
        plain = http.post(url, json={"metrics": [["bad key!", 1, 0, 1]]})
        assert plain.status_code == 400 and "bad key!" in plain.json()["error"]["message"]
    assert client.get_run(run.run_id).metrics == {}
