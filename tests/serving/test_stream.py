"""Streaming inference against the real Redis (127.0.0.1:6379) and NATS JetStream (:4222).

Every test runs on both transports, on streams of its own (removed afterwards). The last
tests run ``shipyard stream`` as a subprocess, kill it with SIGKILL mid-run and restart it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from shipyard.client import Client
from shipyard.serving import (
    OutputRecord,
    PredictionLog,
    ServedModel,
    StreamOptions,
    parse_stream_url,
    read_predictions,
    run_stream,
)
from tests.conftest import service_unavailable

from .conftest import Registered

ROOT = Path(__file__).resolve().parents[2]
REDIS = "redis://127.0.0.1:6379/0"
NATS = "nats://127.0.0.1:4222"


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


class Bus:
    """One transport, from the test's side: stream URLs, producing, reading what came out."""

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        self.streams: set[str] = set()

    def url(self, name: str) -> str:
        if self.transport == "redis":
            return f"{REDIS}/stream:{self.prefix}:{name}"
        return f"{NATS}/stream:{self.stream(name)}/subject:{self.prefix}.{name}"

    def stream(self, name: str) -> str:
        """The stream's name on the server (a Redis key, a JetStream stream)."""
        if self.transport == "redis":
            return f"{self.prefix}:{name}"
        self.streams.add(f"{self.prefix}_{name}".upper())
        return f"{self.prefix}_{name}".upper()

    def dlq(self, name: str) -> str:
        return f"{self.stream(name)}:dlq" if self.transport == "redis" else self.stream(
            name) + "_DLQ"

    # -- Redis -----------------------------------------------------------------------------

    def _redis(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=6379)

    # -- both ------------------------------------------------------------------------------

    def add(self, name: str, payloads: list[bytes]) -> None:
        if self.transport == "redis":
            with self._redis() as r, r.pipeline() as pipe:
                for payload in payloads:
                    pipe.xadd(self.stream(name), {"data": payload})
                pipe.execute()
            return
        _run(self._nats_add(name, payloads))

    async def _nats_add(self, name: str, payloads: list[bytes]) -> None:
        import nats
        import nats.js.errors

        nc = await nats.connect(NATS)
        js = nc.jetstream()
        try:
            await js.stream_info(self.stream(name))
        except nats.js.errors.NotFoundError:
            await js.add_stream(name=self.stream(name), subjects=[f"{self.prefix}.{name}"])
        for payload in payloads:
            await js.publish(f"{self.prefix}.{name}", payload)
        await nc.close()

    def read(self, stream: str) -> list[dict[str, Any]]:
        """Every message in ``stream`` (its server-side name), decoded from JSON."""
        if self.transport == "redis":
            with self._redis() as r:
                return [orjson.loads(fields[b"data"]) for _, fields in r.xrange(stream)]
        return _run(self._nats_read(stream))

    async def _nats_read(self, stream: str) -> list[dict[str, Any]]:
        import nats
        import nats.js.errors

        nc = await nats.connect(NATS)
        js = nc.jetstream()
        try:
            info = await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            await nc.close()
            return []
        out = []
        if info.state.messages:
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                out.append(orjson.loads((await js.get_msg(stream, seq)).data))
        await nc.close()
        return out

    def count(self, stream: str) -> int:
        """How many messages ``stream`` holds (cheaper than reading them)."""
        if self.transport == "redis":
            with self._redis() as r:
                return int(r.xlen(stream))
        return int(_run(self._nats_count(stream)))

    async def _nats_count(self, stream: str) -> int:
        import nats
        import nats.js.errors

        nc = await nats.connect(NATS)
        try:
            return int((await nc.jetstream().stream_info(stream)).state.messages)
        except nats.js.errors.NotFoundError:
            return 0
        finally:
            await nc.close()

    def consumers(self, name: str, group: str) -> int:
        """Redis: the members of ``group``; NATS: the pulls waiting on the durable."""
        if self.transport == "redis":
            with self._redis() as r:
                try:
                    return len(r.xinfo_consumers(self.stream(name), group))
                except Exception:  # noqa: BLE001 - no stream or group yet
                    return 0
        return int(_run(self._nats_waiting(name, group)))

    async def _nats_waiting(self, name: str, group: str) -> int:
        import nats

        nc = await nats.connect(NATS)
        try:
            return int((await nc.jetstream().consumer_info(self.stream(name), group)
                        ).num_waiting or 0)
        except Exception:  # noqa: BLE001 - no durable yet
            return 0
        finally:
            await nc.close()

    def cleanup(self) -> None:
        if self.transport == "redis":
            with self._redis() as r:
                keys = list(r.scan_iter(match=f"{self.prefix}:*", count=1000))
                if keys:
                    r.delete(*keys)
            return
        _run(self._nats_cleanup())

    async def _nats_cleanup(self) -> None:
        import nats

        nc = await nats.connect(NATS)
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name.startswith(self.prefix.upper()):
                await js.delete_stream(info.config.name)
        await nc.close()


def _available(transport: str) -> None:
    try:
        if transport == "redis":
            import redis

            redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2).ping()
        else:
            import nats

            async def probe() -> None:
                nc = await nats.connect(NATS, connect_timeout=2, max_reconnect_attempts=0,
                                        allow_reconnect=False)
                await nc.jetstream().account_info()
                await nc.close()

            _run(probe())
    except ModuleNotFoundError as exc:
        service_unavailable(f"{transport} streams need {exc.name}: pip install "
                            f"'shipyard-mlops[{transport}]'")
    except Exception as exc:  # noqa: BLE001 - anything means "not reachable"
        service_unavailable(f"{transport} (JetStream) not reachable on 127.0.0.1: {exc}")


@pytest.fixture(params=["redis", "nats"])
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    _available(request.param)
    found = Bus(request.param)
    yield found
    found.cleanup()


def rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"age": 20 + (start + i) % 60, "income": 40.0 + (start + i) % 30, "debt": 15.0}
            for i in range(n)]


def by_key(outputs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    keys = [o["key"] for o in outputs]
    assert len(keys) == len(set(keys)), "an output was written twice"
    return {o["key"]: o for o in outputs}


def quick(**kwargs: Any) -> StreamOptions:
    return StreamOptions(**{"batch_size": 16, "block_ms": 100, "claim_idle_ms": 1000,
                            "group": "g", "consumer": "c1", **kwargs})


# -- in-process ----------------------------------------------------------------------------------

def test_every_message_is_scored_once(bus: Bus, served: ServedModel) -> None:
    data = rows(40)
    bus.add("tx", [orjson.dumps(r) for r in data] + [orjson.dumps({"records": data[:3]})])
    lags: list[int | None] = []
    stats = run_stream(served, bus.url("tx"), bus.url("scores"),
                       options=quick(max_messages=41), progress=lambda s: lags.append(s.lag))
    assert (stats.messages, stats.records, stats.written, stats.dead_letters) == (41, 43, 41, 0)
    assert lags[0] == 41 - 16  # after the first batch: the rest not yet delivered
    outputs = bus.read(bus.stream("scores"))
    assert len(by_key(outputs)) == 41
    expected = served.loaded.native.predict(pd.DataFrame(data)).tolist()
    assert [o["prediction"] for o in outputs[:40]] == expected
    assert outputs[40]["predictions"] == expected[:3]
    first = outputs[0]
    assert first["model_name"] == "credit" and first["model_version"] == 1
    assert first["model_digest"] == served.digest and first["source"] == bus.stream("tx")
    assert len(first["prediction_id"]) == 32 and len(first["probabilities"]) == 2
    # everything was acked: a second run finds nothing to do
    again = run_stream(served, bus.url("tx"), bus.url("scores"), options=quick(block_ms=50),
                       stop=_stop_after(0.5))
    assert again.messages == 0 and bus.read(bus.dlq("tx")) == []


def test_malformed_messages_go_to_the_dead_letter_stream(bus: Bus, served: ServedModel) -> None:
    bad = [b"{oops", b'"a string"', b'{"age": 30, "income": 1.0}',
           b'{"age": "old", "income": 1.0, "debt": 2.0}', b'{"records": []}']
    payloads = [orjson.dumps(r) for r in rows(3)]
    payloads[1:1] = bad
    bus.add("tx", payloads)
    stats = run_stream(served, bus.url("tx"), bus.url("scores"),
                       options=quick(max_messages=len(payloads)))
    assert (stats.written, stats.dead_letters) == (3, 5)
    letters = bus.read(bus.dlq("tx"))
    assert [letter["payload"].encode() for letter in letters] == bad
    errors = [letter["error"] for letter in letters]
    for error, says in zip(errors, ["not JSON", "JSON object", "debt", "age", "records"],
                           strict=True):
        assert says in error, errors
    outputs = bus.read(bus.stream("scores"))
    assert {o["key"] for o in outputs}.isdisjoint(letter["key"] for letter in letters)
    again = run_stream(served, bus.url("tx"), bus.url("scores"), options=quick(block_ms=50),
                       stop=_stop_after(0.5))
    assert again.messages == 0  # acked from the source: they do not come back
    if bus.transport == "redis":  # an entry without the JSON field
        with bus._redis() as r:
            r.xadd(bus.stream("tx"), {"value": b"{}"})
        run_stream(served, bus.url("tx"), bus.url("scores"), options=quick(max_messages=1))
        letter = bus.read(bus.dlq("tx"))[-1]
        assert "no 'data' field (fields: value)" in letter["error"] and "payload" not in letter


def test_every_scored_message_is_in_the_prediction_log(bus: Bus, served: ServedModel,
                                                        tmp_path: Path) -> None:
    data = rows(12)
    bus.add("tx", [orjson.dumps(r) for r in data] + [b"{oops"]
            + [orjson.dumps({"records": data[:3]})])
    predlog = PredictionLog(tmp_path, "credit", flush_interval=0.05)
    try:
        stats = run_stream(served, bus.url("tx"), bus.url("scores"),
                           options=quick(max_messages=14), predlog=predlog)
    finally:
        predlog.close()
    assert (stats.written, stats.dead_letters, stats.logged, stats.log_dropped) == (
        13, 1, 15, 0)
    outputs = bus.read(bus.stream("scores"))
    expected = sorted((o["key"], pid, pred) for o in outputs for pid, pred in zip(
        o.get("prediction_ids") or [o["prediction_id"]],
        o.get("predictions") or [o["prediction"]], strict=True))
    log = read_predictions(tmp_path, "credit")
    assert sorted(zip(log["request_id"], log["prediction_id"], log["prediction"],
                      strict=True)) == expected  # one row per predicted row, same ids
    assert set(log["endpoint"]) == {"stream"} and set(log["model_version"]) == {1}
    assert set(log["model_digest"]) == {served.digest} and log["deployment"].isna().all()
    assert bus.read(bus.dlq("tx"))[0]["key"] not in set(log["request_id"])
    first = log[log["request_id"] == outputs[0]["key"]].iloc[0]
    assert (first["input.age"], first["input.income"]) == (data[0]["age"], data[0]["income"])
    assert list(first["probabilities"]) == pytest.approx(outputs[0]["probabilities"])


def test_two_consumers_split_the_work(bus: Bus, slow: ServedModel) -> None:
    bus.add("tx", [])  # the stream, empty
    stop = threading.Event()
    results: dict[str, Any] = {}

    def consume(name: str) -> None:
        results[name] = run_stream(slow, bus.url("tx"), bus.url("scores"), stop=stop,
                                   options=quick(consumer=name, batch_size=2, block_ms=50))

    threads = [threading.Thread(target=consume, args=(n,)) for n in ("c1", "c2")]
    for thread in threads:
        thread.start()
    _wait_for(lambda: bus.consumers("tx", "g") == 2, "two consumers waiting")
    bus.add("tx", [orjson.dumps({"a": 1.0, "b": float(i)}) for i in range(40)])
    _wait_for(lambda: bus.count(bus.stream("scores")) >= 40, "40 outputs")
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    outputs = by_key(bus.read(bus.stream("scores")))
    assert sorted(o["prediction"] for o in outputs.values()) == [1.0 + i for i in range(40)]
    counts = [results[n].messages for n in ("c1", "c2")]
    assert sum(counts) == 40 and min(counts) > 0, counts


def test_a_message_written_but_not_acked_is_written_once(bus: Bus, served: ServedModel) -> None:
    """The crash window: outputs written, the process dies before the ack; the restarted
    consumer gets the same messages again (its pending list / the ack wait) and skips them."""
    from shipyard.serving._stream import _backend
    from shipyard.serving._stream_codec import score_batch

    bus.add("tx", [orjson.dumps(r) for r in rows(10)])
    source_url, sink_url = parse_stream_url(bus.url("tx")), parse_stream_url(bus.url("scores"))
    options = quick(claim_idle_ms=500)

    async def crash_after_write() -> None:
        source = await _backend(source_url).open_source(source_url, options)
        sink = await _backend(sink_url).open_sink(sink_url, options)
        messages = await source.read(6, 100)
        assert await sink.write(score_batch(served, messages, source_url.stream).outputs) == 6
        await source.close()  # no ack
        await sink.close()

    _run(crash_after_write())
    if bus.transport == "nats":
        time.sleep(0.6)  # the ack wait runs out
    stats = run_stream(served, source_url, sink_url, options=replace_options(options, 10))
    assert stats.messages == 10 and stats.duplicates == 6 and stats.written == 4
    assert len(by_key(bus.read(bus.stream("scores")))) == 10


def test_a_redelivery_after_the_dedupe_window_is_found(bus: Bus) -> None:
    """The sink alone: the same key twice is one message, also once JetStream's duplicate
    window is over (the sink then scans for it)."""
    from shipyard.serving._stream import _backend

    url = parse_stream_url(bus.url("scores"))
    if bus.transport == "nats":
        _run(_nats_stream(url.stream, url.subject, duplicate_window=0.5))
    old = int(time.time() * 1000) - 60_000
    first = OutputRecord("7-0", "tx", b'{"key": "7-0"}', False, old)

    async def write(*records: OutputRecord) -> int:
        sink = await _backend(url).open_sink(url, quick())
        try:
            return int(await sink.write(records))
        finally:
            await sink.close()

    assert _run(write(first)) == 1
    time.sleep(0.6)
    again = OutputRecord("7-0", "tx", b'{"key": "7-0", "again": true}', True, old)
    other = OutputRecord("8-0", "tx", b'{"key": "8-0"}', True, old)
    assert _run(write(again, other)) == 1
    assert bus.read(url.stream) == [{"key": "7-0"}, {"key": "8-0"}]


async def _nats_stream(name: str, subject: str | None, duplicate_window: float) -> None:
    import nats

    nc = await nats.connect(NATS)
    await nc.jetstream().add_stream(name=name, subjects=[subject],
                                    duplicate_window=duplicate_window)
    await nc.close()


def replace_options(options: StreamOptions, max_messages: int) -> StreamOptions:
    from dataclasses import replace

    return replace(options, max_messages=max_messages)


def _stop_after(seconds: float) -> threading.Event:
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    return stop


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout} s")
        time.sleep(0.05)


# -- the reliability check: SIGKILL mid-run, restart, every prediction exactly once --------------

@pytest.fixture(scope="module")
def slow_registered(model_home: Client) -> Registered:
    """Sums a + b after sleeping 20 ms per model call: the consumer is mostly mid-batch."""
    from .helpers import SlowModel

    X = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    run = model_home.tracking.create_run(
        model_home.tracking.get_or_create_experiment("serving").experiment_id)
    model_home.registry.log_model(run.run_id, SlowModel(0.02), input_example=X,
                                  registered_model_name="slow-sum")
    return Registered("slow-sum", X, None)


@pytest.fixture
def slow(slow_registered: Registered, model_home: Client) -> ServedModel:
    return ServedModel.load("slow-sum/1", model_home)


def _consumer(bus: Bus, model_home: Client, *extra: str) -> subprocess.Popen[str]:
    return _stream_command(bus, model_home, "slow-sum/1", "--batch-size", "8",
                           "--claim-idle-ms", "1000", *extra)


def test_a_consumer_killed_mid_batch_loses_and_repeats_nothing(
        bus: Bus, slow_registered: Registered, model_home: Client) -> None:
    n = 160
    bus.add("tx", [orjson.dumps({"a": float(i), "b": 0.5}) for i in range(n)])
    first = _consumer(bus, model_home)
    try:
        _wait_for(lambda: bus.count(bus.stream("scores")) >= 24 or first.poll() is not None,
                  "outputs from the first consumer")
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL, first.communicate()[0]
    assert bus.count(bus.stream("scores")) < n  # it was killed mid-run
    second = _consumer(bus, model_home)
    try:
        _wait_for(lambda: bus.count(bus.stream("scores")) >= n or second.poll() is not None,
                  "every output after the restart")
        second.send_signal(signal.SIGTERM)  # graceful: finish the batch, ack, exit 0
        output = second.communicate(timeout=30)[0]
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, output
    assert "stopped:" in output
    outputs = by_key(bus.read(bus.stream("scores")))  # fails on a second output of a key
    assert sorted(o["prediction"] for o in outputs.values()) == [i + 0.5 for i in range(n)]


def test_the_command_logs_predictions_unless_told_not_to(model_home: Client,
                                                         credit: Registered) -> None:
    _available("redis")
    bus = Bus("redis")
    try:
        bus.add("tx", [orjson.dumps(r) for r in rows(6)])

        def consume(*extra: str) -> str:
            proc = _stream_command(bus, model_home, "credit/1", "--max-messages", "3",
                                   *extra)
            output = proc.communicate(timeout=120)[0]
            assert proc.returncode == 0, output
            return output

        def logged() -> set[str]:
            log = read_predictions(model_home.settings.home, "credit")
            keys = {o["key"] for o in bus.read(bus.stream("scores"))}
            return set(log.loc[log["endpoint"] == "stream", "request_id"]) & keys

        first = consume()
        assert "3 rows logged" in first and "predictions logged to" in first
        assert len(logged()) == 3
        second = consume("--no-log-predictions")
        assert "logged" not in second
        assert len(logged()) == 3 and bus.count(bus.stream("scores")) == 6
    finally:
        bus.cleanup()


def _stream_command(bus: Bus, model_home: Client, ref: str, *extra: str
                    ) -> subprocess.Popen[str]:
    settings = model_home.settings
    env = {**os.environ, "SHIPYARD_HOME": str(settings.home), "SHIPYARD_DB": str(settings.db),
           "SHIPYARD_ARTIFACTS": str(settings.artifacts),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-m", "shipyard.cli", "stream", ref, "--source", bus.url("tx"),
         "--sink", bus.url("scores"), "--group", "g", "--consumer", "c1", "--block-ms",
         "100", *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
