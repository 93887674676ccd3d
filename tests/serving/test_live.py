"""The model server on a real socket: overload, batching over HTTP, tritonclient, the CLI."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from shipyard.serving import ServedModel, ServingConfig, create_app, read_predictions

from .conftest import LiveServer, Registered, free_port, register
from .helpers import SlowModel


def slow_model(delay: float) -> ServedModel:
    register(SlowModel(delay), pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}), "slow")
    return ServedModel.load("slow/1")


def post_many(url: str, bodies: list[Any], threads: int) -> list[httpx.Response]:
    with httpx.Client(timeout=30) as client, \
            concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda body: client.post(url, json=body), bodies))


def test_a_full_queue_answers_429_at_once() -> None:
    config = ServingConfig(max_batch_size=1, max_queue=1, max_wait_ms=0)
    with LiveServer(create_app(slow_model(0.5), config)) as server:
        answers = post_many(f"{server.url}/predict",
                            [{"records": [{"a": 1.0, "b": float(i)}]} for i in range(8)], 8)
        codes = sorted(a.status_code for a in answers)
        assert 200 in codes and 429 in codes, codes
        rejected = next(a for a in answers if a.status_code == 429)
        assert rejected.headers["retry-after"] == "1"
        error = rejected.json()["error"]
        assert error["code"] == "RESOURCE_EXHAUSTED"
        assert "overloaded: 1 requests are already waiting" in error["message"]
        v2 = httpx.post(f"{server.url}/v2/models/slow/infer", timeout=30, json={"inputs": [
            {"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]},
            {"name": "b", "shape": [1], "datatype": "FP64", "data": [1.0]}]})
        assert v2.status_code == 200, v2.text


def test_concurrent_single_rows_are_predicted_in_batches() -> None:
    config = ServingConfig(max_batch_size=32, max_wait_ms=5)
    app = create_app(slow_model(0.02), config)
    with LiveServer(app) as server:
        answers = post_many(f"{server.url}/predict",
                            [{"records": [{"a": float(i), "b": 1.0}]} for i in range(64)], 16)
        assert [a.json()["predictions"] for a in answers] == [[i + 1.0] for i in range(64)]
        metrics = httpx.get(f"{server.url}/metrics").text
    count = _sample(metrics, 'shipyard_serving_batch_size_count{model="slow",version="1"}')
    total = _sample(metrics, 'shipyard_serving_batch_size_sum{model="slow",version="1"}')
    assert total == 64 and count < 64, (count, total)  # more than one row per model call


def _sample(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name))
    return float(line.rsplit(" ", 1)[1])


def test_tritonclient_talks_to_the_server(served: ServedModel, credit: Registered) -> None:
    http = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    X = credit.X.iloc[:8]
    with LiveServer(create_app(served)) as server:
        client = http.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("credit") and client.is_model_ready("credit", "1")
        meta = client.get_model_metadata("credit")
        assert [i["name"] for i in meta["inputs"]] == ["age", "income", "debt"]
        assert client.get_server_metadata()["name"] == "shipyard"

        inputs = []
        for name, dtype in (("age", "INT64"), ("income", "FP64"), ("debt", "FP64")):
            tensor = http.InferInput(name, [len(X)], dtype)
            tensor.set_data_from_numpy(X[name].to_numpy(), binary_data=False)
            inputs.append(tensor)
        result = client.infer("credit", inputs, model_version="1", request_id="t-1")
        np.testing.assert_array_equal(result.as_numpy("predict"), credit.model.predict(X))
        np.testing.assert_allclose(result.as_numpy("predict_proba"),
                                   credit.model.predict_proba(X))
        assert result.get_response()["id"] == "t-1"

        matrix = http.InferInput("input", list(X.shape), "FP64")
        matrix.set_data_from_numpy(X.to_numpy(float), binary_data=True)
        wanted = [http.InferRequestedOutput("predict", binary_data=False)]
        result = client.infer("credit", [matrix], outputs=wanted)
        np.testing.assert_array_equal(result.as_numpy("predict"), credit.model.predict(X))

        bad = http.InferInput("age", [2], "BYTES")
        bad.set_data_from_numpy(np.array([b"x", b"y"], dtype=object), binary_data=False)
        with pytest.raises(InferenceServerException) as info:
            client.infer("credit", [bad])
        assert info.value.status() == "400"
        assert "missing columns: income, debt" in info.value.message()
        client.close()


@pytest.mark.slow
def test_shipyard_serve_with_two_workers(shipyard_home: Path) -> None:
    from sklearn.tree import DecisionTreeClassifier

    X = pd.DataFrame({"x": np.arange(20.0), "y": np.arange(20.0) % 3})
    model = DecisionTreeClassifier().fit(X, (X["x"] > 9).astype(int))
    register(model, X, "tree")
    port = free_port()
    env = {**os.environ, "SHIPYARD_HOME": str(shipyard_home)}
    proc = subprocess.Popen([sys.executable, "-m", "shipyard.cli", "serve", "tree/1",
                             "--port", str(port), "--workers", "2",
                             "--max-wait-ms", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        r = httpx.post(f"{url}/predict", json={"columns": {"x": [1.0, 15.0], "y": [0.0, 1.0]}})
        assert r.json()["predictions"] == [0, 1]
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0]
    assert "tree v1" in output
    log = read_predictions(shipyard_home, "tree")  # written by the workers as they stopped
    assert log["prediction"].tolist() == [0, 1]


def _wait_ready(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"shipyard serve exited: {proc.communicate()[0]}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("shipyard serve did not become ready")
