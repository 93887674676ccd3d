"""The Open Inference Protocol (KServe V2) endpoints, in-process."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np
import orjson
import pytest

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from .conftest import Registered

INFER = "/v2/models/credit/infer"


def column_tensors(X, rows: slice = slice(0, 5)) -> list[dict]:
    part = X.iloc[rows]
    return [{"name": "age", "shape": [len(part)], "datatype": "INT64",
             "data": part["age"].tolist()},
            {"name": "income", "shape": [len(part), 1], "datatype": "FP64",
             "data": [[v] for v in part["income"]]},
            {"name": "debt", "shape": [len(part)], "datatype": "FP32",
             "data": part["debt"].astype("float32").tolist()}]


def outputs(body: dict) -> dict[str, dict]:
    return {o["name"]: o for o in body["outputs"]}


def test_server_health_and_metadata(app_client: TestClient) -> None:
    assert app_client.get("/v2/health/live").json() == {"live": True}
    assert app_client.get("/v2/health/ready").json() == {"ready": True}
    server = app_client.get("/v2").json()
    assert server["name"] == "shipyard" and "version" in server
    for path in ("/v2/models/credit", "/v2/models/credit/versions/1"):
        meta = app_client.get(path).json()
        assert meta["name"] == "credit" and meta["versions"] == ["1"]
        assert meta["platform"] == "shipyard-sklearn"
        assert meta["inputs"] == [{"name": "age", "datatype": "INT64", "shape": [-1]},
                                  {"name": "income", "datatype": "FP64", "shape": [-1]},
                                  {"name": "debt", "datatype": "FP64", "shape": [-1]}]
        assert meta["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]},
                                   {"name": "predict_proba", "datatype": "FP64",
                                    "shape": [-1, 2]}]
    ready = app_client.get("/v2/models/credit/versions/1/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_unknown_model_or_version_is_a_404(app_client: TestClient) -> None:
    r = app_client.get("/v2/models/other")
    assert r.status_code == 404 and "'credit'" in r.json()["error"]
    r = app_client.post("/v2/models/credit/versions/7/infer", json={"inputs": []})
    assert r.status_code == 404 and "version '7'" in r.json()["error"]
    r = app_client.get("/v2/nothing/here")
    assert r.status_code == 404 and r.json() == {"error": "no route GET /v2/nothing/here"}
    r = app_client.get(INFER)
    assert r.status_code == 405 and isinstance(r.json()["error"], str)


def test_infer_with_one_tensor_per_column(app_client: TestClient, credit: Registered) -> None:
    X = credit.X
    r = app_client.post(INFER, json={"id": "req-1", "inputs": column_tensors(X)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "credit" and body["model_version"] == "1"
    assert body["id"] == "req-1"
    out = outputs(body)
    assert out["predict"]["datatype"] == "INT64" and out["predict"]["shape"] == [5]
    expected = credit.model.predict(X.iloc[:5].astype({"debt": "float32"}))
    assert out["predict"]["data"] == expected.tolist()
    proba = np.asarray(out["predict_proba"]["data"]).reshape(out["predict_proba"]["shape"])
    np.testing.assert_allclose(proba, credit.model.predict_proba(
        X.iloc[:5].astype({"debt": "float32"})), rtol=1e-6)
    ids = body["parameters"]["prediction_ids"]
    assert len(ids) == 5 and len(set(ids)) == 5 and all(len(i) == 32 for i in ids)


def test_infer_with_a_single_2d_tensor_maps_columns_by_position(
        app_client: TestClient, credit: Registered) -> None:
    X = credit.X.iloc[:7]
    matrix = X.to_numpy(dtype=float)
    r = app_client.post("/v2/models/credit/versions/1/infer", json={"inputs": [
        {"name": "input-0", "shape": list(matrix.shape), "datatype": "FP64",
         "data": matrix.tolist()}]})
    assert r.status_code == 200, r.text
    assert outputs(r.json())["predict"]["data"] == credit.model.predict(X).tolist()


def test_requested_outputs_and_binary_output(app_client: TestClient,
                                            credit: Registered) -> None:
    X = credit.X
    r = app_client.post(INFER, json={"inputs": column_tensors(X),
                                     "outputs": [{"name": "predict"}]})
    assert list(outputs(r.json())) == ["predict"]
    r = app_client.post(INFER, json={"inputs": column_tensors(X),
                                     "outputs": [{"name": "predict_proba",
                                                  "parameters": {"binary_data": True}}]})
    assert r.status_code == 200
    size = int(r.headers["inference-header-content-length"])
    header = orjson.loads(r.content[:size])
    tensor = header["outputs"][0]
    assert tensor["parameters"]["binary_data_size"] == 5 * 2 * 8
    proba = np.frombuffer(r.content[size:], dtype="<f8").reshape(tensor["shape"])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    r = app_client.post(INFER, json={"inputs": column_tensors(X),
                                     "outputs": [{"name": "explain"}]})
    assert r.status_code == 400 and "unknown output 'explain'" in r.json()["error"]


def test_binary_input_tensors(app_client: TestClient, credit: Registered) -> None:
    X = credit.X.iloc[:3]
    blobs = [X["age"].to_numpy("<i8").tobytes(), X["income"].to_numpy("<f8").tobytes(),
             X["debt"].to_numpy("<f8").tobytes()]
    header = orjson.dumps({"inputs": [
        {"name": n, "shape": [3], "datatype": t, "parameters": {"binary_data_size": len(b)}}
        for n, t, b in zip(("age", "income", "debt"), ("INT64", "FP64", "FP64"), blobs,
                           strict=True)], "outputs": [{"name": "predict"}]})
    r = app_client.post(INFER, content=header + b"".join(blobs),
                        headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 200, r.text
    assert outputs(r.json())["predict"]["data"] == credit.model.predict(X).tolist()


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"inputs": []}', "'inputs' must be a non-empty list"),
    (b'{"inputs": [{"name": "age", "shape": [2], "datatype": "INT64", "data": [1, 2, 3]}]}',
     "shape [2] holds 2 values, 'data' has 3"),
    (b'{"inputs": [{"name": "age", "shape": ["x"], "datatype": "INT64", "data": [1]}]}',
     "'shape' must be a list of non-negative integers"),
    (b'{"inputs": [{"name": "age", "shape": [1], "datatype": "FLOAT", "data": [1]}]}',
     "unknown datatype 'FLOAT'"),
    (b'{"inputs": [{"name": "age", "shape": [1], "datatype": "FP32", "data": ["a"]}]}',
     "'data' does not match datatype FP32"),
    (b'{"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [1.5]}]}',
     "'data' does not match datatype INT64"),
    (b'{"inputs": [{"name": "age", "shape": [2, 2], "datatype": "INT64", "data": [1,2,3,4]},'
     b'{"name": "income", "shape": [2], "datatype": "FP64", "data": [1, 2]}]}',
     "a column tensor has shape [n] or [n, 1], got [2, 2]"),
    (b'{"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [1]},'
     b'{"name": "income", "shape": [2], "datatype": "FP64", "data": [1, 2]}]}',
     "has 2 rows, the others 1"),
])
def test_malformed_requests_are_400_with_a_message(app_client: TestClient, body: bytes,
                                                    message: str) -> None:
    r = app_client.post(INFER, content=body)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]


def test_signature_problems_are_all_named(app_client: TestClient) -> None:
    r = app_client.post(INFER, json={"inputs": [
        {"name": "age", "shape": [1], "datatype": "BYTES", "data": ["old"]},
        {"name": "income", "shape": [1], "datatype": "FP64", "data": [1.0]},
        {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["red"]}]})
    assert r.status_code == 400
    error = r.json()["error"]
    assert "missing columns: debt" in error
    assert "unexpected columns: colour" in error
    assert "column 'age' is string, the model expects long" in error


def test_nulls_in_fp_tensors_are_missing_values(app_client: TestClient) -> None:
    r = app_client.post(INFER, json={"inputs": [
        {"name": "age", "shape": [2], "datatype": "INT64", "data": [30, 40]},
        {"name": "income", "shape": [2], "datatype": "FP64", "data": [None, 50.0]},
        {"name": "debt", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}]})
    assert r.status_code == 400
    assert "column 'income' has missing values" in r.json()["error"]


def test_wrong_2d_width_says_how_to_send_columns(app_client: TestClient) -> None:
    r = app_client.post(INFER, json={"inputs": [
        {"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [[1.0, 2.0]]}]})
    assert r.status_code == 400
    assert "single [n, k] tensor with the model's columns in order (3 columns)" in \
        r.json()["error"]


def test_oversize_body_is_a_413(app_client: TestClient) -> None:
    big = orjson.dumps({"inputs": [{"name": "age", "shape": [20000], "datatype": "INT64",
                                    "data": list(range(20000))}]})
    r = app_client.post(INFER, content=big)
    assert r.status_code == 413
    assert "byte limit" in r.json()["error"]


def test_binary_bytes_output_uses_length_prefixes(credit: Registered) -> None:
    from shipyard.serving._v2 import _to_binary

    raw = _to_binary(np.array(["ab", "c"], dtype=object), "BYTES")
    assert raw == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 1) + b"c"
