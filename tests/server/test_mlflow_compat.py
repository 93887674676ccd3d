"""The unmodified ``mlflow`` client (3.x) against a live Shipyard server, and cross-visibility.

Every test drives the real client over HTTP at ``live_server`` and checks what landed in the
server's stores through Shipyard's own SDK (``server_client``), or the other way round.
``mlflow`` is imported inside the tests: it is slow to import. ``log_model`` calls pass
``pip_requirements`` because MLflow's requirement inference starts a subprocess that takes
20-30 s on these machines; everything else is the client as installed.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from shipyard import errors
from shipyard.client import Client
from shipyard.config import reset_settings

from .conftest import ServerThread

PIP = ["scikit-learn", "skops"]


@pytest.fixture
def mlflow_uri(live_server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """MLflow's client pointed at the live server, telemetry off, no retries."""
    for var, value in (("MLFLOW_TRACKING_URI", live_server.url),
                       ("MLFLOW_DISABLE_TELEMETRY", "true"), ("DO_NOT_TRACK", "1"),
                       ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"),
                       ("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")):
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    import mlflow

    mlflow.set_tracking_uri(live_server.url)
    mlflow.set_registry_uri(live_server.url)
    yield live_server.url
    while mlflow.active_run() is not None:
        mlflow.end_run()
    from mlflow.tracking import fluent

    fluent._active_experiment_id = None  # the next test's server has other experiments


def _code(exc_info: pytest.ExceptionInfo[Any]) -> str:
    return str(exc_info.value.error_code)


def _raw(url: str, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    """One request with the path sent exactly as written (no client-side normalization)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, data


def _training_data() -> tuple[np.ndarray, np.ndarray, LogisticRegression]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    return x, y, LogisticRegression().fit(x, y)


def _folder_digest(folder: Path) -> str:
    """The documented digest of an MLflow model folder, computed independently."""
    lines = []
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = file.relative_to(folder).as_posix()
        lines.append((rel, f"{hashlib.sha256(file.read_bytes()).hexdigest()}  {rel}\n"))
    return hashlib.sha256("".join(line for _, line in sorted(lines)).encode()).hexdigest()


# -- experiments -------------------------------------------------------------------------------

def test_experiments_and_the_default_experiment(mlflow_uri: str,
                                                server_client: Client) -> None:
    import mlflow
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    default = client.get_experiment("0")  # created on first use
    assert default.name == "Default" and default.lifecycle_stage == "active"
    assert server_client.get_experiment_by_name("Default").experiment_id != "0"

    eid = client.create_experiment("exp-a", tags={"team": "risk"})
    client.create_experiment("exp-b")
    assert client.get_experiment(eid).tags == {"team": "risk"}
    assert client.get_experiment_by_name("exp-a").experiment_id == eid
    assert client.get_experiment_by_name("missing") is None
    found = client.search_experiments(filter_string="name LIKE 'exp-%'", order_by=["name DESC"])
    assert [e.name for e in found] == ["exp-b", "exp-a"]
    assert [e.name for e in client.search_experiments(
        filter_string="tags.team = 'risk'")] == ["exp-a"]

    client.rename_experiment(eid, "exp-renamed")
    client.set_experiment_tag(eid, "stage", "dev")
    got = server_client.get_experiment(eid)  # the same experiment, seen by Shipyard
    assert got.name == "exp-renamed" and got.tags == {"team": "risk", "stage": "dev"}

    client.delete_experiment(eid)
    deleted = client.search_experiments(view_type=ViewType.DELETED_ONLY)
    assert [e.experiment_id for e in deleted] == [eid]
    client.restore_experiment(eid)
    assert client.get_experiment(eid).lifecycle_stage == "active"

    with pytest.raises(MlflowException) as missing:
        client.get_experiment("98765")
    assert _code(missing) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as dup:
        client.create_experiment("exp-b")
    assert _code(dup) == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException) as bad:
        client.search_experiments(filter_string="name LIKE")
    assert _code(bad) == "INVALID_PARAMETER_VALUE"


# -- runs --------------------------------------------------------------------------------------

def test_run_lifecycle_params_metrics_and_tags(mlflow_uri: str, server_client: Client) -> None:
    import mlflow
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    with mlflow.start_run(run_name="first") as run:
        mlflow.log_param("C", 0.5)
        mlflow.log_params({"model": "lr", "depth": 3})
        for step in range(5):
            mlflow.log_metric("loss", 1 / (step + 1), step=step)
        mlflow.log_metrics({"nan": float("nan"), "inf": float("inf")})
        mlflow.set_tags({"team": "risk", "tmp": "x"})
        mlflow.delete_tag("tmp")
    rid = run.info.run_id
    client = mlflow.MlflowClient()
    client.log_batch(rid, metrics=[Metric("auc", 0.8, 1_700_000_000_000, 2)],
                     params=[Param("batch", "yes")], tags=[RunTag("note", "batched")])

    got = client.get_run(rid)
    status, raw = _raw(mlflow_uri, "GET", f"/api/2.0/mlflow/runs/get?run_id={rid}")
    assert status == 200 and raw["run"]["info"]["run_uuid"] == got.info.run_id == rid
    assert got.info.experiment_id == "0" and got.info.status == "FINISHED"
    assert got.info.lifecycle_stage == "active" and got.info.run_name == "first"
    assert got.info.artifact_uri == f"mlflow-artifacts:/0/{rid}/artifacts"
    assert got.info.user_id and got.info.end_time >= got.info.start_time > 0
    assert got.data.params == {"C": "0.5", "model": "lr", "depth": "3", "batch": "yes"}
    assert got.data.metrics["loss"] == pytest.approx(0.2) and got.data.metrics["auc"] == 0.8
    assert math.isnan(got.data.metrics["nan"]) and got.data.metrics["inf"] == math.inf
    assert got.data.tags["team"] == "risk" and "tmp" not in got.data.tags
    assert got.data.tags["mlflow.runName"] == "first" and got.data.tags["note"] == "batched"
    history = client.get_metric_history(rid, "loss")
    assert [m.step for m in history] == [0, 1, 2, 3, 4]
    assert history[-1].value == pytest.approx(0.2)

    shipyard_run = server_client.get_run(rid)  # the same run in Shipyard's SDK
    assert shipyard_run.experiment_id == server_client.get_experiment_by_name(
        "Default").experiment_id
    assert shipyard_run.params["batch"] == "yes" and shipyard_run.metrics["auc"] == 0.8
    assert [p.step for p in server_client.get_metric_history(rid, "loss")] == list(range(5))

    with pytest.raises(MlflowException) as changed:
        client.log_param(rid, "C", "0.9")
    assert _code(changed) == "INVALID_PARAMETER_VALUE"

    client.update_run(rid, name="renamed")
    client.set_terminated(rid, status="KILLED")
    assert server_client.get_run(rid).run_name == "renamed"
    assert client.get_run(rid).info.status == "KILLED"
    client.delete_run(rid)
    assert server_client.get_run(rid).lifecycle_stage.value == "deleted"
    with pytest.raises(MlflowException) as gone:
        client.log_metric(rid, "x", 1.0)
    assert _code(gone) == "INVALID_STATE"
    client.restore_run(rid)
    assert client.get_run(rid).info.lifecycle_stage == "active"
    with pytest.raises(MlflowException) as missing:
        client.get_run("0" * 32)
    assert _code(missing) == "RESOURCE_DOES_NOT_EXIST"


def test_search_runs_filters_orders_pages_and_nesting(mlflow_uri: str,
                                                      server_client: Client) -> None:
    import mlflow
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    exp_id = mlflow.set_experiment("search").experiment_id
    with mlflow.start_run(run_name="parent") as parent:
        for i in range(6):
            with mlflow.start_run(run_name=f"child-{i}", nested=True):
                mlflow.log_metric("auc", i / 10)
                mlflow.log_param("model", "gbm" if i % 2 else "lr")
    client = mlflow.MlflowClient()
    runs = client.search_runs([exp_id], "metrics.auc > 0.15 and params.model = 'gbm'",
                              order_by=["metrics.auc DESC"])
    assert [r.data.metrics["auc"] for r in runs] == [0.5, 0.3]
    children = f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    page = client.search_runs([exp_id], children, order_by=["metrics.auc ASC"], max_results=4)
    assert len(page) == 4 and page.token
    rest = client.search_runs([exp_id], children, order_by=["metrics.auc ASC"], max_results=4,
                              page_token=page.token)
    assert [r.data.metrics["auc"] for r in [*page, *rest]] == [i / 10 for i in range(6)]
    named = client.search_runs([exp_id], "tags.mlflow.runName = 'child-3'")
    assert [r.info.run_name for r in named] == ["child-3"]
    assert named[0].data.tags["mlflow.parentRunId"] == parent.info.run_id
    frame = mlflow.search_runs([exp_id], filter_string="attributes.run_name LIKE 'child-%'")
    assert isinstance(frame, pd.DataFrame) and len(frame) == 6

    child = server_client.get_run(named[0].info.run_id)  # nesting is Shipyard's parent link
    assert child.parent_run_id == parent.info.run_id
    client.delete_run(named[0].info.run_id)
    deleted = client.search_runs([exp_id], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [named[0].info.run_id]
    with pytest.raises(MlflowException) as bad:
        client.search_runs([exp_id], "metrics.auc >> 1")
    assert _code(bad) == "INVALID_PARAMETER_VALUE"


def test_dataset_inputs(mlflow_uri: str, server_client: Client) -> None:
    import mlflow

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "label": [0.0, 1.0, 0.0]})
    dataset = mlflow.data.from_pandas(frame, source="s3://bucket/train.parquet", name="train")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")
    got = mlflow.MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    assert len(got) == 1
    assert got[0].dataset.name == "train" and got[0].dataset.digest == dataset.digest
    assert got[0].dataset.source_type == dataset.source._get_source_type()
    assert json.loads(got[0].dataset.schema) == json.loads(dataset.to_dict()["schema"])
    assert json.loads(got[0].dataset.profile)["num_rows"] == 3
    assert {(t.key, t.value) for t in got[0].tags} == {("mlflow.data.context", "training")}
    seen = server_client.get_run(run.info.run_id).inputs
    assert [(d.name, d.digest, d.num_rows, d.context) for d in seen] == [
        ("train", dataset.digest, 3, "training")]


# -- artifacts ---------------------------------------------------------------------------------

def test_artifacts_go_through_the_server(mlflow_uri: str, server_client: Client,
                                         tmp_path: Path) -> None:
    import mlflow

    folder = tmp_path / "plots"
    (folder / "deep").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    (folder / "deep" / "b.bin").write_bytes(bytes(range(256)) * 100)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), "plots")
        mlflow.log_text("hello", "notes/readme.md")
    rid = run.info.run_id
    client = mlflow.MlflowClient()
    assert [(f.path, f.is_dir) for f in client.list_artifacts(rid)] == [
        ("notes", True), ("plots", True)]
    listed = client.list_artifacts(rid, "plots")
    assert [(f.path, f.is_dir, f.file_size) for f in listed] == [
        ("plots/a.txt", False, 5), ("plots/deep", True, None)]
    local = Path(client.download_artifacts(rid, "plots", str(tmp_path / "dl")))
    assert (local / "deep" / "b.bin").read_bytes() == bytes(range(256)) * 100
    assert mlflow.artifacts.load_text(f"runs:/{rid}/notes/readme.md") == "hello"
    # the same bytes, content-addressed in Shipyard's store
    assert server_client.read_artifact(rid, "plots/deep/b.bin") == bytes(range(256)) * 100

    status, body = _raw(mlflow_uri, "GET", f"/api/2.0/mlflow/artifacts/list?run_id={rid}"
                                           "&path=plots")
    assert status == 200 and body["root_uri"] == f"mlflow-artifacts:/0/{rid}/artifacts"
    assert [f["path"] for f in body["files"]] == ["plots/a.txt", "plots/deep"]
    base = f"/api/2.0/mlflow-artifacts/artifacts/0/{rid}/artifacts"
    for method, path in [("PUT", f"{base}/../../../../escape.txt"),
                         ("PUT", f"{base}/%2e%2e/%2e%2e/escape.txt"),
                         ("PUT", "/api/2.0/mlflow-artifacts/artifacts//etc/passwd"),
                         ("PUT", f"{base}/bad%00name.txt"),
                         ("GET", f"{base}/../../../../etc/passwd"),
                         ("GET", f"/api/2.0/mlflow-artifacts/artifacts?path=0/{rid}/../x"),
                         ("GET", f"/api/2.0/mlflow/artifacts/list?run_id={rid}&path=/etc")]:
        status, body = _raw(mlflow_uri, method, path, b"x" if method == "PUT" else None)
        assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), path
    status, body = _raw(mlflow_uri, "PUT", f"/api/2.0/mlflow-artifacts/artifacts/0/{'0' * 32}"
                                           "/artifacts/x.txt", b"x")
    assert (status, body["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert [a.path for a in server_client.list_artifacts(rid)] == [
        "notes/readme.md", "plots/a.txt", "plots/deep/b.bin"]


# -- models ------------------------------------------------------------------------------------

def test_sklearn_log_model_register_alias_and_load(mlflow_uri: str, server_client: Client,
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    x, y, model = _training_data()
    mlflow.set_experiment("models")
    with mlflow.start_run() as run:
        mlflow.log_metric("accuracy", float(model.score(x, y)))
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name="clf",
                                        input_example=x[:2], pip_requirements=PIP)
    rid = run.info.run_id
    assert info.registered_model_version == "1" and info.model_id.startswith("m-")
    client = mlflow.MlflowClient()
    logged = client.get_logged_model(info.model_id)
    assert logged.status.to_int() == 2 and logged.source_run_id == rid  # READY
    assert logged.name == "model" and logged.artifact_location.startswith("mlflow-artifacts:/")
    assert [m.model_id for m in client.search_logged_models(
        [run.info.experiment_id], filter_string="name = 'model'")] == [info.model_id]
    assert [o.model_id for o in client.get_run(rid).outputs.model_outputs] == [info.model_id]
    assert [r.info.run_id for r in client.search_runs([run.info.experiment_id])] == [rid]

    client.set_registered_model_alias("clf", "champion", "1")
    by_alias = client.get_model_version_by_alias("clf", "champion")
    assert (by_alias.version, by_alias.run_id) == ("1", rid)
    assert by_alias.source == f"models:/{info.model_id}"
    registered = client.get_registered_model("clf")
    assert registered.aliases == {"champion": "1"}
    assert [v.version for v in registered.latest_versions] == ["1"]
    assert [m.name for m in client.search_registered_models("name = 'clf'")] == ["clf"]
    assert [v.version for v in client.search_model_versions("name = 'clf'")] == ["1"]
    uri = client.get_model_version_download_uri("clf", "1")
    assert uri == logged.artifact_location

    loaded = mlflow.pyfunc.load_model("models:/clf@champion")
    assert np.array_equal(loaded.predict(x[:10]), model.predict(x[:10]))
    sk = mlflow.sklearn.load_model("models:/clf/1")
    assert np.array_equal(sk.predict(x), model.predict(x))

    # Shipyard's side: a version with flavor mlflow, the folder digest, lineage to the run
    (version,) = server_client.registry.search_versions(name="clf")
    assert version.flavor == "mlflow" and version.run_id == rid
    assert version.aliases == ["champion"] and version.metrics["accuracy"] > 0.5
    folder = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "m")))
    assert version.digest == _folder_digest(folder)
    assert server_client.registry.resolve("models:/clf@champion").version == 1
    with pytest.raises(errors.InvalidInput, match="mlflow.pyfunc.load_model"):
        server_client.registry.load_model("models:/clf@champion")  # documented: MLflow format

    monkeypatch.setenv("SHIPYARD_URI", mlflow_uri)  # the CLI, through the server
    reset_settings()
    from typer.testing import CliRunner

    from shipyard.cli import app

    shown = CliRunner().invoke(app, ["models", "versions", "clf", "-o", "json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)[0]["flavor"] == "mlflow"

    with pytest.raises(MlflowException) as gone:
        client.get_model_version_by_alias("clf", "nope")
    assert _code(gone) == "RESOURCE_DOES_NOT_EXIST"


def test_register_a_run_artifact_folder(mlflow_uri: str, server_client: Client,
                                        tmp_path: Path) -> None:
    """MLflow 2 style: a model folder logged as run artifacts, registered by runs:/ URI."""
    import mlflow

    x, _, model = _training_data()
    mlflow.sklearn.save_model(model, str(tmp_path / "saved"), pip_requirements=PIP)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(tmp_path / "saved"), "model")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", "clf2")
    assert version.version == "1" and version.run_id == run.info.run_id
    assert version.source == f"mlflow-artifacts:/0/{run.info.run_id}/artifacts/model"
    loaded = mlflow.pyfunc.load_model("models:/clf2/1")
    assert np.array_equal(loaded.predict(x[:5]), model.predict(x[:5]))
    got = server_client.registry.get_version("clf2", 1)
    assert got.source == f"runs:/{run.info.run_id}/model" and got.flavor == "mlflow"
    assert got.digest == _folder_digest(tmp_path / "saved")


def test_registry_updates_and_errors(mlflow_uri: str, server_client: Client,
                                     tmp_path: Path) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    _, _, model = _training_data()
    client = mlflow.MlflowClient()
    client.create_registered_model("reg", tags={"owner": "risk"}, description="first")
    with pytest.raises(MlflowException) as dup:
        client.create_registered_model("reg")
    assert _code(dup) == "RESOURCE_ALREADY_EXISTS"
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="m", pip_requirements=PIP)
        (tmp_path / "x.txt").write_text("not a model")
        mlflow.log_artifact(str(tmp_path / "x.txt"), "junk")
    client.set_logged_model_tags(info.model_id, {"stage": "candidate", "tmp": "1"})
    client.delete_logged_model_tag(info.model_id, "tmp")
    client.log_model_params(info.model_id, {"solver": "lbfgs"})
    logged = client.get_logged_model(info.model_id)
    assert logged.tags["stage"] == "candidate" and "tmp" not in logged.tags
    assert logged.params["solver"] == "lbfgs"
    backing = server_client.get_run(info.model_id.removeprefix("m-"))  # a run nested under
    assert backing.parent_run_id == run.info.run_id and backing.params["solver"] == "lbfgs"
    mv = client.create_model_version("reg", f"models:/{info.model_id}", run_id=run.info.run_id,
                                     tags={"k": "v"}, description="v1")
    assert (mv.version, mv.tags, mv.description) == ("1", {"k": "v"}, "v1")
    with pytest.raises(MlflowException) as not_model:
        client.create_model_version("reg", f"runs:/{run.info.run_id}/junk")
    assert _code(not_model) == "INVALID_PARAMETER_VALUE"

    client.update_registered_model("reg", description="second")
    client.set_registered_model_tag("reg", "tier", "1")
    client.update_model_version("reg", "1", description="better")
    client.set_model_version_tag("reg", "1", "validated", "yes")
    got = client.get_model_version("reg", "1")
    assert got.description == "better" and got.tags == {"k": "v", "validated": "yes"}
    shipyard_model = server_client.registry.get_model("reg")
    assert shipyard_model.description == "second"
    assert shipyard_model.tags == {"owner": "risk", "tier": "1"}
    assert server_client.registry.get_version("reg", 1).description == "better"

    client.set_registered_model_alias("reg", "prod", "1")
    client.delete_registered_model_alias("reg", "prod")
    assert client.get_registered_model("reg").aliases == {}
    assert [c.to_version for c in server_client.registry.alias_history("reg", "prod")] == [
        1, None]
    with pytest.raises(MlflowException) as missing:
        client.get_registered_model("nope")
    assert _code(missing) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as unsupported:
        client.delete_registered_model("reg")
    assert _code(unsupported) == "NOT_IMPLEMENTED"
    client.delete_model_version("reg", "1")
    assert server_client.registry.search_versions(name="reg") == []
    client.delete_logged_model(info.model_id)
    with pytest.raises(MlflowException) as deleted:
        client.get_logged_model(info.model_id)
    assert _code(deleted) == "RESOURCE_DOES_NOT_EXIST"


def test_shipyard_objects_are_visible_to_mlflow(mlflow_uri: str,
                                                server_client: Client) -> None:
    import mlflow

    x, y, model = _training_data()
    exp_id = server_client.create_experiment("from-shipyard").experiment_id
    parent = server_client.create_run(exp_id, run_name="train")
    child = server_client.create_run(exp_id, run_name="fold", parent_run_id=parent.run_id)
    server_client.log_batch(parent.run_id, metrics=[("auc", 0.91, 3, 1_700_000_000_000)],
                            params={"C": "1.0"}, tags={"team": "risk"})
    server_client.end_run(parent.run_id)
    server_client.registry.log_model(parent.run_id, model, "model",
                                     registered_model_name="sy-model")
    server_client.registry.set_alias("sy-model", "champion", 1)

    client = mlflow.MlflowClient()
    assert client.get_experiment_by_name("from-shipyard").experiment_id == exp_id
    got = client.get_run(parent.run_id)
    assert got.data.params == {"C": "1.0"} and got.data.metrics == {"auc": 0.91}
    assert got.data.tags["team"] == "risk" and got.info.status == "FINISHED"
    (auc,) = client.get_metric_history(parent.run_id, "auc")
    assert (auc.step, auc.timestamp) == (3, 1_700_000_000_000)
    nested = client.get_run(child.run_id)
    assert nested.data.tags["mlflow.parentRunId"] == parent.run_id
    assert {f.path for f in client.list_artifacts(parent.run_id, "model")} >= {
        "model/shipyard-model.json"}

    assert "sy-model" in [m.name for m in client.search_registered_models()]
    version = client.get_model_version_by_alias("sy-model", "champion")
    assert version.version == "1" and version.run_id == parent.run_id
    assert version.source == f"runs:/{parent.run_id}/model"
    assert client.get_model_version_download_uri("sy-model", "1") == (
        f"mlflow-artifacts:/{exp_id}/{parent.run_id}/artifacts/model")


def test_unknown_and_unsupported_routes_answer_in_mlflow_format(mlflow_uri: str) -> None:
    status, body = _raw(mlflow_uri, "GET", "/api/2.0/mlflow/traces/abc/info")
    assert (status, body["error_code"]) == (404, "ENDPOINT_NOT_FOUND")
    status, body = _raw(mlflow_uri, "GET", f"/api/2.0/mlflow/runs/get?run_id={'0' * 32}")
    assert (status, body["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    status, body = _raw(mlflow_uri, "POST", "/api/2.0/mlflow/runs/log-batch", b"[1, 2]")
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    status, body = _raw(mlflow_uri, "GET", "/ajax-api/2.0/mlflow/experiments/get?"
                                           "experiment_id=0")
    assert status == 200 and body["experiment"]["name"] == "Default"
    status, body = _raw(mlflow_uri, "GET", "/api/2.0/mlflow/experiments/get?"
                                           "experiment_id=abc")
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    status, body = _raw(mlflow_uri, "GET", "/api/3.0/mlflow/server-info")
    assert status == 200 and body["multipart_uploads_enabled"] is False
    assert os.environ["MLFLOW_TRACKING_URI"] == mlflow_uri


def test_auth_tokens_own_what_mlflow_creates(server_client: Client,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    from shipyard.server import create_app

    server_client.auth.create_user("alice", "editor")
    token = server_client.auth.create_token("alice").token
    with ServerThread(create_app(server_client, auth=True)) as server:
        for var, value in (("MLFLOW_DISABLE_TELEMETRY", "true"),
                           ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"),
                           ("MLFLOW_TRACKING_TOKEN", token)):
            monkeypatch.setenv(var, value)
        client = mlflow.MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        run = client.create_run("0")
        client.log_metric(run.info.run_id, "x", 1.0)
        assert client.get_run(run.info.run_id).info.user_id == "alice"
        actors = {e["actor"] for e in server_client.audit_events("run", run.info.run_id)}
        assert actors == {"alice"}  # the token's user, not the client's OS user
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "sy_bad_token")
        with pytest.raises(MlflowException):
            client.get_run(run.info.run_id)
