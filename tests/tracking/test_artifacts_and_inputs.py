"""Run artifacts (files, folders, dicts, text, tables, figures) and dataset inputs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from shipyard import errors
from shipyard._artifact_io import (
    dataframe_parquet_bytes,
    dataset_fingerprint,
    dict_bytes,
    figure_bytes,
)
from shipyard.store import edges_of, tables
from shipyard.tracking import Run, TrackingService


@pytest.fixture
def run(tracking: TrackingService) -> Run:
    exp = tracking.create_experiment("artifacts")
    return tracking.create_run(exp.experiment_id)


def _artifact_rows(tracking: TrackingService) -> int:
    with tracking.db.read() as conn:
        return int(conn.execute(
            sa.select(sa.func.count()).select_from(tables.artifacts)).scalar_one())


def test_file_artifact_round_trip(tracking: TrackingService, run: Run, tmp_path: Path) -> None:
    local = tmp_path / "weights.bin"
    local.write_bytes(b"\x01\x02" * 5000)
    info = tracking.log_artifact_file(run.run_id, local, "model/weights.bin")
    assert (info.path, info.size) == ("model/weights.bin", 10000)
    assert tracking.read_artifact(run.run_id, "model/weights.bin") == local.read_bytes()
    assert tracking.artifacts.exists(info.digest)
    assert [a.path for a in tracking.list_artifacts(run.run_id)] == ["model/weights.bin"]


def test_folder_listing_and_download(tracking: TrackingService, run: Run,
                                     tmp_path: Path) -> None:
    for path, data in {"model/a.txt": b"a", "model/sub/b.txt": b"b", "modelx/c.txt": b"c",
                       "top.txt": b"t"}.items():
        tracking.log_artifact_bytes(run.run_id, data, path)
    assert [a.path for a in tracking.list_artifacts(run.run_id, "model")] == [
        "model/a.txt", "model/sub/b.txt"]  # not modelx/
    assert [a.path for a in tracking.list_artifacts(run.run_id, "model/")] == [
        "model/a.txt", "model/sub/b.txt"]
    out = tracking.download_artifacts(run.run_id, "model", tmp_path / "dl")
    assert out == tmp_path / "dl" / "model"
    assert (out / "sub" / "b.txt").read_bytes() == b"b"
    assert not (tmp_path / "dl" / "modelx").exists()
    everything = tracking.download_artifacts(run.run_id, dst=tmp_path / "all")
    assert sorted(p.relative_to(everything).as_posix()
                  for p in everything.rglob("*") if p.is_file()) == [
        "model/a.txt", "model/sub/b.txt", "modelx/c.txt", "top.txt"]


def test_prefix_with_sql_wildcards_is_literal(tracking: TrackingService, run: Run) -> None:
    tracking.log_artifact_bytes(run.run_id, b"1", "a_b/x.txt")
    tracking.log_artifact_bytes(run.run_id, b"2", "axb/y.txt")
    tracking.log_artifact_bytes(run.run_id, b"3", "100%/z.txt")
    assert [a.path for a in tracking.list_artifacts(run.run_id, "a_b")] == ["a_b/x.txt"]
    assert [a.path for a in tracking.list_artifacts(run.run_id, "100%")] == ["100%/z.txt"]


def test_overwriting_a_path_points_at_the_new_object(tracking: TrackingService,
                                                     run: Run) -> None:
    first = tracking.log_artifact_bytes(run.run_id, b"v1", "notes.txt")
    second = tracking.log_artifact_bytes(run.run_id, b"v2", "notes.txt")
    assert first.digest != second.digest
    assert tracking.read_artifact(run.run_id, "notes.txt") == b"v2"
    assert _artifact_rows(tracking) == 1


def test_dict_text_table_and_figure(tracking: TrackingService, run: Run) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = {"lr": 0.1, "layers": [64, 32], "name": "gbm"}
    tracking.log_artifact_bytes(run.run_id, dict_bytes(config, "config.json"), "config.json")
    tracking.log_artifact_bytes(run.run_id, dict_bytes(config, "config.yaml"), "config.yaml")
    tracking.log_artifact_bytes(run.run_id, "héllo\n".encode(), "notes/readme.txt")
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None], "c": [0.5, float("nan"), 2.0]})
    tracking.log_artifact_bytes(run.run_id, dataframe_parquet_bytes(df), "tables/t.parquet")
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [3, 1, 2])
    tracking.log_artifact_bytes(run.run_id, figure_bytes(fig, "plots/curve.png"),
                                "plots/curve.png")
    plt.close(fig)

    read = lambda path: tracking.read_artifact(run.run_id, path)  # noqa: E731
    assert json.loads(read("config.json")) == config
    import yaml

    assert yaml.safe_load(read("config.yaml")) == config
    assert read("notes/readme.txt").decode() == "héllo\n"
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(read("tables/t.parquet"))), df)
    assert read("plots/curve.png").startswith(b"\x89PNG\r\n\x1a\n")


def test_serializers_refuse_what_they_cannot_write() -> None:
    with pytest.raises(errors.InvalidInput, match="serialize"):
        dict_bytes({"x": object()}, "x.json")
    with pytest.raises(errors.InvalidInput, match="DataFrame"):
        dataframe_parquet_bytes([1, 2])
    with pytest.raises(errors.InvalidInput, match="figure"):
        figure_bytes("not a figure", "x.png")


def test_matplotlib_figure_needs_an_image_suffix() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    try:
        with pytest.raises(errors.InvalidInput, match="png"):
            figure_bytes(fig, "plot.html")
        assert figure_bytes(fig, "plot.svg").lstrip().startswith(b"<?xml")
    finally:
        plt.close(fig)


@pytest.mark.parametrize("path", ["", "/etc/passwd", "../escape.txt", "a/../../b", "a/./b",
                                  ".", "..", "a\\b.txt", "C:/x.txt", "c:x", "x" * 1025,
                                  "nul\x00.txt", None, 7])
def test_bad_artifact_paths_write_nothing(tracking: TrackingService, run: Run, path: object,
                                          tmp_path: Path) -> None:
    local = tmp_path / "f.txt"
    local.write_text("x")
    with pytest.raises(errors.InvalidInput):
        tracking.log_artifact_bytes(run.run_id, b"x", path)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidInput):
        tracking.log_artifact_file(run.run_id, local, path)  # type: ignore[arg-type]
    assert _artifact_rows(tracking) == 0
    assert list(tracking.artifacts.iter_digests()) == []
    assert tracking.audit_events("run", run.run_id)[-1]["action"] == "run.create"


def test_artifact_for_unknown_run_uploads_nothing(tracking: TrackingService,
                                                  tmp_path: Path) -> None:
    local = tmp_path / "f.txt"
    local.write_text("x")
    with pytest.raises(errors.NotFound):
        tracking.log_artifact_file("e" * 32, local, "f.txt")
    with pytest.raises(errors.NotFound):
        tracking.log_artifact_bytes("e" * 32, b"x", "f.txt")
    with pytest.raises(errors.InvalidInput):
        tracking.log_artifact_bytes("nope", b"x", "f.txt")
    assert list(tracking.artifacts.iter_digests()) == []


def test_missing_local_file(tracking: TrackingService, run: Run, tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidInput, match="no such file"):
        tracking.log_artifact_file(run.run_id, tmp_path / "absent.txt", "absent.txt")
    with pytest.raises(errors.InvalidInput, match="no such file"):
        tracking.log_artifact_file(run.run_id, tmp_path, "folder")


def test_missing_artifact(tracking: TrackingService, run: Run, tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound):
        tracking.read_artifact(run.run_id, "nothing.txt")
    with pytest.raises(errors.NotFound):
        tracking.download_artifacts(run.run_id, "nothing", tmp_path)


def test_tampered_artifact_is_refused_on_read(tracking: TrackingService, run: Run) -> None:
    info = tracking.log_artifact_bytes(run.run_id, b"model bytes", "model.bin")
    Path(tracking.artifacts.object_path(info.digest)).write_bytes(b"evil bytes!")
    with pytest.raises(errors.IntegrityError):
        tracking.read_artifact(run.run_id, "model.bin")


@pytest.mark.s3
def test_artifacts_on_s3(database, s3_artifacts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    service = TrackingService(database, s3_artifacts, actor="tester")
    run = service.create_run(service.create_experiment("s3").experiment_id)
    local = tmp_path / "m.bin"
    local.write_bytes(b"on s3")
    service.log_artifact_file(run.run_id, local, "model/m.bin")
    assert service.read_artifact(run.run_id, "model/m.bin") == b"on s3"
    out = service.download_artifacts(run.run_id, "model", tmp_path / "dl")
    assert (out / "m.bin").read_bytes() == b"on s3"


# -- dataset inputs -----------------------------------------------------------------------------

def test_dataset_input_writes_the_lineage_edge(tracking: TrackingService, run: Run) -> None:
    df = pd.DataFrame({"x": [1, 2, 3], "y": [0.1, 0.2, 0.3]})
    fp = dataset_fingerprint(df)
    dataset_id = tracking.log_input(run.run_id, name="train", digest=fp["digest"],
                                    source="s3://data/train.parquet", schema=fp["schema"],
                                    num_rows=fp["num_rows"])
    again = tracking.log_input(run.run_id, name="train", digest=fp["digest"])
    assert again == dataset_id  # same name + digest = the same dataset version
    eval_id = tracking.log_input(run.run_id, name="train", digest=fp["digest"],
                                 context="evaluation")
    assert eval_id == dataset_id
    (training, evaluation) = sorted(tracking.get_run(run.run_id).inputs,
                                    key=lambda d: d.context, reverse=True)
    assert training.context == "training"
    assert evaluation.context == "evaluation"
    assert (training.name, training.digest, training.num_rows) == ("train", fp["digest"], 3)
    assert training.schema_ == {"x": "int64", "y": "float64"}
    assert training.source == "s3://data/train.parquet"
    with tracking.db.read() as conn:
        edges = edges_of(conn, ("dataset", dataset_id))
    # one lineage edge per (dataset, run): the contexts live on the run's inputs
    assert [(e["relation"], e["dst_type"], e["dst_id"]) for e in edges] == [
        ("input_of", "run", run.run_id)]


def test_a_new_digest_is_a_new_dataset_version(tracking: TrackingService, run: Run) -> None:
    first = tracking.log_input(run.run_id, name="d", digest="a" * 64)
    second = tracking.log_input(run.run_id, name="d", digest="b" * 64)
    assert first != second
    assert len(tracking.get_run(run.run_id).inputs) == 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"name": ""}, "dataset"), ({"digest": ""}, "digest"), ({"digest": "x" * 65}, "digest"),
     ({"digest": 5}, "digest"), ({"context": ""}, "context"), ({"context": "c" * 65}, "context"),
     ({"context": "a/../b"}, "context")],
)
def test_bad_dataset_input_writes_nothing(tracking: TrackingService, run: Run,
                                          kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"name": "d", "digest": "a" * 64, **kwargs}
    with pytest.raises(errors.InvalidInput) as info:
        tracking.log_input(run.run_id, **args)  # type: ignore[arg-type]
    assert info.value.field == field
    with tracking.db.read() as conn:
        assert conn.execute(sa.select(tables.datasets)).all() == []
        assert conn.execute(sa.select(tables.lineage_edges)).all() == []


def test_dataset_input_for_unknown_run(tracking: TrackingService) -> None:
    with pytest.raises(errors.NotFound):
        tracking.log_input("d" * 32, name="d", digest="a" * 64)
    with tracking.db.read() as conn:
        assert conn.execute(sa.select(tables.datasets)).all() == []


def test_fingerprint_depends_on_content_and_dtypes() -> None:
    import numpy as np

    base = dataset_fingerprint(pd.DataFrame({"a": [1, 2]}))
    assert dataset_fingerprint(pd.DataFrame({"a": [1, 2]})) == base
    assert dataset_fingerprint(pd.DataFrame({"a": [1, 3]}))["digest"] != base["digest"]
    assert dataset_fingerprint(pd.DataFrame({"a": [1.0, 2.0]}))["digest"] != base["digest"]
    assert dataset_fingerprint(pd.DataFrame({"b": [1, 2]}))["digest"] != base["digest"]
    assert dataset_fingerprint(np.arange(6).reshape(3, 2))["num_rows"] == 3
    assert dataset_fingerprint(pd.Series([1, 2, 3], name="s"))["schema"] == {"s": "int64"}
    with pytest.raises(errors.InvalidInput):
        dataset_fingerprint([1, 2, 3])
