"""The feature store facade on the example repository: apply → training data → online."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from shipyard import errors
from shipyard.features import FeatureRegistry, FeatureStore, load_repo
from shipyard.store import Database

from .example_repo._data import START
from .test_repo import copy_example_repo


@pytest.fixture
def store(tmp_path: Path, online_url: str) -> FeatureStore:
    repo = copy_example_repo(tmp_path / "feature_repo")
    db = Database(f"sqlite:///{tmp_path / 'meta.db'}")
    registry = FeatureRegistry(db, "tester", home=tmp_path / "home")
    registry.apply(load_repo(repo))
    return FeatureStore(db, registry, online_url=online_url, repo_path=repo)


def _entities() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": [1001, 1002, 1001, 9999],
        "event_timestamp": [START + pd.Timedelta(days=3), START + pd.Timedelta(days=20),
                            START - pd.Timedelta(days=1), START + pd.Timedelta(days=5)],
        "loan_amount": [10_000.0, 5_000.0, 7_000.0, 1_000.0],
    })


def test_training_data_from_a_feature_service_includes_on_demand(store: FeatureStore,
                                                                 tmp_path: Path) -> None:
    frame = store.get_historical_features(_entities(), feature_service="credit_model_v1")
    profile = pd.read_parquet(tmp_path / "feature_repo" / "data" / "customer_profile.parquet")
    first = profile[profile.customer_id == 1001].sort_values("event_timestamp").iloc[0]
    assert frame.loc[0, "income"] == pytest.approx(first["income"])
    assert frame.loc[0, "loan_to_income"] == pytest.approx(10_000 / first["income"])
    assert pd.isna(frame.loc[2, "income"])  # before the first profile row
    assert pd.isna(frame.loc[3, "txn_count_7d"])  # unknown customer
    assert list(frame.columns[:3]) == ["customer_id", "event_timestamp", "loan_amount"]


def _shift_to_now(path: Path) -> pd.Timedelta:
    """Move a source's event times so that its last day is yesterday."""
    frame = pd.read_parquet(path)
    shift = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=1)).floor("D") - frame[
        "event_timestamp"].max()
    frame["event_timestamp"] += shift
    frame.to_parquet(path, index=False)
    return shift


def test_materialize_then_read_online_with_statuses(store: FeatureStore, tmp_path: Path) -> None:
    data = tmp_path / "feature_repo" / "data"
    _shift_to_now(data / "customer_profile.parquet")
    frame = pd.read_parquet(data / "customer_profile.parquet")
    latest_income = frame[frame.customer_id == 1001].sort_values("event_timestamp")[
        "income"].iloc[-1]
    end = pd.Timestamp.now(tz="UTC")
    results = store.materialize(end.to_pydatetime())
    assert {r.view for r in results} == {"customer_profile", "transaction_stats"}
    online = store.get_online_features(
        [{"customer_id": 1001}, {"customer_id": 4242}],
        ["customer_profile:income", "transaction_stats:txn_count_7d",
         "debt_ratios:loan_to_income"], request_data={"loan_amount": [10_000.0, 1.0]})
    first, unknown = online.rows
    assert first["income"] == pytest.approx(latest_income)
    assert online.statuses[0]["income"] == "present"
    assert first["loan_to_income"] == pytest.approx(10_000.0 / latest_income)
    assert online.statuses[1]["income"] == "missing" and unknown["income"] is None
    # the transaction stats still end in January 2024: past their 7-day TTL by now
    assert online.statuses[0]["txn_count_7d"] == "outside_ttl"
    assert first["txn_count_7d"] is None


def test_push_makes_fresh_values_visible_online(store: FeatureStore) -> None:
    now = pd.Timestamp.now(tz="UTC")
    pushed = pd.DataFrame({"customer_id": [1003], "event_timestamp": [now],
                           "txn_count_7d": [99], "txn_amount_7d": [12.5],
                           "late_payments_90d": [0]})
    assert store.push("transaction_stats", pushed) == 1
    online = store.get_online_features([{"customer_id": 1003}],
                                       ["transaction_stats:txn_count_7d"])
    assert online.rows[0]["txn_count_7d"] == 99
    assert online.statuses[0]["txn_count_7d"] == "present"
    assert abs(online.event_timestamps[0]["txn_count_7d"] - now.to_pydatetime()) < timedelta(
        seconds=1)


def test_bad_requests(store: FeatureStore) -> None:
    with pytest.raises(errors.InvalidInput, match="either"):
        store.get_historical_features(_entities())
    with pytest.raises(errors.NotFound, match="nope"):
        store.get_online_features([{"customer_id": 1}], ["nope:x"])
    with pytest.raises(errors.InvalidInput, match="no feature"):
        store.get_online_features([{"customer_id": 1}], ["customer_profile:height"])
    with pytest.raises(errors.InvalidInput, match="join key"):
        store.get_online_features([{"client": 1}], ["customer_profile:income"])


def test_online_features_over_the_server(tmp_path: Path) -> None:
    from shipyard.client import Client
    from shipyard.config import Settings
    from shipyard.server import create_app
    from tests.server.conftest import ServerThread

    repo = copy_example_repo(tmp_path / "feature_repo")
    local = Client(Settings(home=tmp_path / "srv", feature_repo=repo))
    local.features.apply(load_repo(repo))
    now = pd.Timestamp.now(tz="UTC")
    local.feature_store.push("customer_profile", pd.DataFrame({
        "customer_id": [7], "event_timestamp": [now], "income": [50_000.0], "age": [40],
        "employment_years": [3.0]}))
    with ServerThread(create_app(local)) as server:
        remote = Client(uri=server.url).feature_store
        got = remote.get_online_features([{"customer_id": 7}, {"customer_id": 8}],
                                         ["customer_profile:income",
                                          "debt_ratios:loan_to_income"],
                                         request_data={"loan_amount": [5_000.0, 1.0]})
        assert got.rows[0]["income"] == 50_000.0
        assert got.rows[0]["loan_to_income"] == pytest.approx(0.1)
        assert got.statuses[1]["income"] == "missing"
        with pytest.raises(errors.NotFound):
            remote.get_online_features([{"customer_id": 7}], ["nope:x"])


def test_training_data_in_a_run_links_feature_views_to_the_model(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    import shipyard as sy
    from shipyard.client import Client

    repo = copy_example_repo(tmp_path / "feature_repo")
    client = Client()  # the test's own SHIPYARD_HOME
    client.features.apply(load_repo(repo))
    client.settings = client.settings.model_copy(update={"feature_repo": repo})
    with sy.start_run(experiment="fs", client=client) as run:
        train = sy.get_historical_features(_entities().iloc[:2], ["customer_profile:income"],
                                           client=client)
        model = LinearRegression().fit(train[["income"]], [0.0, 1.0])
        info = run.log_model(model, input_example=train[["income"]],
                             registered_model_name="pd-model")
    stored = client.tracking.get_run(run.run_id)
    assert [i.name for i in stored.inputs] == ["features:selection"]
    assert info.registered_version is not None
    assert info.registered_version.feature_refs == ["feature_view:customer_profile/1"]
    graph = client.registry.lineage("models:/pd-model/1")
    assert graph["features"] == ["feature_view:customer_profile/1"]
