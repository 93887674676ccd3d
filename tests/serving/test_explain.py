"""Explanations on request: SHAP values that add up, reason codes, refusals, V2 and batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

from shipyard.client import Client
from shipyard.serving import PredictionRequest, ServedModel, ServingConfig, create_app

from .conftest import LiveServer, make_client

if TYPE_CHECKING:
    from starlette.testclient import TestClient

pytest.importorskip("shap")


def frame(n: int = 300, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"age": rng.integers(18, 80, n), "income": rng.normal(50, 10, n),
                      "debt": rng.normal(20, 5, n), "tenure": rng.normal(5, 2, n)})
    y = ((X["income"] - X["debt"]) / 10 + rng.normal(0, 1, n) > 3).astype(int).to_numpy()
    return X, y


def serve(client: Client, model: Any, X: pd.DataFrame, name: str) -> ServedModel:
    run = client.tracking.create_run(client.tracking.get_or_create_experiment(
        "explain").experiment_id)
    client.registry.log_model(run.run_id, model, input_example=X.head(),
                              registered_model_name=name)
    return ServedModel.load(f"{name}/1", client)


@pytest.fixture(scope="module")
def models(model_home: Client) -> dict[str, tuple[ServedModel, Any, pd.DataFrame]]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y = frame()
    Xc = X.assign(region=np.where(X["age"] > 50, "north", np.where(X["age"] > 30, "south",
                                                                   "east")))
    fitted = {
        "gbc": (GradientBoostingClassifier(n_estimators=30, random_state=0).fit(X, y), X),
        "forest": (RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y), X),
        "logistic": (LogisticRegression(max_iter=2000).fit(X, y), X),
        "linreg": (LinearRegression().fit(X, X["income"] * 2 - X["debt"]), X),
        "knn": (KNeighborsClassifier().fit(X, y), X),
        "pipeline": (Pipeline([
            ("prep", ColumnTransformer([("num", StandardScaler(), ["age", "income", "debt"]),
                                        ("cat", OneHotEncoder(), ["region"])])),
            ("model", LogisticRegression(max_iter=2000))]).fit(Xc, y), Xc),
        "scaled_forest": (Pipeline([("scale", StandardScaler()), (
            "model", RandomForestClassifier(n_estimators=10, random_state=0))]).fit(X, y), X),
    }
    return {name: (serve(model_home, model, data, f"explain-{name}"), model, data)
            for name, (model, data) in fitted.items()}


@pytest.fixture
def client_for(models: dict[str, Any]) -> Iterator[Any]:
    opened: list[TestClient] = []

    def open_client(name: str) -> TestClient:
        client = make_client(create_app(models[name][0], ServingConfig(log_predictions=False)))
        opened.append(client.__enter__())
        return opened[-1]

    yield open_client
    for client in opened:
        client.__exit__(None, None, None)


def explain(client: TestClient, X: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    r = client.post("/predict", json={"records": X.to_dict(orient="records"),
                                      "explain": True, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def totals(body: dict[str, Any]) -> np.ndarray:
    return np.array([e["base_value"] + sum(e["shap_values"].values())
                     for e in body["explanations"]])


def class_margin(margin: np.ndarray, predictions: list[int]) -> np.ndarray:
    """A binary model's log-odds of the class it predicted."""
    return np.where(np.asarray(predictions) == 1, margin, -margin)


def test_gradient_boosting_values_add_up_to_the_log_odds(client_for: Any,
                                                         models: dict[str, Any]) -> None:
    _, model, X = models["gbc"]
    rows = X.iloc[:12]
    body = explain(client_for("gbc"), rows)
    assert body["predictions"] == model.predict(rows).tolist()
    first = body["explanations"][0]
    assert first["output"] == "log_odds" and first["class"] == body["predictions"][0]
    assert list(first["shap_values"]) == ["age", "income", "debt", "tenure"]
    np.testing.assert_allclose(
        totals(body), class_margin(model.decision_function(rows), body["predictions"]),
        atol=1e-6)


def test_random_forest_values_add_up_to_the_predicted_class_probability(
        client_for: Any, models: dict[str, Any]) -> None:
    _, model, X = models["forest"]
    rows = X.iloc[:12]
    body = explain(client_for("forest"), rows)
    proba = model.predict_proba(rows)
    predicted = np.asarray(body["predictions"])
    assert body["explanations"][0]["output"] == "probability"
    np.testing.assert_allclose(totals(body), proba[np.arange(len(rows)), predicted],
                               atol=1e-6)


def test_logistic_regression_values_are_exact_and_match_shap(client_for: Any,
                                                            models: dict[str, Any]) -> None:
    import shap

    _, model, X = models["logistic"]
    rows = X.iloc[:10]
    body = explain(client_for("logistic"), rows)
    np.testing.assert_allclose(
        totals(body), class_margin(model.decision_function(rows), body["predictions"]),
        atol=1e-8)
    # The background is the stored input example (X.head()): what LinearExplainer computes.
    reference = shap.LinearExplainer(model, X.head().to_numpy(float)).shap_values(
        rows.to_numpy(float))
    signs = np.where(np.asarray(body["predictions"]) == 1, 1.0, -1.0)[:, None]
    got = np.array([list(e["shap_values"].values()) for e in body["explanations"]])
    np.testing.assert_allclose(got, reference * signs, atol=1e-8)


def test_reason_codes_are_the_strongest_pushes_toward_the_prediction(
        client_for: Any, models: dict[str, Any]) -> None:
    _, _, X = models["gbc"]
    body = explain(client_for("gbc"), X.iloc[:20])
    for row, e in zip(X.iloc[:20].to_dict(orient="records"), body["explanations"],
                      strict=True):
        positive = sorted((v for v in e["shap_values"].values() if v > 0), reverse=True)
        reasons = e["reason_codes"]
        assert [r["contribution"] for r in reasons] == positive[:3]
        for reason in reasons:
            assert reason["value"] == pytest.approx(row[reason["feature"]])
            assert e["shap_values"][reason["feature"]] == reason["contribution"]


def test_regression_reasons_rank_by_size_either_way(client_for: Any,
                                                   models: dict[str, Any]) -> None:
    _, model, X = models["linreg"]
    body = explain(client_for("linreg"), X.iloc[:5])
    np.testing.assert_allclose(totals(body), model.predict(X.iloc[:5]), atol=1e-8)
    e = body["explanations"][0]
    assert "class" not in e and e["output"] == "raw"
    sizes = [abs(r["contribution"]) for r in e["reason_codes"]]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] == max(abs(v) for v in e["shap_values"].values())


def test_a_pipeline_is_explained_on_its_input_columns(client_for: Any,
                                                      models: dict[str, Any]) -> None:
    _, model, X = models["pipeline"]
    rows = X.iloc[:8]
    body = explain(client_for("pipeline"), rows)
    assert list(body["explanations"][0]["shap_values"]) == list(X.columns)
    # tenure is dropped by the ColumnTransformer: it contributes nothing
    assert all(e["shap_values"]["tenure"] == 0 for e in body["explanations"])
    np.testing.assert_allclose(
        totals(body), class_margin(model.decision_function(rows), body["predictions"]),
        atol=1e-8)
    region = [r for e in body["explanations"] for r in e["reason_codes"]
              if r["feature"] == "region"]
    assert all(r["value"] in ("north", "south", "east") for r in region)


def test_a_scaled_forest_is_explained_through_its_scaler(client_for: Any,
                                                         models: dict[str, Any]) -> None:
    _, model, X = models["scaled_forest"]
    rows = X.iloc[:6]
    body = explain(client_for("scaled_forest"), rows)
    predicted = np.asarray(body["predictions"])
    np.testing.assert_allclose(totals(body), model.predict_proba(rows)[np.arange(6),
                                                                       predicted], atol=1e-6)


def test_a_model_agnostic_explainer_is_refused_with_a_reason(client_for: Any,
                                                             models: dict[str, Any]) -> None:
    client = client_for("knn")
    X = models["knn"][2].iloc[:2]
    for _ in range(2):  # the refusal is remembered, and answered the same way
        r = client.post("/predict", json={"records": X.to_dict(orient="records"),
                                          "explain": True})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["field"] == "explain"
        assert "KNeighborsClassifier" in error["message"]
        assert "model-agnostic" in error["message"] and "seconds per row" in error["message"]
    r = client.post("/predict", json={"records": X.to_dict(orient="records")})
    assert r.status_code == 200 and "explanations" not in r.json()


@pytest.mark.parametrize(("query", "body", "status"), [
    ("?explain=true", {}, 200), ("?explain=1", {}, 200), ("", {"explain": "yes"}, 400),
    ("?explain=maybe", {}, 400), ("", {"explain": 1}, 400), ("?explain=false", {}, 200),
])
def test_explain_flag_from_the_query_or_the_body(client_for: Any, models: dict[str, Any],
                                                 query: str, body: dict[str, Any],
                                                 status: int) -> None:
    X = models["gbc"][2].iloc[:1]
    r = client_for("gbc").post(f"/predict{query}",
                               json={"records": X.to_dict(orient="records"), **body})
    assert r.status_code == status, r.text
    if status == 400:
        assert r.json()["error"]["field"] == "explain"
    elif query == "?explain=false":
        assert "explanations" not in r.json()
    else:
        assert len(r.json()["explanations"]) == 1


def test_v2_explain_parameter(client_for: Any, models: dict[str, Any]) -> None:
    _, model, X = models["gbc"]
    rows = X.iloc[:3]
    tensors = [{"name": c, "shape": [3], "datatype": "FP64",
                "data": rows[c].astype(float).tolist()} for c in X.columns]
    client = client_for("gbc")
    r = client.post("/v2/models/explain-gbc/infer",
                    json={"inputs": tensors, "parameters": {"explain": True}})
    assert r.status_code == 200, r.text
    explanations = r.json()["parameters"]["explanations"]
    preds = model.predict(rows).tolist()
    np.testing.assert_allclose(totals({"explanations": explanations}),
                               class_margin(model.decision_function(rows), preds), atol=1e-6)
    r = client.post("/v2/models/explain-gbc/infer", json={"inputs": tensors})
    assert "explanations" not in r.json()["parameters"]
    r = client.post("/v2/models/explain-gbc/infer",
                    json={"inputs": tensors, "parameters": {"explain": "often"}})
    assert r.status_code == 400 and "parameters.explain" in r.json()["error"]


def test_a_batch_explains_only_the_rows_that_asked(models: dict[str, Any]) -> None:
    served, model, X = models["gbc"]
    parts = [X.iloc[0:2], X.iloc[2:5], X.iloc[5:6]]
    requests = [PredictionRequest({c: p[c].to_numpy() for c in X.columns}, len(p),
                                  explain=asked)
                for p, asked in zip(parts, (True, False, True), strict=True)]
    results = served.predict_requests(requests)
    assert results[1].explanations is None  # type: ignore[union-attr]
    alone = served.explainer().explain(served.enforce(
        {c: X.iloc[:6][c].to_numpy() for c in X.columns}), model.predict(X.iloc[:6]))
    assert results[0].explanations == alone[0:2]  # type: ignore[union-attr]
    assert results[2].explanations == alone[5:6]  # type: ignore[union-attr]
    assert [r.model_version for r in results] == [1, 1, 1]  # type: ignore[union-attr]


def test_tritonclient_asks_for_explanations(models: dict[str, Any]) -> None:
    http = pytest.importorskip("tritonclient.http")
    served, model, X = models["forest"]
    rows = X.iloc[:4]
    with LiveServer(create_app(served, ServingConfig(log_predictions=False))) as server:
        client = http.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        inputs = []
        for name in X.columns:
            tensor = http.InferInput(name, [len(rows)], "FP64")
            tensor.set_data_from_numpy(rows[name].to_numpy(float), binary_data=False)
            inputs.append(tensor)
        result = client.infer("explain-forest", inputs, parameters={"explain": True})
        np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(rows))
        explanations = result.get_response()["parameters"]["explanations"]
        proba = model.predict_proba(rows)[np.arange(4), model.predict(rows)]
        np.testing.assert_allclose(totals({"explanations": explanations}), proba, atol=1e-6)


def test_explanations_go_to_the_prediction_log(models: dict[str, Any], tmp_path: Any) -> None:
    import json

    from shipyard.serving import read_predictions

    served, _, X = models["gbc"]
    app = create_app(served, ServingConfig(max_batch_size=1, predlog_flush_interval=0.05),
                     home=tmp_path)
    with make_client(app) as client:
        asked = client.post("/predict", json={"records": X.iloc[:2].to_dict("records"),
                                              "explain": True})
        plain = client.post("/predict", json={"records": X.iloc[2:3].to_dict("records")})
        assert asked.status_code == 200 and plain.status_code == 200
    log = read_predictions(tmp_path, served.name).set_index("prediction_id")
    for pid, expected in zip(asked.json()["prediction_ids"], asked.json()["explanations"],
                             strict=True):
        logged = json.loads(log.loc[pid, "explanation"])
        assert logged["reason_codes"] == expected["reason_codes"]
        assert logged["shap_values"] == pytest.approx(expected["shap_values"])
    assert pd.isna(log.loc[plain.json()["prediction_ids"][0], "explanation"])
