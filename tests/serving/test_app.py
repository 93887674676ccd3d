"""The simple JSON endpoints of the model server: /predict, /feedback, health, metrics."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from shipyard.client import Client
from shipyard.serving import ServedModel, ServingConfig, create_app, read_feedback

from .conftest import make_client, register

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from .conftest import Registered


def test_predict_records_and_columns_equal_the_models_own(app_client: TestClient,
                                                          credit: Registered) -> None:
    X = credit.X.iloc[:6]
    expected = credit.model.predict(X).tolist()
    r = app_client.post("/predict", json={"records": X.to_dict(orient="records")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"] == expected
    assert body["model_name"] == "credit" and body["model_version"] == 1
    assert body["classes"] == [0, 1]
    np.testing.assert_allclose(body["probabilities"], credit.model.predict_proba(X))
    assert len(body["prediction_ids"]) == 6
    r = app_client.post("/predict", json={"columns": X.to_dict(orient="list"),
                                          "probabilities": False})
    assert r.json()["predictions"] == expected and "probabilities" not in r.json()
    rows = [[int(a), float(i), float(d)] for a, i, d in X.itertuples(index=False)]
    r = app_client.post("/predict", json={"instances": rows})
    assert r.json()["predictions"] == expected


def test_columns_in_another_order_are_fine(app_client: TestClient, credit: Registered) -> None:
    X = credit.X.iloc[:2]
    r = app_client.post("/predict", json={"records": X[["debt", "income", "age"]].to_dict(
        orient="records")})
    assert r.json()["predictions"] == credit.model.predict(X).tolist()


@pytest.mark.parametrize(("body", "field", "message"), [
    (b"nope", "body", "not valid JSON"),
    (b'{"rows": []}', "records", "send exactly one of 'records'"),
    (b'{"records": [1, 2]}', "records", "'records' must be a list of objects"),
    (b'{"records": []}', "inputs", "no rows to predict"),
    (b'{"columns": {"age": [1, 2], "income": [1.0]}}', "columns", "different lengths"),
    (b'{"columns": {"age": 1}}', "columns", "an object of lists"),
    (b'{"instances": [[1, 2]]}', "instances", "do not have the model's 3 columns"),
    (b'{"records": [{"age": 30, "income": 1.0, "debt": 2.0}], "probabilities": "yes"}',
     "probabilities", "must be true or false"),
    (b'{"records": [{"age": "thirty", "income": null}, {"age": "x", "income": 2.5}]}',
     "inputs",
     "missing columns: debt; column 'age' is string, the model expects long; column "
     "'income' has missing values"),
])
def test_bad_predict_requests(app_client: TestClient, body: bytes, field: str,
                              message: str) -> None:
    r = app_client.post("/predict", content=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "INVALID_PARAMETER_VALUE" and error["field"] == field
    assert message in error["message"]


def test_a_bad_request_in_a_batch_does_not_fail_the_others(app_client: TestClient,
                                                           credit: Registered) -> None:
    import concurrent.futures

    good = {"records": credit.X.iloc[:1].to_dict(orient="records")}
    bad = {"records": [{"age": 1.5, "income": 1.0, "debt": 1.0}]}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda body: app_client.post("/predict", json=body),
                                [good, bad] * 8))
    assert [a.status_code for a in answers] == [200, 400] * 8
    assert "column 'age' is double, the model expects long" in \
        answers[1].json()["error"]["message"]


def test_model_errors_on_valid_input_are_400_for_that_request_only(tmp_path: Path) -> None:
    import pandas as pd

    from .helpers import FailOnNegative

    register(FailOnNegative(), pd.DataFrame({"x": [1.0, 2.0]}), "doubler")
    with make_client(create_app(ServedModel.load("doubler/1"))) as client:
        ok = client.post("/predict", json={"columns": {"x": [1.0, 3.0]}})
        assert ok.json()["predictions"] == [2.0, 6.0]
        bad = client.post("/predict", json={"columns": {"x": [-1.0]}})
        assert bad.status_code == 400
        assert "the model rejected the input: ValueError: x must not be negative" in \
            bad.json()["error"]["message"]


def test_feedback_is_recorded(app_client: TestClient, credit: Registered,
                              shipyard_home: Path) -> None:
    r = app_client.post("/predict", json={"records": credit.X.iloc[:2].to_dict("records")})
    first, second = r.json()["prediction_ids"]
    assert app_client.post("/feedback", json={"prediction_id": first, "label": 1}).json() == \
        {"status": "recorded", "prediction_id": first}
    assert app_client.post("/feedback", json={"prediction_id": second, "reward": 0.5,
                                              "label": "late"}).status_code == 200
    for body, field in [({"label": 1}, "prediction_id"),
                        ({"prediction_id": "x" * 32, "label": 1}, "prediction_id"),
                        ({"prediction_id": first}, "label"),
                        ({"prediction_id": first, "label": [1]}, "label"),
                        ({"prediction_id": first, "reward": "high"}, "reward")]:
        bad = app_client.post("/feedback", json=body)
        assert bad.status_code == 400 and bad.json()["error"]["field"] == field
    app_client.app.state.serving.predlog.flush()  # type: ignore[attr-defined]
    feedback = read_feedback(shipyard_home, "credit")
    assert feedback["prediction_id"].tolist() == [first, second]
    assert feedback["label"].tolist() == [1, "late"]
    assert feedback["reward"].isna().tolist() == [True, False]
    assert feedback["reward"].iloc[1] == 0.5


def test_health_ready_and_unknown_routes(app_client: TestClient) -> None:
    assert app_client.get("/health").json()["status"] == "ok"
    ready = app_client.get("/ready").json()
    assert ready["status"] == "ready" and ready["model"] == "credit" and ready["version"] == 1
    r = app_client.get("/nothing")
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "RESOURCE_DOES_NOT_EXIST",
                                  "message": "no route GET /nothing"}}


def test_metrics_expose_requests_errors_latency_and_batches(app_client: TestClient,
                                                            credit: Registered) -> None:
    app_client.post("/predict", json={"records": credit.X.iloc[:3].to_dict("records")})
    app_client.post("/predict", content=b"bad")
    text = app_client.get("/metrics").text
    labels = 'endpoint="predict",model="credit",status="200",version="1"'
    assert f"shipyard_serving_requests_total{{{labels}}} 1.0" in text
    assert ('shipyard_serving_errors_total{endpoint="predict",model="credit",status="400",'
            'version="1"} 1.0') in text
    assert 'shipyard_serving_request_seconds_count{endpoint="predict",model="credit",' \
           'version="1"} 2.0' in text
    assert 'shipyard_serving_batch_size_sum{model="credit",version="1"} 3.0' in text
    assert 'shipyard_serving_predictions_total{model="credit",version="1"} 3.0' in text
    assert 'shipyard_serving_queue_depth{model="credit",version="1"} 0.0' in text


def test_without_a_prediction_log(served: ServedModel, credit: Registered,
                                  shipyard_home: Path) -> None:
    app = create_app(served, ServingConfig(log_predictions=False))
    with make_client(app) as client:
        r = client.post("/predict", json={"records": credit.X.iloc[:1].to_dict("records")})
        assert r.status_code == 200
        pid = r.json()["prediction_ids"][0]
        r = client.post("/feedback", json={"prediction_id": pid, "label": 1})
        assert r.status_code == 409 and "--no-log-predictions" in r.json()["error"]["message"]
    assert not (shipyard_home / "predictions").exists()


def test_load_pins_an_alias_and_takes_every_reference_form(credit: Registered,
                                                           model_home: Client) -> None:
    model_home.registry.set_alias("credit", "champion", 1)
    for ref in ("credit@champion", "credit/1", "credit", "models:/credit/latest",
                "models:/credit@champion"):
        served = ServedModel.load(ref, model_home)
        assert (served.name, served.version, served.uri) == ("credit", 1, "models:/credit/1")


def test_oversize_predict_body_is_a_413(app_client: TestClient) -> None:
    rows = [{"age": 1, "income": 1.0, "debt": 1.0}] * 3000
    r = app_client.post("/predict", json={"records": rows})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "REQUEST_TOO_LARGE"


def test_a_client_with_an_event_loop_per_request(served: ServedModel,
                                                 credit: Registered) -> None:
    client = make_client(create_app(served))  # no lifespan, a new loop for every request
    body = {"records": credit.X.iloc[:1].to_dict("records")}
    for _ in range(3):
        assert client.post("/predict", json=body).status_code == 200


def test_an_app_over_a_prebuilt_state_with_a_shared_log(served: ServedModel,
                                                        credit: Registered,
                                                        tmp_path: Path) -> None:
    from shipyard.serving import PredictionLog, read_predictions
    from shipyard.serving._state import ServingState

    class CreditingState(ServingState):  # what the rollout router does with feedback
        credited: list[tuple[str, float | None]] = []

        async def record_feedback(self, prediction_id: str, *, label: object,
                                  reward: float | None) -> bool:
            self.credited.append((prediction_id, reward))
            return await super().record_feedback(prediction_id, label=label, reward=reward)

    shared = PredictionLog(tmp_path, "credit")
    config = ServingConfig()
    arms = [CreditingState(served, config, tmp_path, deployment="rollout", arm=arm,
                           predlog=shared) for arm in ("stable", "canary")]
    body = {"records": credit.X.iloc[:1].to_dict("records")}
    for state in arms:
        with make_client(create_app(state, ServingConfig(max_batch_size=1))) as client:
            r = client.post("/predict", json=body)
            assert r.status_code == 200 and r.json()["model_version"] == 1
            pid = r.json()["prediction_ids"][0]
            assert client.post("/feedback", json={"prediction_id": pid,
                                                  "reward": 1}).status_code == 200
        assert state.config is config  # the state's own, not the one passed beside it
    assert [reward for _, reward in CreditingState.credited] == [1.0, 1.0]
    assert not shared._closed  # the states did not close a log they do not own
    shared.close()
    log = read_predictions(tmp_path, "credit")
    assert log["deployment"].tolist() == ["rollout", "rollout"]
    assert log["arm"].tolist() == ["stable", "canary"]
    assert read_feedback(tmp_path, "credit")["reward"].tolist() == [1.0, 1.0]
