"""Batch scoring with a feature join: entity keys in the input, features from the offline
store (Parquet file sources), point-in-time per row or as of the job's start."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import shipyard as sy
from shipyard import errors
from shipyard.cli import app
from shipyard.client import Client
from shipyard.config import Settings
from shipyard.features import (
    Entity,
    Feature,
    FeatureService,
    FeatureStore,
    FeatureView,
    FileSource,
    Repo,
    ValueType,
)
from shipyard.serving import ServedModel, predict_parquet

MODEL = "credit-batch-fs"
SERVICE = "credit_features"
COLUMNS = ["amount", "income", "debt", "risk"]
NOW = pd.Timestamp.now(tz="UTC").floor("s")
OLD, NEW = NOW - pd.Timedelta(days=30), NOW - pd.Timedelta(hours=1)


@dataclass
class Home:
    path: Path
    client: Client
    model: Any

    @property
    def store(self) -> FeatureStore:
        return self.client.feature_store


def _feature_files(folder: Path) -> tuple[Path, Path]:
    """Two profile snapshots per customer (no TTL); risk with a one-day TTL, where
    customers 36-40 were last scored 30 days ago."""
    rng = np.random.default_rng(11)
    ids = np.arange(1, 41, dtype=np.int64)
    profile = pd.DataFrame({
        "customer_id": np.concatenate([ids, ids]),
        "event_timestamp": [OLD] * 40 + [NEW] * 40,
        "income": rng.normal(50.0, 10.0, 80), "debt": rng.normal(20.0, 5.0, 80)})
    recent = ids[ids <= 35]
    risk = pd.DataFrame({
        "customer_id": np.concatenate([ids, recent]),
        "event_timestamp": [OLD] * 40 + [NEW] * len(recent),
        "risk": rng.uniform(0.0, 1.0, 40 + len(recent))})
    paths = folder / "profile.parquet", folder / "risk.parquet"
    profile.to_parquet(paths[0], index=False)
    risk.to_parquet(paths[1], index=False)
    return paths


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A model trained inside its run on ``get_historical_features(feature_service=...)``
    over file sources, registered as ``credit-batch-fs`` v1 (it lists the service)."""
    from sklearn.linear_model import LogisticRegression

    path = tmp_path_factory.mktemp("batch-fs-home")
    client = Client(Settings(home=path, db=f"sqlite:///{path / 'shipyard.db'}",
                             artifacts=str(path / "artifacts")))
    profile, risk = _feature_files(path)
    client.features.apply(Repo.of([
        Entity(name="customer", join_keys=["customer_id"]),
        FeatureView(name="customer_profile", entities=["customer"],
                    schema=[Feature(name="income", dtype=ValueType.FLOAT64),
                            Feature(name="debt", dtype=ValueType.FLOAT64)],
                    source=FileSource(path=str(profile))),
        FeatureView(name="risk", entities=["customer"], ttl=timedelta(days=1),
                    schema=[Feature(name="risk", dtype=ValueType.FLOAT64)],
                    source=FileSource(path=str(risk))),
        FeatureService(name=SERVICE, features=["customer_profile", "risk"]),
        FeatureService(name="credit_features_copy", features=["customer_profile", "risk"])]))
    entity_df = pd.DataFrame({"customer_id": np.arange(1, 36, dtype=np.int64),
                              "event_timestamp": NOW,
                              "amount": np.linspace(100.0, 5000.0, 35)})
    with sy.start_run("batch-fs", client=client) as run:
        train = sy.get_historical_features(entity_df, feature_service=SERVICE, client=client)
        X = train[COLUMNS]
        y = (X["income"] - X["debt"] - X["amount"] / 500 + 10 * X["risk"] > 25).astype(int)
        model = LogisticRegression(max_iter=2000).fit(X, y)
        run.log_model(model, input_example=X.head(), registered_model_name=MODEL)
    return Home(path, client, model)


@pytest.fixture
def served(home: Home) -> ServedModel:
    return ServedModel.load(f"{MODEL}/1", home.client)


def entity_input(tmp_path: Path, n: int = 600, *, timestamps: bool = True,
                 customers: list[int] | None = None) -> tuple[Path, pd.DataFrame]:
    """Rows for customers 1-35 at times where both views have a value (the old snapshot's
    first day, or after the new one), written with row groups that miss the chunks."""
    rng = np.random.default_rng(5)
    ids = np.asarray(customers if customers is not None else rng.integers(1, 36, n),
                     dtype=np.int64)
    frame = pd.DataFrame({"customer_id": ids})
    if timestamps:
        offsets = pd.to_timedelta(rng.integers(0, 3600 * 20, len(ids)), unit="s")
        frame["event_timestamp"] = np.where(rng.random(len(ids)) < 0.5, OLD + offsets,
                                            NEW + offsets / 40)
        frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    frame["amount"] = rng.uniform(100.0, 5000.0, len(ids))
    path = tmp_path / "entities.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path,
                   row_group_size=170)
    return path, frame


def test_features_are_joined_point_in_time_as_get_historical_features_does(
        served: ServedModel, home: Home, tmp_path: Path) -> None:
    source, frame = entity_input(tmp_path)
    out = tmp_path / "scored.parquet"
    result = predict_parquet(served, source, out, chunk_rows=128, features="auto",
                             progress=False)
    assert (result.rows, result.chunks, result.feature_service) == (600, 5, SERVICE)
    table = pq.read_table(out)
    assert table.column_names == ["customer_id", "event_timestamp", "amount", "income",
                                  "debt", "risk", "prediction", "probability",
                                  "model_version"]
    scored = table.to_pandas()
    expected = home.store.get_historical_features(frame, feature_service=SERVICE)
    for column in ("income", "debt", "risk"):
        np.testing.assert_array_equal(scored[column].to_numpy(), expected[column].to_numpy())
    assert scored["income"].nunique() > 40  # both snapshots were used, per row's time
    np.testing.assert_array_equal(scored["prediction"], home.model.predict(expected[COLUMNS]))
    np.testing.assert_allclose(scored["probability"],
                               home.model.predict_proba(expected[COLUMNS])[:, 1])
    meta = table.schema.metadata
    assert meta[b"shipyard.model_name"] == MODEL.encode()
    assert meta[b"shipyard.feature_service"] == SERVICE.encode()
    assert json.loads(meta[b"shipyard.feature_views"]) == ["customer_profile/1", "risk/1"]
    assert meta[b"shipyard.feature_timestamp_column"] == b"event_timestamp"
    assert b"shipyard.features_as_of" not in meta


def test_without_a_timestamp_column_the_rows_are_joined_as_of_the_jobs_start(
        served: ServedModel, home: Home, tmp_path: Path) -> None:
    source, frame = entity_input(tmp_path, 300, timestamps=False)
    out = tmp_path / "scored.parquet"
    predict_parquet(served, source, out, chunk_rows=100, features=SERVICE, progress=False)
    table = pq.read_table(out)
    as_of = pd.Timestamp(table.schema.metadata[b"shipyard.features_as_of"].decode())
    assert NEW < as_of <= pd.Timestamp.now(tz="UTC")
    assert "event_timestamp" not in table.column_names
    expected = home.store.get_historical_features(frame.assign(event_timestamp=as_of),
                                                  feature_service=SERVICE)
    scored = table.to_pandas()
    for column in ("income", "debt", "risk"):
        np.testing.assert_array_equal(scored[column].to_numpy(), expected[column].to_numpy())
    latest = pd.read_parquet(home.path / "profile.parquet").query("event_timestamp == @NEW")
    by_id = latest.set_index("customer_id")["income"]
    np.testing.assert_array_equal(scored["income"], by_id.loc[frame["customer_id"]])
    np.testing.assert_array_equal(scored["prediction"], home.model.predict(expected[COLUMNS]))


def test_rows_without_features_fail_the_job_naming_their_keys_by_default(
        served: ServedModel, home: Home, tmp_path: Path) -> None:
    # 36 and 37: their risk is 30 days old (TTL one day); 999: an unknown customer
    source, _ = entity_input(tmp_path, customers=[1, 2, 36, 3, 999, 37, 4],
                             timestamps=False)
    out = tmp_path / "scored.parquet"
    with pytest.raises(errors.InvalidInput) as failed:
        predict_parquet(served, source, out, features="auto", progress=False)
    message = failed.value.message
    assert "customer_id=36 (risk)" in message and "customer_id=37 (risk)" in message
    assert "customer_id=999 (income, debt, risk)" in message
    assert "customer_id=1 " not in message and "--on-missing" in message
    assert not out.exists()


def test_rows_without_features_are_skipped_or_scored_with_nulls_when_asked(
        served: ServedModel, home: Home, tmp_path: Path) -> None:
    source, _ = entity_input(tmp_path, customers=[1, 2, 36, 3, 999, 37, 4],
                             timestamps=False)
    out = tmp_path / "skipped.parquet"
    result = predict_parquet(served, source, out, chunk_rows=3, features="auto",
                             on_missing="skip", progress=False)
    assert (result.rows, result.skipped_rows) == (4, 3)
    assert pq.read_table(out).column("customer_id").to_pylist() == [1, 2, 3, 4]
    # null: the rows reach the model with nulls, and this signature allows none
    with pytest.raises(errors.InvalidInput, match="'income' has missing values"):
        predict_parquet(served, source, tmp_path / "nulls.parquet", features="auto",
                        on_missing="null", progress=False)


def test_an_interrupted_job_resumes_without_joining_its_scored_chunks_again(
        served: ServedModel, home: Home, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    source, _ = entity_input(tmp_path, 500, timestamps=False)
    out = tmp_path / "scored.parquet"
    real_call, real_join = ServedModel.call_model, FeatureStore.get_historical_features
    calls: list[int] = []
    joins: list[int] = []

    def crash_on_third(self: ServedModel, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_call(self, *args, **kwargs)

    def counting(self: FeatureStore, entity_df: Any, *args: Any, **kwargs: Any) -> Any:
        joins.append(len(entity_df))
        return real_join(self, entity_df, *args, **kwargs)

    monkeypatch.setattr(ServedModel, "call_model", crash_on_third)
    monkeypatch.setattr(FeatureStore, "get_historical_features", counting)
    with pytest.raises(KeyboardInterrupt):
        predict_parquet(served, source, out, chunk_rows=100, features="auto", progress=False)
    assert not out.exists()
    job = json.loads((tmp_path / "scored.parquet.parts" / "_job.json").read_text())
    assert job["features"]["service"] == SERVICE
    monkeypatch.setattr(ServedModel, "call_model", real_call)
    joins.clear()
    result = predict_parquet(served, source, out, chunk_rows=100, features="auto",
                             progress=False)
    assert (result.chunks, result.skipped_chunks, result.rows) == (5, 2, 500)
    assert joins == [0, 100, 100, 100]  # the plan's empty join, then chunks 2-4 only
    table = pq.read_table(out)
    assert table.schema.metadata[b"shipyard.features_as_of"].decode() == \
        job["features_as_of"]  # the rerun joined as of the first run's start
    fresh = tmp_path / "fresh.parquet"
    predict_parquet(served, source, fresh, chunk_rows=100, features="auto", progress=False)
    pd.testing.assert_frame_equal(table.to_pandas(), pq.read_table(fresh).to_pandas())


def test_without_features_the_input_goes_to_the_model_as_it_is(
        served: ServedModel, home: Home, tmp_path: Path) -> None:
    source, _ = entity_input(tmp_path, 50)
    with pytest.raises(errors.InvalidInput, match="lacks the model's column"):
        predict_parquet(served, source, tmp_path / "out.parquet", progress=False)


@pytest.fixture
def cli_home(home: Home, monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    from shipyard.client import reset_default_client
    from shipyard.config import reset_settings

    monkeypatch.setenv("SHIPYARD_HOME", str(home.path))
    reset_settings()
    reset_default_client()
    yield home
    reset_settings()
    reset_default_client()


def test_the_cli_joins_the_listed_service_and_warns_about_another(
        cli_home: Home, tmp_path: Path) -> None:
    source, _ = entity_input(tmp_path, 200)
    out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(app, ["predict", f"{MODEL}/1", "-i", str(source), "-o",
                                      str(out), "--features", "auto", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"wrote 200 rows scored by {MODEL} v1 with features of {SERVICE}" in result.output
    other = CliRunner().invoke(app, ["predict", f"{MODEL}/1", "-i", str(source), "-o",
                                     str(tmp_path / "other.parquet"), "--features",
                                     "credit_features_copy", "--no-progress"])
    assert other.exit_code == 0, other.output
    assert ("warning: credit-batch-fs v1 lists feature service 'credit_features'; joining "
            "'credit_features_copy' as asked") in other.output
    assert pq.read_table(tmp_path / "other.parquet").column("risk").equals(
        pq.read_table(out).column("risk"))


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    frame = pd.DataFrame({"customer_id": np.arange(1, 6, dtype=np.int64),
                          "amount": np.linspace(1.0, 5.0, 5)})
    files = {"good": frame, "no_key": frame.drop(columns="customer_id"),
             "text_ts": frame.assign(event_timestamp="2024-01-01"),
             "text_key": frame.assign(customer_id=frame["customer_id"].astype(str)),
             "provided": frame.assign(income=1.0)}
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name}.parquet"
        data.to_parquet(paths[name], index=False)
    return paths


@pytest.mark.parametrize(("file", "extra", "message"), [
    ("good", ["--features", "nothing"], "nothing"),
    ("good", ["--features", "auto", "--on-missing", "drop"], "on_missing must be one of"),
    ("good", ["--features", "auto", "--timestamp-column", "ts"],
     "--timestamp-column 'ts' is not a column of the input"),
    ("no_key", ["--features", "auto"], "lacks the join key column(s) customer_id"),
    ("text_ts", ["--features", "auto"],
     "the timestamp column 'event_timestamp' of the input must hold timestamps, not "),
    ("text_key", ["--features", "auto"], "join key 'customer_id' is VARCHAR in the input"),
    ("provided", ["--features", "auto"], "already has column(s) income, which feature "
     "service 'credit_features' provides"),
])
def test_the_cli_refuses_bad_input_in_one_line_before_writing_anything(
        cli_home: Home, tmp_path: Path, file: str, extra: list[str], message: str) -> None:
    source = _bad_inputs(tmp_path)[file]
    out = tmp_path / "out.parquet"
    result = CliRunner().invoke(app, ["predict", f"{MODEL}/1", "-i", str(source), "-o",
                                      str(out), "--no-progress", *extra])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert message in lines[0]
    assert not out.exists() and not Path(f"{out}.parts").exists()
