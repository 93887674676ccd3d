"""The registry service on the embedded default: versions, aliases, history, integrity."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import shipyard as sy
from shipyard import errors
from shipyard.client import Client
from shipyard.registry import VersionStatus, clear_alias_policies, register_alias_policy


@pytest.fixture
def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"income": rng.normal(50, 10, 200), "debt": rng.normal(10, 3, 200)})
    y = (X["debt"] / X["income"] + rng.normal(0, 0.05, 200) > 0.2).astype(int).to_numpy()
    return X, y


def _log(X: pd.DataFrame, y: np.ndarray, name: str | None = "credit", c: float = 1.0):
    model = LogisticRegression(C=c).fit(X, y)
    with sy.start_run(experiment="credit-risk") as run:
        run.log_params({"C": c})
        run.log_metric("auc", 0.8 + c / 100)
        run.log_input(X, name="applications")
        info = run.log_model(model, input_example=X.head(), registered_model_name=name)
    return model, info


def test_log_register_load_round_trip(client: Client, data) -> None:
    X, y = data
    model, info = _log(X, y)
    version = info.registered_version
    assert version is not None and version.version == 1
    assert version.status is VersionStatus.READY
    assert version.run_id == info.run_id and version.digest == info.digest
    assert version.metrics == {"auc": pytest.approx(0.81)}
    assert version.flavor == "sklearn"
    assert {c["name"] for c in version.signature["inputs"]} == {"income", "debt"}
    assert any(r.startswith("scikit-learn==") for r in version.environment["requirements"])
    for uri in ("models:/credit/1", "models:/credit/latest", info.model_uri):
        loaded = sy.load_model(uri)
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
        np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))


def test_versions_are_numbered_one_two_three(client: Client, data) -> None:
    X, y = data
    numbers = [_log(X, y, c=c)[1].registered_version.version for c in (0.5, 1.0, 2.0)]
    assert numbers == [1, 2, 3]
    assert client.registry.get_model("credit").latest_version == 3


def test_aliases_move_and_history_answers_point_in_time(client: Client, data) -> None:
    X, y = data
    for c in (0.5, 1.0):
        _log(X, y, c=c)
    reg = client.registry
    reg.set_alias("credit", "champion", 1)
    time.sleep(0.01)
    between = int(time.time() * 1000)
    time.sleep(0.01)
    change = reg.set_alias("credit", "champion", 2, reason="better auc")
    assert (change.from_version, change.to_version) == (1, 2)
    assert reg.resolve("models:/credit@champion").version == 2
    assert reg.alias_at("credit", "champion", between) == 1
    assert reg.alias_at("credit", "champion", 0) is None
    history = reg.alias_history("credit", "champion")
    assert [(h.from_version, h.to_version) for h in history] == [(None, 1), (1, 2)]
    assert history[-1].reason == "better auc"
    reg.delete_alias("credit", "champion")
    with pytest.raises(errors.NotFound, match="no alias 'champion'"):
        reg.resolve("models:/credit@champion")
    assert reg.alias_history("credit", "champion")[-1].to_version is None
    actions = [e["action"] for e in client.audit_events("model", "credit")]
    assert actions.count("model.alias") == 3


def test_deleting_or_archiving_an_aliased_version_is_refused(client: Client, data) -> None:
    X, y = data
    _log(X, y)
    _log(X, y, c=2.0)
    reg = client.registry
    reg.set_alias("credit", "production", 1)
    with pytest.raises(errors.Conflict, match="production"):
        reg.delete_version("credit", 1)
    with pytest.raises(errors.Conflict, match="production"):
        reg.archive_version("credit", 1)
    reg.archive_version("credit", 2)
    assert reg.get_version("credit", 2).status is VersionStatus.ARCHIVED
    with pytest.raises(errors.Conflict, match="archived"):
        reg.set_alias("credit", "challenger", 2)
    assert reg.resolve("models:/credit/latest").version == 1


def test_alias_policy_can_block_a_promotion(client: Client, data) -> None:
    X, y = data
    _log(X, y)

    def needs_approval(service, name, alias, old, new):  # noqa: ANN001
        if alias == "production":
            raise errors.PermissionDenied(f"{name} v{new} has no approval for {alias}")

    register_alias_policy(needs_approval)
    try:
        with pytest.raises(errors.PermissionDenied, match="no approval"):
            client.registry.set_alias("credit", "production", 1)
        client.registry.set_alias("credit", "staging", 1)
    finally:
        clear_alias_policies()
    assert client.registry.get_model("credit").aliases == {"staging": 1}
    assert client.registry.alias_history("credit", "production") == []


def test_tampered_artifact_is_refused_on_load(client: Client, data, shipyard_home: Path) -> None:
    X, y = data
    _, info = _log(X, y)
    digest = next(a.digest for a in client.list_artifacts(info.run_id, "model")
                  if a.path == "model/model.pkl")
    obj = client.artifact_store.object_path(digest)
    Path(obj).write_bytes(Path(obj).read_bytes() + b"tampered")
    with pytest.raises(errors.IntegrityError, match="tampered"):
        sy.load_model("models:/credit/1")


def test_search_models_and_versions(client: Client, data) -> None:
    X, y = data
    _, a = _log(X, y, name="credit")
    _log(X, y, name="churn")
    reg = client.registry
    reg.update_model("credit", description="PD model", tags={"team": "risk"})
    reg.set_alias("churn", "champion", 1)
    assert [m.name for m in reg.search_models(name_like="cre%")] == ["credit"]
    assert [m.name for m in reg.search_models(tags={"team": "risk"})] == ["credit"]
    assert [v.name for v in reg.search_versions(alias="champion")] == ["churn"]
    assert [v.name for v in reg.search_versions(run_id=a.run_id)] == ["credit"]
    assert reg.search_versions(flavor="xgboost") == []


def test_lineage_walks_version_run_datasets_and_code(client: Client, data) -> None:
    X, y = data
    _, info = _log(X, y)
    graph = client.registry.lineage("models:/credit/1")
    assert graph["model_version"]["digest"] == info.digest
    assert graph["run"]["params"] == {"C": "1.0"}
    assert graph["run"]["datasets"][0]["name"] == "applications"
    assert len(graph["run"]["datasets"][0]["digest"]) == 64
    assert set(graph["code"]) == {"commit", "dirty"}


@pytest.mark.parametrize("uri", ["models:/credit", "models:/credit/0", "models:/credit@",
                                 "runs:/nothex/model", "s3://x", "models:/bad name/1"])
def test_bad_uris_are_invalid_input(client: Client, uri: str) -> None:
    with pytest.raises(errors.InvalidInput, match="URI|name|alias"):
        sy.load_model(uri)


def test_unknown_model_and_version_are_not_found(client: Client, data) -> None:
    X, y = data
    _log(X, y)
    with pytest.raises(errors.NotFound, match="no version 7"):
        sy.load_model("models:/credit/7")
    with pytest.raises(errors.NotFound):
        client.registry.get_model("nope")


def test_register_from_a_run_path_without_a_model_is_not_found(client: Client) -> None:
    with sy.start_run(experiment="e") as run:
        run.log_text("hello", "notes/readme.txt")
    with pytest.raises(errors.NotFound, match="not a logged model"):
        sy.register_model(f"runs:/{run.run_id}/notes", "m")
    assert client.registry.search_models() == []
