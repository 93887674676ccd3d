"""One SDK suite, run against local stores and against a live server: same behaviour."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import shipyard as sy
from shipyard import errors


def test_client_kind_follows_the_mode(sdk_mode: str) -> None:
    assert sy.Client().is_remote is (sdk_mode == "remote")


def test_runs_params_metrics_tags_round_trip(sdk_mode: str) -> None:
    with sy.start_run(experiment="shared", run_name="r1", tags={"team": "risk"}) as run:
        run.log_params({"C": 0.5, "model": "lr"})
        for step in range(50):
            run.log_metric("loss", 1 / (step + 1), step=step)
        run.log_metrics({"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")})
        with sy.start_run(nested=True, run_name="child") as child:
            child.log_metric("x", 1)
    got = sy.get_run(run.run_id)
    assert got.status.value == "FINISHED" and got.run_name == "r1"
    assert got.params == {"C": "0.5", "model": "lr"}
    assert got.tags["team"] == "risk"
    assert got.metrics["loss"] == pytest.approx(1 / 50)
    assert math.isnan(got.metrics["nan"]) and got.metrics["inf"] == math.inf
    assert got.metrics["ninf"] == -math.inf
    history = sy.Client().get_metric_history(run.run_id, "loss")
    assert [m.step for m in history] == list(range(50))
    assert sy.get_run(child.run_id).parent_run_id == run.run_id


def test_search_filters_orders_and_pages(sdk_mode: str) -> None:
    for i in range(7):
        with sy.start_run(experiment="search") as run:
            run.log_metric("auc", i / 10)
            run.log_param("model", "gbm" if i % 2 else "lr")
    runs = sy.search_runs(["search"], filter_string="metrics.auc > 0.25 and params.model = 'gbm'",
                          order_by=["metrics.auc DESC"], output_format="list")
    assert [r.metrics["auc"] for r in runs] == [0.5, 0.3]
    page, token = sy.Client().search_runs(None, order_by=["metrics.auc ASC"], max_results=3)
    assert len(page) == 3 and token is not None
    with pytest.raises(errors.InvalidInput, match="position"):
        sy.search_runs(filter_string="metrics.auc >> 1")


def test_errors_are_the_same_classes(sdk_mode: str) -> None:
    client = sy.Client()
    with pytest.raises(errors.NotFound):
        client.get_run("0" * 32)
    with pytest.raises(errors.InvalidInput):
        client.get_run("not-a-run-id")
    client.create_experiment("dup")
    with pytest.raises(errors.AlreadyExists):
        client.create_experiment("dup")
    with sy.start_run(experiment="dup") as run:
        run.log_param("p", 1)
    with pytest.raises(errors.Conflict, match="immutable"):
        client.log_param(run.run_id, "p", 2)


def test_artifacts_upload_list_download(sdk_mode: str, tmp_path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_text("alpha")
    (tmp_path / "d" / "sub" / "b.bin").write_bytes(bytes(range(256)) * 1000)
    with sy.start_run(experiment="art") as run:
        run.log_artifacts(tmp_path / "d", "inputs")
        run.log_dict({"k": [1, 2]}, "cfg/config.json")
        run.log_table(pd.DataFrame({"x": [1, 2, 3]}), "t.parquet")
    client = sy.Client()
    paths = [a.path for a in client.list_artifacts(run.run_id)]
    assert paths == ["cfg/config.json", "inputs/a.txt", "inputs/sub/b.bin", "t.parquet"]
    assert client.read_artifact(run.run_id, "inputs/a.txt") == b"alpha"
    out = client.download_artifacts(run.run_id, "inputs", tmp_path / "out")
    assert (out / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 1000
    with pytest.raises(errors.InvalidInput):
        client.log_artifact_bytes(run.run_id, b"x", "../escape.txt")
    with pytest.raises(errors.NotFound):
        client.read_artifact(run.run_id, "nope.txt")


def test_models_register_alias_and_load(sdk_mode: str) -> None:
    X = pd.DataFrame({"a": np.linspace(0, 1, 40), "b": np.linspace(1, 0, 40)})
    model = LogisticRegression().fit(X, (X["a"] > 0.5).astype(int))
    with sy.start_run(experiment="models") as run:
        run.log_input(X, name="train")
        info = run.log_model(model, input_example=X.head(), registered_model_name="m")
    client = sy.Client()
    client.registry.set_alias("m", "champion", info.registered_version.version)
    loaded = sy.load_model("models:/m@champion")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert client.registry.alias_history("m", "champion")[0].to_version == 1
    assert client.registry.lineage("models:/m/1")["run"]["datasets"][0]["name"] == "train"
    with pytest.raises(errors.InvalidInput, match="missing columns"):
        loaded.predict(X.drop(columns="a"))
    with pytest.raises(errors.NotFound):
        sy.load_model("models:/m/9")
