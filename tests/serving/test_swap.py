"""Zero-downtime model swap: warm, switch, drain; and following an alias while serving."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipyard import errors
from shipyard.client import Client
from shipyard.models import Signature
from shipyard.serving import ServedModel, ServingConfig, create_app
from shipyard.serving._state import ServingState, sample_input, warm_up

from .conftest import LiveServer, register
from .helpers import Gated, SlowModel, Switchable
from .serveproc import Load, ServeProcess, metric


def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [3.0, 4.0, 5.0]})


def test_requests_in_flight_finish_on_the_old_version(tmp_path: Path) -> None:
    Gated.gate.set()  # registration predicts on the input example
    register(Gated(), frame(), "gated")
    register(SlowModel(0), frame(), "gated")
    v1, v2 = ServedModel.load("gated/1"), ServedModel.load("gated/2")
    Gated.gate.clear()  # version 1 now holds its first batch until the gate opens
    state = ServingState(v1, ServingConfig(max_batch_size=2, max_wait_ms=0), tmp_path)

    async def one(i: int) -> int | None:
        result = await state.predict({"a": [float(i)], "b": [1.0]}, 1, want_proba=False,
                                     endpoint="predict", request_id=str(i), started=0.0)
        assert result.predictions.tolist() == [i + 1.0]
        return result.model_version

    async def scenario() -> tuple[list[int | None], list[int | None]]:
        before = [asyncio.create_task(one(i)) for i in range(8)]
        while state._slot.batcher.queue_depth != 6:  # one batch of 2 held, 6 queued
            await asyncio.sleep(0.001)
        swapping = asyncio.create_task(state.swap(v2))
        while state.served is not v2:  # warmed up, switched
            await asyncio.sleep(0.001)
        after = await asyncio.gather(*(one(i) for i in range(8, 12)))  # on version 2
        assert not swapping.done() and not any(t.done() for t in before)  # v1 still drains
        Gated.gate.set()
        answered = await asyncio.gather(*before)
        await swapping
        await state.close()
        return list(answered), list(after)

    try:
        answered, after = asyncio.run(scenario())
    finally:
        Gated.gate.set()
    assert answered == [1] * 8 and after == [2] * 4
    assert state.swaps == 1


def test_a_model_that_fails_to_warm_up_is_not_swapped_in(tmp_path: Path) -> None:
    Switchable.broken = False
    register(Switchable(), frame(), "flaky")
    register(Switchable(), frame(), "flaky")
    v1, v2 = ServedModel.load("flaky/1"), ServedModel.load("flaky/2")
    state = ServingState(v1, ServingConfig(log_predictions=False), tmp_path)
    Switchable.broken = True
    try:
        with pytest.raises(RuntimeError, match="broken"):
            asyncio.run(state.swap(v2))
    finally:
        Switchable.broken = False
    assert state.served is v1 and state.swaps == 0
    register(SlowModel(0), frame(), "other")
    with pytest.raises(errors.InvalidInput, match="cannot swap to model 'other'"):
        asyncio.run(state.swap(ServedModel.load("other/1")))


def test_the_warm_up_row_comes_from_the_example_or_the_signature() -> None:
    register(SlowModel(0), frame(), "warm")
    served = ServedModel.load("warm/1")
    assert sample_input(served) == {"a": [1.0], "b": [3.0]}  # the stored input example
    served.loaded.path = Path("/nonexistent")  # no example: built from the signature
    assert sample_input(served) == {"a": [0.0], "b": [0.0]}
    warm_up(served)
    sig = Signature.model_validate({"inputs": {"dtype": "float64", "shape": [-1, 4]}})
    served.loaded.manifest = served.loaded.manifest.model_copy(update={"signature": sig})
    assert np.asarray(sample_input(served)).shape == (1, 4)


def test_the_watcher_swaps_and_survives_a_version_that_cannot_load(
        caplog: pytest.LogCaptureFixture) -> None:
    import httpx

    Switchable.broken = False
    client = Client()
    for _ in range(3):
        register(Switchable(), frame(), "watched")
    client.registry.set_alias("watched", "champion", 1)
    app = create_app(ServedModel.load("watched@champion"), ServingConfig(watch_interval=0.02),
                     watch="watched@champion", client=client)
    body = {"records": [{"a": 1.0, "b": 2.0}]}
    with LiveServer(app) as server, caplog.at_level(logging.ERROR, "shipyard.serving"):
        def version() -> int:
            return int(httpx.get(f"{server.url}/ready").json()["version"])

        def served_by() -> int:
            return int(httpx.post(f"{server.url}/predict", json=body).json()["model_version"])

        assert served_by() == 1
        client.registry.set_alias("watched", "champion", 2)
        _until(lambda: version() == 2)
        assert served_by() == 2
        Switchable.broken = True  # version 3 fails its warm-up: version 2 keeps serving
        client.registry.set_alias("watched", "champion", 3)
        _until(lambda: "could not be loaded" in caplog.text)
        Switchable.broken = False
        assert version() == 2 and served_by() == 2
        client.registry.set_alias("watched", "champion", 1)  # a move is picked up at once
        _until(lambda: version() == 1)
        meta = httpx.get(f"{server.url}/v2/models/watched").json()
        assert meta["versions"] == ["1"]
        metrics = httpx.get(f"{server.url}/metrics").text
    for label in ("1", "2"):  # requests are counted under the version that answered
        assert metric(metrics, "shipyard_serving_requests_total", endpoint="predict",
                      status="200", version=label) >= 1
    assert metric(metrics, "shipyard_serving_predictions_total", version="3") == 0
    assert "version 3, which could not be loaded; still serving version 2" in caplog.text


def _until(condition: object, timeout: float = 20) -> None:
    import time

    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.slow
def test_100_alias_moves_under_load_fail_no_request(shipyard_home: Path) -> None:
    from sklearn.linear_model import LinearRegression

    client = Client()
    X = frame()
    for scale in (1.0, 2.0):  # the server's process unpickles them: sklearn, not test classes
        register(LinearRegression().fit(X, X["a"] * scale), X, "credit")
    client.registry.set_alias("credit", "champion", 1)
    with ServeProcess(shipyard_home, "credit@champion", "--watch-interval", "0.02") as server:
        with Load(f"{server.url}/predict", {"records": [{"a": 1.0, "b": 2.0}]},
                  threads=3) as load:
            load.wait_for_successes(20)
            for move in range(100):  # each move waits for the swap it causes
                target = 2 if move % 2 == 0 else 1
                client.registry.set_alias("credit", "champion", target)
                server.wait_for(lambda t=target: server.get("/ready").json()["version"] == t,
                                f"serving version {target}", timeout=20)
        metrics = server.get("/metrics").text  # the load has stopped: every request counted
    assert "Following credit@champion: checked every 0.02 s" in server.output
    assert load.failures == []
    changes = sum(a != b for a, b in zip(load.ok, load.ok[1:], strict=False))
    assert set(load.ok) == {1, 2} and changes >= 20, (changes, len(load.ok))
    requests = [metric(metrics, "shipyard_serving_requests_total", endpoint="predict",
                       status="200", version=v) for v in ("1", "2")]
    assert all(n > 0 for n in requests) and sum(requests) == len(load.ok), requests


def test_closing_a_batcher_answers_the_batch_it_holds() -> None:
    from shipyard.serving import MicroBatcher
    from shipyard.serving._batching import BatcherClosed

    async def scenario() -> list[int]:
        batcher: MicroBatcher[int, int] = MicroBatcher(lambda items: [i * 10 for i in items],
                                                       max_batch_size=8, max_wait_ms=10_000)
        batcher._concurrent = True  # as under load: the worker waits for the batch to fill
        calls = [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0.05)  # both taken; the worker waits for more (10 s)
        assert batcher.queue_depth == 0 and len(batcher._in_hand) == 2
        await batcher.close()  # stops the wait, predicts what it holds
        with pytest.raises(BatcherClosed):
            await batcher.submit(3)
        return list(await asyncio.gather(*calls))

    assert asyncio.run(scenario()) == [10, 20]
