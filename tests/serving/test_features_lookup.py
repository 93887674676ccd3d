"""Online feature lookup through the HTTP app: entity keys in, features from the online store
(SQLite and the real Redis), one read per micro-batch, clear 400s, features logged."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

import shipyard as sy
from shipyard.client import Client
from shipyard.config import Settings
from shipyard.features import (
    DataFrameSource,
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    Repo,
    ValueType,
)
from shipyard.serving import (
    PredictionRequest,
    ServedModel,
    ServingConfig,
    create_app,
    read_predictions,
)
from tests.conftest import service_unavailable

from .conftest import LiveServer, make_client

if TYPE_CHECKING:
    from starlette.testclient import TestClient

REDIS = ("127.0.0.1", 6379)
MODEL = "credit-fs"
INFER = f"/v2/models/{MODEL}/infer"


@dataclass
class Trained:
    home: Path
    model: Any
    profiles: pd.DataFrame
    risk: pd.DataFrame


def profiles(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({
        "customer_id": np.arange(1, n + 1, dtype=np.int64),
        "event_timestamp": pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(hours=1),
        "income": rng.normal(50.0, 10.0, n), "debt": rng.normal(20.0, 5.0, n)})


def risk_scores(n: int = 40) -> pd.DataFrame:
    """A score with a one-day TTL: customers 36-40 were last scored three days ago."""
    now = pd.Timestamp.now(tz="UTC").floor("s")
    ids = np.arange(1, n + 1, dtype=np.int64)
    return pd.DataFrame({"customer_id": ids, "risk": np.linspace(0.0, 1.0, n),
                         "event_timestamp": np.where(ids > 35, now - pd.Timedelta(days=3),
                                                     now - pd.Timedelta(hours=1))})


def settings(home: Path, online_url: str | None = None) -> Settings:
    return Settings(home=home, db=f"sqlite:///{home / 'shipyard.db'}",
                    artifacts=str(home / "artifacts"), online_store=online_url)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A model trained on the feature service ``credit_features`` inside its run, the way
    docs/features.md shows, and registered as ``credit-fs`` v1."""
    from sklearn.linear_model import LogisticRegression

    home = tmp_path_factory.mktemp("fs-home")
    client = Client(settings(home, f"sqlite:///{home / 'online.db'}"))
    frame, risk = profiles(), risk_scores()
    client.features.apply(Repo.of([
        Entity(name="customer", join_keys=["customer_id"]),
        FeatureView(name="customer_profile", entities=["customer"],
                    schema=[Feature(name="income", dtype=ValueType.FLOAT64),
                            Feature(name="debt", dtype=ValueType.FLOAT64)],
                    source=DataFrameSource.of("customer_profile", frame)),
        FeatureView(name="risk", entities=["customer"], ttl=timedelta(days=1),
                    schema=[Feature(name="risk", dtype=ValueType.FLOAT64)],
                    source=DataFrameSource.of("risk", risk)),
        FeatureService(name="credit_features", features=["customer_profile", "risk"])]))
    entity_df = pd.DataFrame({"customer_id": frame["customer_id"][:35],
                              "event_timestamp": pd.Timestamp.now(tz="UTC"),
                              "amount": np.linspace(100.0, 5000.0, 35)})
    with sy.start_run("fs-serving", client=client) as run:
        train = sy.get_historical_features(entity_df, feature_service="credit_features",
                                           client=client)
        X = train[["amount", "income", "debt", "risk"]]
        y = (X["income"] - X["debt"] - X["amount"] / 500 + X["risk"] > 25).astype(int)
        model = LogisticRegression(max_iter=2000).fit(X, y)
        run.log_model(model, input_example=X.head(), registered_model_name=MODEL)
    return Trained(home, model, frame, risk)


@pytest.fixture(scope="session")
def redis_up() -> None:
    try:
        import redis
    except ModuleNotFoundError:
        service_unavailable("redis is not installed: pip install 'shipyard-mlops[redis]'")
    conn = redis.Redis(host=REDIS[0], port=REDIS[1], socket_connect_timeout=3)
    try:
        conn.ping()
    except redis.RedisError as exc:
        service_unavailable(f"Redis not reachable at {REDIS[0]}:{REDIS[1]}: {exc}")
    finally:
        conn.close()


@pytest.fixture(params=["sqlite", "redis"])
def online_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'online.db'}"
        return
    request.getfixturevalue("redis_up")
    import redis

    prefix = f"shipyard-serving-test-{uuid.uuid4().hex[:10]}"
    yield f"redis://{REDIS[0]}:{REDIS[1]}/0?prefix={prefix}"
    conn = redis.Redis(host=REDIS[0], port=REDIS[1])
    try:
        keys = list(conn.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            conn.unlink(*keys)
    finally:
        conn.close()


@pytest.fixture
def client(trained: Trained, online_url: str) -> Client:
    """The trained home with this test's online store, filled by a push."""
    client = Client(settings(trained.home, online_url))
    client.feature_store.push("customer_profile", trained.profiles)
    client.feature_store.push("risk", trained.risk)
    return client


@pytest.fixture
def served(client: Client) -> ServedModel:
    return ServedModel.load(f"{MODEL}/1", client)


@pytest.fixture
def http(served: ServedModel, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(create_app(served, ServingConfig(), home=tmp_path / "log")) as test_client:
        yield test_client


def expected(trained: Trained, customers: list[int], amounts: list[float]) -> list[int]:
    rows = trained.profiles.set_index("customer_id").loc[customers]
    risk = trained.risk.set_index("customer_id").loc[customers, "risk"].to_numpy()
    X = pd.DataFrame({"amount": amounts, "income": rows["income"].to_numpy(),
                      "debt": rows["debt"].to_numpy(), "risk": risk})
    return trained.model.predict(X).tolist()


def test_the_version_lists_the_feature_service_of_its_training_data(
        served: ServedModel) -> None:
    assert served.features is not None
    assert served.features.service == "credit_features"
    assert served.features.join_keys == ["customer_id"]
    assert served.features.request_columns == ["amount"]


def test_predict_with_entity_keys_reads_the_online_store(http: TestClient,
                                                         trained: Trained) -> None:
    customers, amounts = [3, 17, 30], [250.0, 4000.0, 90.0]
    r = http.post("/predict", json={"records": [
        {"customer_id": c, "amount": a} for c, a in zip(customers, amounts, strict=True)]})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == expected(trained, customers, amounts)
    r = http.post("/predict", json={"columns": {"customer_id": customers,
                                                "amount": amounts}, "explain": True})
    body = r.json()
    assert body["predictions"] == expected(trained, customers, amounts)
    first = body["explanations"][0]["shap_values"]
    assert list(first) == ["amount", "income", "debt", "risk"]  # the looked-up features


def test_v2_takes_a_tensor_named_after_the_entity_key(http: TestClient,
                                                      trained: Trained) -> None:
    meta = http.get(f"/v2/models/{MODEL}").json()
    assert meta["inputs"] == [{"name": "customer_id", "datatype": "INT64", "shape": [-1]},
                              {"name": "amount", "datatype": "FP64", "shape": [-1]}]
    r = http.post(INFER, json={"inputs": [
        {"name": "customer_id", "shape": [2], "datatype": "INT64", "data": [5, 6]},
        {"name": "amount", "shape": [2, 1], "datatype": "FP64", "data": [[10.0], [20.0]]}]})
    assert r.status_code == 200, r.text
    predict = {o["name"]: o for o in r.json()["outputs"]}["predict"]
    assert predict["data"] == expected(trained, [5, 6], [10.0, 20.0])
    r = http.post(INFER, json={"inputs": [  # JSON clients that send every number as FP64
        {"name": "customer_id", "shape": [1], "datatype": "FP64", "data": [5.0]},
        {"name": "amount", "shape": [1], "datatype": "FP64", "data": [10.0]}]})
    assert r.status_code == 200, r.text


def test_tritonclient_sends_entity_keys(served: ServedModel, trained: Trained) -> None:
    triton = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    with LiveServer(create_app(served, ServingConfig(log_predictions=False))) as server:
        client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        meta = client.get_model_metadata(MODEL)
        assert [i["name"] for i in meta["inputs"]] == ["customer_id", "amount"]

        def infer(customers: list[int]) -> Any:
            key = triton.InferInput("customer_id", [len(customers)], "INT64")
            key.set_data_from_numpy(np.asarray(customers, dtype=np.int64), binary_data=True)
            amount = triton.InferInput("amount", [len(customers)], "FP64")
            amount.set_data_from_numpy(np.full(len(customers), 75.0), binary_data=False)
            return client.infer(MODEL, [key, amount], parameters={"explain": True})

        result = infer([9, 10])
        assert result.as_numpy("predict").tolist() == expected(trained, [9, 10], [75.0] * 2)
        assert len(result.get_response()["parameters"]["explanations"]) == 2
        with pytest.raises(InferenceServerException, match="customer_id=12345"):
            infer([12345])


def test_an_unknown_entity_is_a_400_naming_its_key(http: TestClient) -> None:
    r = http.post("/predict", json={"records": [{"customer_id": 3, "amount": 1.0},
                                                {"customer_id": 999, "amount": 1.0}]})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["field"] == "customer_id"
    assert "customer_id=999: income (missing), debt (missing), risk (missing)" in error[
        "message"]
    assert "customer_id=3" not in error["message"]
    r = http.post(INFER, json={"inputs": [
        {"name": "customer_id", "shape": [1], "datatype": "INT64", "data": [998]},
        {"name": "amount", "shape": [1], "datatype": "FP64", "data": [1.0]}]})
    assert r.status_code == 400 and "customer_id=998" in r.json()["error"]


def test_a_value_past_its_ttl_is_refused_with_its_status(http: TestClient) -> None:
    r = http.post("/predict", json={"records": [{"customer_id": 37, "amount": 1.0}]})
    assert r.status_code == 400, r.text
    assert "customer_id=37: risk (outside_ttl)" in r.json()["error"]["message"]


@pytest.mark.parametrize(("record", "field", "message"), [
    ({"customer_id": 3, "amount": 1.0, "income": 99.0}, "income",
     "income come(s) from the feature store (feature service 'credit_features')"),
    ({"customer_id": 3}, "amount", "missing column(s) amount"),
])
def test_request_values_never_override_the_store_silently(http: TestClient,
                                                          record: dict[str, Any], field: str,
                                                          message: str) -> None:
    r = http.post("/predict", json={"records": [record]})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field and message in r.json()["error"]["message"]


def test_a_request_with_every_model_input_and_no_key_is_predicted_as_sent(
        http: TestClient, trained: Trained) -> None:
    record = {"amount": 100.0, "income": 70.0, "debt": 10.0, "risk": 0.5}
    r = http.post("/predict", json={"records": [record]})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == trained.model.predict(pd.DataFrame([record])).tolist()


def test_one_online_read_for_a_whole_micro_batch(served: ServedModel,
                                                 trained: Trained) -> None:
    assert served.features is not None
    online = served.features.store.online
    real_read = online.read
    calls: list[int] = []

    def counting_read(view: Any, names: Any, keys: Any, **kwargs: Any) -> Any:
        calls.append(len(keys))
        return real_read(view, names, keys, **kwargs)

    online.read = counting_read  # type: ignore[method-assign]
    try:
        requests = [PredictionRequest({"customer_id": [c], "amount": [50.0]}, 1)
                    for c in (1, 2, 999, 4)]
        results = served.predict_requests(requests)
    finally:
        online.read = real_read  # type: ignore[method-assign]
    assert calls[:2] == [4, 4]  # the joined batch: one read per view for all four rows
    assert isinstance(results[2], Exception) and "customer_id=999" in str(results[2])
    good = [results[i].predictions[0] for i in (0, 1, 3)]  # type: ignore[union-attr]
    assert good == expected(trained, [1, 2, 4], [50.0] * 3)


def test_the_features_used_are_logged(served: ServedModel, trained: Trained,
                                      tmp_path: Path) -> None:
    with make_client(create_app(served, ServingConfig(), home=tmp_path)) as test_client:
        r = test_client.post("/predict", json={"records": [{"customer_id": 8,
                                                            "amount": 300.0}]})
        assert r.status_code == 200, r.text
    log = read_predictions(tmp_path, MODEL)
    row = trained.profiles.set_index("customer_id").loc[8]
    assert log["input.income"].tolist() == [pytest.approx(row["income"])]
    assert log["input.debt"].tolist() == [pytest.approx(row["debt"])]
    assert log["input.amount"].tolist() == [300.0]


def test_a_version_tag_names_or_turns_off_the_feature_service(client: Client,
                                                              trained: Trained) -> None:
    from shipyard.serving._features import FEATURE_SERVICE_TAG

    client.registry.set_version_tag(MODEL, 1, FEATURE_SERVICE_TAG, "")
    try:
        plain = ServedModel.load(f"{MODEL}/1", client)
        assert plain.features is None
        with make_client(create_app(plain, ServingConfig(log_predictions=False))) as http:
            r = http.post("/predict", json={"records": [{"customer_id": 3, "amount": 1.0}]})
            assert r.status_code == 400 and "missing columns: income, debt, risk" in r.text
        client.registry.set_version_tag(MODEL, 1, FEATURE_SERVICE_TAG, "no_such_service")
        with pytest.raises(Exception, match="no_such_service"):
            ServedModel.load(f"{MODEL}/1", client)
    finally:
        client.registry.set_version_tag(MODEL, 1, FEATURE_SERVICE_TAG, "credit_features")
    assert ServedModel.load(f"{MODEL}/1", client).features is not None


def test_a_version_without_feature_lineage_has_no_lookup(model_home: Client,
                                                         credit: Any) -> None:
    assert ServedModel.load("credit/1", model_home).features is None


ON_DEMAND_REPO = '''
from datetime import timedelta
from pathlib import Path

from shipyard.features import (Entity, Feature, FeatureService, FeatureView, FileSource,
                               OnDemandFeatureView, RequestField, ValueType)

customer = Entity(name="customer", join_keys=["customer_id"])
profile = FeatureView(name="customer_profile", entities=["customer"],
                      schema=[Feature(name="income", dtype=ValueType.FLOAT64)],
                      source=FileSource(path=str(Path(__file__).parent / "profile.parquet")))


def loan_to_income(features):
    return (features["loan_amount"] / features["income"]).to_frame("loan_to_income")


ratios = OnDemandFeatureView.of(
    loan_to_income, name="ratios", inputs=["customer_profile:income"],
    request_schema=[RequestField(name="loan_amount", dtype=ValueType.FLOAT64)],
    schema=[Feature(name="loan_to_income", dtype=ValueType.FLOAT64)])
loan_features = FeatureService(name="loan_features", features=["customer_profile", "ratios"])
'''


def test_on_demand_features_are_computed_from_the_request(tmp_path: Path) -> None:
    """A service with an on-demand view: the request field feeds its function."""
    from sklearn.linear_model import LogisticRegression

    from shipyard.features import load_repo

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "definitions.py").write_text(ON_DEMAND_REPO)
    frame = profiles()[["customer_id", "event_timestamp", "income"]]
    frame.to_parquet(repo / "profile.parquet", index=False)
    home = tmp_path / "home"
    client = Client(Settings(**settings(home, f"sqlite:///{home / 'online.db'}").model_dump(
        exclude={"feature_repo"}), feature_repo=repo))
    client.features.apply(load_repo(repo))
    entity_df = pd.DataFrame({"customer_id": frame["customer_id"],
                              "event_timestamp": pd.Timestamp.now(tz="UTC"),
                              "loan_amount": np.linspace(1000.0, 90000.0, len(frame))})
    with sy.start_run("fs-on-demand", client=client) as run:
        train = sy.get_historical_features(entity_df, feature_service="loan_features",
                                           client=client)
        X = train[["loan_amount", "income", "loan_to_income"]]
        y = (X["loan_to_income"] > X["loan_to_income"].median()).astype(int)
        model = LogisticRegression(max_iter=5000).fit(X, y)
        run.log_model(model, input_example=X.head(), registered_model_name="loans")
    client.feature_store.push("customer_profile", frame)
    served = ServedModel.load("loans/1", client)
    assert served.features is not None and served.features.on_demand
    assert served.features.request_columns == ["loan_amount"]
    with make_client(create_app(served, ServingConfig(log_predictions=False))) as http:
        r = http.post("/predict", json={"records": [{"customer_id": 3, "loan_amount": 9e4},
                                                    {"customer_id": 4, "loan_amount": 10.0}]})
    assert r.status_code == 200, r.text
    income = frame.set_index("customer_id").loc[[3, 4], "income"].to_numpy()
    want = pd.DataFrame({"loan_amount": [9e4, 10.0], "income": income,
                         "loan_to_income": np.array([9e4, 10.0]) / income})
    assert r.json()["predictions"] == model.predict(want).tolist()
