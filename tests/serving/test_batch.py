"""Batch inference: Parquet in, predictions out, chunked and resumable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shipyard import errors
from shipyard.cli import app
from shipyard.client import Client
from shipyard.serving import ServedModel, predict_parquet

from .conftest import Registered, credit_frame, register


@pytest.fixture
def scoring_input(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    frame = credit_frame(1050, seed=3)
    frame.insert(0, "customer_id", [f"c{i:05d}" for i in range(len(frame))])
    path = tmp_path / "input.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path,
                   row_group_size=300)  # row groups that do not line up with chunks
    return path, frame


def test_output_is_the_input_plus_the_models_predictions(
        served: ServedModel, credit: Registered, scoring_input: tuple[Path, pd.DataFrame],
        tmp_path: Path) -> None:
    source, frame = scoring_input
    out = tmp_path / "scored.parquet"
    result = predict_parquet(served, source, out, chunk_rows=200, id_column="customer_id",
                             progress=False)
    assert (result.rows, result.chunks, result.skipped_chunks) == (1050, 6, 0)
    table = pq.read_table(out)
    assert table.column_names == ["customer_id", "age", "income", "debt", "prediction",
                                  "probability", "model_version"]
    scored = table.to_pandas()
    features = frame[["age", "income", "debt"]]
    pd.testing.assert_frame_equal(scored[frame.columns], frame)
    np.testing.assert_array_equal(scored["prediction"], credit.model.predict(features))
    np.testing.assert_allclose(scored["probability"], credit.model.predict_proba(features)[:, 1])
    assert set(scored["model_version"]) == {1}
    meta = table.schema.metadata
    assert meta[b"shipyard.model_name"] == b"credit"
    assert meta[b"shipyard.model_version"] == b"1"
    assert meta[b"shipyard.model_digest"] == served.digest.encode()
    assert not Path(f"{out}.parts").exists()


def test_a_rerun_skips_the_parts_already_written(
        served: ServedModel, scoring_input: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    source, _ = scoring_input
    out = tmp_path / "scored.parquet"
    predict_parquet(served, source, out, chunk_rows=200, keep_parts=True, progress=False)
    first = pq.read_table(out)
    parts = Path(f"{out}.parts")
    assert sorted(p.name for p in parts.glob("part-*")) == [f"part-{i:05d}.arrow"
                                                             for i in range(6)]
    out.unlink()
    (parts / "part-00003.arrow").unlink()
    again = predict_parquet(served, source, out, chunk_rows=200, progress=False)
    assert again.skipped_chunks == 5
    assert pq.read_table(out).equals(first)
    assert not parts.exists()


def test_an_interrupted_run_resumes(served: ServedModel, scoring_input: tuple[Path,
                                    pd.DataFrame], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    source, _ = scoring_input
    out = tmp_path / "scored.parquet"
    real = ServedModel.call_model
    calls = []

    def crash_on_third(self: ServedModel, *args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ServedModel, "call_model", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        predict_parquet(served, source, out, chunk_rows=400, progress=False)
    assert not out.exists()
    assert len(list(Path(f"{out}.parts").glob("part-*.arrow"))) == 2
    monkeypatch.setattr(ServedModel, "call_model", real)
    result = predict_parquet(served, source, out, chunk_rows=400, progress=False)
    assert (result.chunks, result.skipped_chunks) == (3, 2)
    assert pq.read_metadata(out).num_rows == 1050


def test_parts_of_another_job_are_discarded(served: ServedModel, scoring_input: tuple[
        Path, pd.DataFrame], tmp_path: Path) -> None:
    source, _ = scoring_input
    out = tmp_path / "scored.parquet"
    predict_parquet(served, source, out, chunk_rows=200, keep_parts=True, progress=False)
    result = predict_parquet(served, source, out, chunk_rows=500, progress=False)
    assert (result.chunks, result.skipped_chunks) == (3, 0)
    assert pq.read_metadata(out).num_rows == 1050


def test_multiclass_gets_one_probability_column_per_class(tmp_path: Path) -> None:
    from sklearn.tree import DecisionTreeClassifier

    X = pd.DataFrame({"x": np.arange(30.0)})
    y = np.array(["low", "mid", "high"])[np.arange(30) // 10]
    register(DecisionTreeClassifier().fit(X, y), X, "bands")
    source = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pandas(X), source)
    out = tmp_path / "out.parquet"
    predict_parquet(ServedModel.load("bands"), source, out, chunk_rows=7, progress=False)
    scored = pq.read_table(out).to_pandas()
    assert [c for c in scored.columns if c.startswith("proba_")] == [
        "proba_high", "proba_low", "proba_mid"]
    assert scored["prediction"].tolist() == y.tolist()


@pytest.mark.parametrize(("columns", "id_column", "message"), [
    (["age", "income"], None, "lacks the model's column(s) debt"),
    (["age", "income", "debt"], "key", "--id-column 'key' is not a column"),
    (["age", "income", "debt", "prediction"], None, "already has column(s) prediction"),
])
def test_bad_inputs_fail_before_anything_is_written(served: ServedModel, tmp_path: Path,
                                                    columns: list[str], id_column: str | None,
                                                    message: str) -> None:
    frame = credit_frame(10)
    frame["prediction"] = 0
    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pandas(frame[columns]), source)
    with pytest.raises(errors.InvalidInput, match=message.replace("(", r"\(").replace(
            ")", r"\)")):
        predict_parquet(served, source, tmp_path / "out.parquet", id_column=id_column,
                        progress=False)
    assert not (tmp_path / "out.parquet.parts").exists()


def test_the_cli_scores_with_a_progress_bar_and_no_terminal(
        credit: Registered, model_home: Client, scoring_input: tuple[Path, pd.DataFrame],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_HOME", str(model_home.settings.home))
    from shipyard.client import reset_default_client
    from shipyard.config import reset_settings

    reset_settings()
    reset_default_client()
    source, _ = scoring_input
    out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(app, ["predict", "credit/1", "--input", str(source),
                                      "--output", str(out), "--chunk-rows", "500"])
    assert result.exit_code == 0, result.output
    assert "wrote 1050 rows scored by credit v1" in result.output
    assert pq.read_metadata(out).num_rows == 1050
    missing = CliRunner().invoke(app, ["predict", "credit/9", "--input", str(source),
                                       "--output", str(out)])
    assert missing.exit_code == 2 and "error:" in missing.output


def test_the_cli_serve_refuses_an_unknown_model() -> None:
    result = CliRunner().invoke(app, ["serve", "nothing@champion"])
    assert result.exit_code == 2
    assert "error: model 'nothing' has no alias 'champion'" in result.output


def _shipyard_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name.startswith("shipyard-read")
            or t.name.startswith("shipyard-write")]


@pytest.mark.parametrize("missing", ["null", "nan"])
def test_a_missing_value_fails_the_job_with_the_signatures_message(
        served: ServedModel, tmp_path: Path, missing: str) -> None:
    frame = credit_frame(900, seed=4)
    income = frame["income"].to_numpy().copy()
    income[650] = np.nan
    # from_pandas=False keeps NaN a float value; True turns it into a null
    columns = {"age": pa.array(frame["age"]), "debt": pa.array(frame["debt"]),
               "income": pa.array(income, from_pandas=missing == "null")}
    assert (columns["income"].null_count == 1) is (missing == "null")
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table(columns), source)
    out = tmp_path / "out.parquet"
    with pytest.raises(errors.InvalidInput, match="'income' has missing values"):
        predict_parquet(served, source, out, chunk_rows=300, progress=False)
    assert not out.exists() and not list(tmp_path.glob(".out.parquet*"))
    # the chunks before the bad one are kept for a rerun; the threads are gone
    assert len(list(Path(f"{out}.parts").glob("part-*.arrow"))) == 2
    assert _shipyard_threads() == []


def test_input_types_that_differ_from_the_signature_are_converted(
        served: ServedModel, credit: Registered, tmp_path: Path) -> None:
    frame = credit_frame(500, seed=5)
    source = tmp_path / "in.parquet"
    table = pa.table({"age": pa.array(frame["age"], pa.int32()),  # the signature says long
                      "income": pa.array(frame["income"], pa.float32()),  # and double
                      "debt": pa.array(frame["debt"])})
    pq.write_table(table, source)
    out = tmp_path / "out.parquet"
    predict_parquet(served, source, out, chunk_rows=200, progress=False)
    scored = pq.read_table(out)
    assert scored.schema.field("age").type == pa.int32()  # input columns are kept as they are
    expected = credit.model.predict(pd.DataFrame({
        "age": frame["age"], "income": frame["income"].astype("float32").astype("float64"),
        "debt": frame["debt"]}))
    np.testing.assert_array_equal(scored.column("prediction").to_numpy(), expected)


def test_a_failed_write_stops_the_job_and_a_rerun_resumes(
        served: ServedModel, scoring_input: tuple[Path, pd.DataFrame], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from shipyard.serving import _batch_io

    source, _ = scoring_input
    out = tmp_path / "scored.parquet"
    real = _batch_io.write_part
    written: list[Path] = []

    def disk_full_on_third(table: pa.Table, part: Path) -> None:
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        real(table, part)
        written.append(part)

    monkeypatch.setattr(_batch_io, "write_part", disk_full_on_third)
    with pytest.raises(OSError, match="No space left"):
        predict_parquet(served, source, out, chunk_rows=200, progress=False)
    assert not out.exists()
    assert _shipyard_threads() == []
    monkeypatch.setattr(_batch_io, "write_part", real)
    result = predict_parquet(served, source, out, chunk_rows=200, progress=False)
    assert (result.chunks, result.skipped_chunks) == (6, 2)
    fresh = tmp_path / "fresh.parquet"
    predict_parquet(served, source, fresh, chunk_rows=200, progress=False)
    assert pq.read_table(out).equals(pq.read_table(fresh))


def test_a_read_error_surfaces_in_the_callers_thread(
        served: ServedModel, scoring_input: tuple[Path, pd.DataFrame], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from shipyard.serving import _batch_io

    real = _batch_io.chunks

    def broken_after_one(reader: object, chunk_rows: int):  # noqa: ANN202
        for i, chunk in enumerate(real(reader, chunk_rows)):
            if i == 1:
                raise OSError("the input file was truncated")
            yield chunk

    monkeypatch.setattr(_batch_io, "chunks", broken_after_one)
    out = tmp_path / "scored.parquet"
    with pytest.raises(OSError, match="truncated"):
        predict_parquet(served, scoring_input[0], out, chunk_rows=200, progress=False)
    assert not out.exists()
    assert _shipyard_threads() == []


def test_an_empty_input_gives_an_empty_output_that_names_the_model(
        served: ServedModel, tmp_path: Path) -> None:
    source = tmp_path / "empty.parquet"
    pq.write_table(pa.Table.from_pandas(credit_frame(0), preserve_index=False), source)
    out = tmp_path / "out.parquet"
    result = predict_parquet(served, source, out, progress=False)
    assert (result.rows, result.chunks) == (0, 0)
    assert pq.read_metadata(out).num_rows == 0
    assert pq.read_schema(out).metadata[b"shipyard.model_name"] == b"credit"


def test_chunks_whose_arrow_types_match_the_signature_skip_the_pandas_check(
        served: ServedModel, scoring_input: tuple[Path, pd.DataFrame], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = ServedModel.enforce
    checked: list[int] = []

    def counting(self: ServedModel, data: object) -> object:
        checked.append(len(data))  # type: ignore[arg-type]
        return real(self, data)

    monkeypatch.setattr(ServedModel, "enforce", counting)
    source, frame = scoring_input  # age int64 = long, income and debt float64 = double
    predict_parquet(served, source, tmp_path / "a.parquet", chunk_rows=200, progress=False)
    assert checked == []
    widened = tmp_path / "int32.parquet"
    pq.write_table(pa.table({"age": pa.array(frame["age"], pa.int32()),
                             "income": frame["income"], "debt": frame["debt"]}), widened)
    predict_parquet(served, widened, tmp_path / "b.parquet", chunk_rows=200, progress=False)
    assert checked == [200, 200, 200, 200, 200, 50]
