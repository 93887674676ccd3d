"""Fuzz the native API from its own OpenAPI document: no input may produce a 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from shipyard.client import Client
from shipyard.config import Settings
from shipyard.server import create_app

_HOME = Path(tempfile.mkdtemp(prefix="shipyard-fuzz-"))
_CLIENT = Client(Settings(home=_HOME))
_CLIENT.tracking.create_experiment("seed")
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_CLIENT))


@schema.parametrize()
@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_no_input_produces_a_server_error(case) -> None:  # noqa: ANN001
    response = case.call()
    assert response.status_code < 500, (case.method, case.formatted_path, case.body,
                                        response.status_code, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and body["error"]["message"], body
