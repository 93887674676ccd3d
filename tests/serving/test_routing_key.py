"""The routing key reaches ``ServingState.predict``: header, else /predict field, else V2
parameter; and responses say which version answered (``result.model_version``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from shipyard.serving import PredictionResult, ServedModel, ServingConfig, create_app
from shipyard.serving._state import ServingState

from .conftest import make_client

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from .conftest import Registered

HEADER = "X-Shipyard-Routing-Key"


class RecordingState(ServingState):
    """A real ServingState that remembers the routing key of each prediction (the way the
    rollout router's subclass reads it) and can answer as another version."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keys: list[str | None] = []
        self.answer_as: int | None = None

    async def predict(self, data: Any, rows: int, **kwargs: Any) -> PredictionResult:
        self.keys.append(kwargs.get("routing_key"))
        result = await super().predict(data, rows, **kwargs)
        if self.answer_as is not None:
            result = PredictionResult(result.predictions, result.probabilities,
                                      result.prediction_ids, self.answer_as)
        return result


@pytest.fixture
def state(served: ServedModel, tmp_path: Path) -> RecordingState:
    return RecordingState(served, ServingConfig(log_predictions=False), tmp_path)


@pytest.fixture
def http(state: RecordingState) -> Iterator[TestClient]:
    with make_client(create_app(state)) as client:
        yield client


def v2_body(credit: Registered, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    row = credit.X.iloc[0]
    body: dict[str, Any] = {"inputs": [
        {"name": "age", "shape": [1], "datatype": "INT64", "data": [int(row["age"])]},
        {"name": "income", "shape": [1], "datatype": "FP64", "data": [float(row["income"])]},
        {"name": "debt", "shape": [1], "datatype": "FP64", "data": [float(row["debt"])]}]}
    if parameters is not None:
        body["parameters"] = parameters
    return body


def records(credit: Registered, **extra: Any) -> dict[str, Any]:
    return {"records": credit.X.iloc[:1].to_dict(orient="records"), **extra}


def test_predict_takes_the_header_then_the_field(http: TestClient, state: RecordingState,
                                                 credit: Registered) -> None:
    assert http.post("/predict", json=records(credit)).status_code == 200
    assert http.post("/predict", json=records(credit, routing_key="cust-7")).status_code == 200
    assert http.post("/predict", json=records(credit, routing_key=42)).status_code == 200
    r = http.post("/predict", json=records(credit, routing_key="from-body"),
                  headers={HEADER: "from-header"})
    assert r.status_code == 200
    assert state.keys == [None, "cust-7", "42", "from-header"]


def test_v2_takes_the_header_then_the_parameter(http: TestClient, state: RecordingState,
                                                credit: Registered) -> None:
    infer = "/v2/models/credit/infer"
    assert http.post(infer, json=v2_body(credit)).status_code == 200
    assert http.post(infer, json=v2_body(credit, {"routing_key": "k1"})).status_code == 200
    r = http.post(infer, json=v2_body(credit, {"routing_key": "k2"}), headers={HEADER: "h"})
    assert r.status_code == 200
    assert state.keys == [None, "k1", "h"]


@pytest.mark.parametrize(("path", "body_of", "needle"), [
    ("/predict", lambda c: records(c, routing_key=["a"]), "'routing_key' must be a string"),
    ("/v2/models/credit/infer", lambda c: v2_body(c, {"routing_key": {"a": 1}}),
     "'parameters.routing_key' must be a string"),
    ("/v2/models/credit/infer", lambda c: {**v2_body(c), "parameters": [1]},
     "'parameters' must be an object"),
])
def test_a_bad_routing_key_is_a_400(http: TestClient, credit: Registered, path: str,
                                    body_of: Any, needle: str) -> None:
    r = http.post(path, json=body_of(credit))
    assert r.status_code == 400 and needle in r.text


def test_responses_name_the_version_that_answered(http: TestClient, state: RecordingState,
                                                  credit: Registered) -> None:
    assert http.post("/predict", json=records(credit)).json()["model_version"] == 1
    body = http.post("/v2/models/credit/infer", json=v2_body(credit)).json()
    assert body["model_version"] == "1"
    state.answer_as = 7  # e.g. a canary arm, or the version swapped in mid-request
    assert http.post("/predict", json=records(credit)).json()["model_version"] == 7
    body = http.post("/v2/models/credit/infer", json=v2_body(credit)).json()
    assert body["model_version"] == "7"
