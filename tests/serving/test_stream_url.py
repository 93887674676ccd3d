"""Stream URLs, message decoding and the ``shipyard stream`` command's input errors.

No services needed: these run everywhere. The transports are tested in test_stream.py.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from shipyard import errors
from shipyard.cli import app
from shipyard.serving import ServedModel, SourceMessage, StreamOptions, parse_stream_url
from shipyard.serving._stream_codec import decode_message, score_batch

ROOT = Path(__file__).resolve().parents[2]


# -- URL grammar -------------------------------------------------------------------------------

def test_redis_urls() -> None:
    url = parse_stream_url("redis://127.0.0.1:6379/0/stream:transactions")
    assert (url.transport, url.host, url.port, url.db, url.stream) == (
        "redis", "127.0.0.1", 6379, 0, "transactions")
    url = parse_stream_url("rediss://ana:s%40cret@cache:6380/3/stream:app:tx/eu?field=json")
    assert (url.scheme, url.username, url.password, url.db, url.stream) == (
        "rediss", "ana", "s@cret", 3, "app:tx/eu")
    assert url.options == {"field": "json"}
    assert "s@cret" not in url.display and "***" in url.display
    assert parse_stream_url("redis://localhost/stream:tx").port == 6379
    assert parse_stream_url("redis://h/stream:tx").dead_letter().stream == "tx:dlq"


def test_nats_urls() -> None:
    url = parse_stream_url("nats://127.0.0.1:4222/stream:TRANSACTIONS/subject:transactions.eu")
    assert (url.transport, url.stream, url.subject, url.port) == (
        "nats", "TRANSACTIONS", "transactions.eu", 4222)
    assert parse_stream_url("nats://h/stream:TX").subject is None
    dead = url.dead_letter()
    assert (dead.stream, dead.subject) == ("TRANSACTIONS_DLQ", "shipyard.dlq.TRANSACTIONS")


@pytest.mark.parametrize(("url", "says"), [
    ("kafka://h/stream:tx", "scheme"),
    ("redis:///stream:tx", "no host"),
    ("redis://h:6379/0/transactions", "stream:KEY"),
    ("redis://h/stream:", "stream:KEY"),
    ("redis://h/stream:tx?maxlen=lots", "maxlen"),
    ("redis://h/stream:tx?group=g", "unknown option"),
    ("redis://h:99999/stream:tx", "(?i)port"),
    ("nats://h/subject:tx", "stream:STREAM"),
    ("nats://h/stream:TX/topic:tx", "stream:STREAM"),
    ("nats://h/stream:T.X", "letters, digits"),
    ("nats://h/stream:TX/subject:a..b", "not a NATS subject"),
])
def test_bad_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(errors.InvalidInput, match=says) as caught:
        parse_stream_url(url, field="sink")
    assert caught.value.field == "sink"


def test_bad_options() -> None:
    with pytest.raises(errors.InvalidInput, match="batch_size"):
        StreamOptions(batch_size=0)
    with pytest.raises(errors.InvalidInput, match="group"):
        StreamOptions(group="a.b")


# -- the command's input errors: one line, exit 2, before anything is loaded -------------------

@pytest.mark.parametrize(("args", "says"), [
    (["--source", "kafka://h/stream:tx", "--sink", "redis://h/stream:out"], "--source"),
    (["--source", "redis://h/stream:tx", "--sink", "redis://h/0/nope"], "--sink"),
    (["--source", "redis://h/stream:tx", "--sink", "redis://h:6379/0/stream:tx"],
     "read its own output"),
    (["--source", "nats://h/stream:TX", "--sink", "nats://h/stream:OUT"], "subject"),
    (["--source", "redis://h/stream:tx", "--sink", "redis://h/stream:out",
      "--dlq", "redis://h/stream:out"], "--dlq"),
    (["--source", "redis://h/stream:tx", "--sink", "redis://h/stream:out",
      "--start", "middle"], "--start"),
])
def test_the_command_rejects_bad_urls_in_one_line(args: list[str], says: str) -> None:
    result = CliRunner().invoke(app, ["stream", "no-such-model@champion", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines


# -- decoding ----------------------------------------------------------------------------------

def message(payload: bytes | None, id: str = "1-0") -> SourceMessage:
    return SourceMessage(id, payload, 1, problem=None if payload is not None else "no field")


@pytest.mark.parametrize(("payload", "says"), [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"age": 30, "income": 1.0}', "missing field(s) debt"),
    (b'{"records": []}', "non-empty list"),
    (b'{"records": [{"age": 1, "income": 1, "debt": 1}, {"age": 2}]}', "record 1: missing"),
    (None, "no field"),
])
def test_malformed_messages_are_named(served: ServedModel, payload: bytes | None,
                                      says: str) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        decode_message(message(payload), served)
    assert says in caught.value.message


def test_a_batch_is_one_model_call(served: ServedModel,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"age": 30 + i, "income": 50.0 + i, "debt": 10.0} for i in range(5)]
    payloads = [orjson.dumps(r) for r in rows] + [orjson.dumps({"records": rows[:2]})]
    calls: list[int] = []
    original = served.call_model

    def counting(model_input, rows, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(rows)
        return original(model_input, rows, **kwargs)

    monkeypatch.setattr(served, "call_model", counting)
    scored = score_batch(served, [message(p, f"{i}-0") for i, p in enumerate(payloads)], "tx")
    assert calls == [7] and scored.records == 7 and scored.dead == []
    expected = served.loaded.native.predict(served.enforce(
        {k: [r[k] for r in rows] for k in rows[0]})).tolist()
    outputs = [orjson.loads(r.payload) for r in scored.outputs]
    assert [o["key"] for o in outputs] == [f"{i}-0" for i in range(6)]
    assert [o["prediction"] for o in outputs[:5]] == expected
    assert outputs[5]["predictions"] == expected[:2] and len(outputs[5]["prediction_ids"]) == 2
    assert len(outputs[0]["probabilities"]) == 2 and outputs[0]["classes"] == [0, 1]
    assert outputs[0]["model_name"] == "credit" and outputs[0]["model_version"] == 1
    assert outputs[0]["model_digest"] == served.digest


def test_a_message_with_a_bad_value_is_isolated(served: ServedModel) -> None:
    good = [orjson.dumps({"age": 30 + i, "income": 50.0, "debt": 10.0}) for i in range(4)]
    payloads = [*good[:2], b'{"age": "old", "income": 1.0, "debt": 2.0}', *good[2:]]
    scored = score_batch(served, [message(p, f"{i}-0") for i, p in enumerate(payloads)], "tx")
    assert [r.key for r in scored.outputs] == ["0-0", "1-0", "3-0", "4-0"]
    [dead] = scored.dead
    letter = orjson.loads(dead.payload)
    assert dead.key == "2-0" and "age" in letter["error"]
    assert letter["payload"] == payloads[2].decode() and letter["source"] == "tx"


def test_a_broken_model_stops_the_consumer_instead_of_dead_lettering(
        served: ServedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the GPU is gone")

    monkeypatch.setattr(served, "call_model", broken)
    good = [message(orjson.dumps({"age": 30, "income": 1.0, "debt": 2.0}), f"{i}-0")
            for i in range(3)]
    with pytest.raises(errors.ShipyardError, match="every message of a batch.*GPU"):
        score_batch(served, good, "tx")


@pytest.mark.parametrize(("url", "server"), [("redis://127.0.0.1:1/stream:tx", "Redis"),
                                             ("nats://127.0.0.1:1/stream:TX", "NATS")])
def test_an_unreachable_server_is_one_clear_error(served: ServedModel, url: str,
                                                  server: str) -> None:
    from shipyard.serving import run_stream

    with pytest.raises(errors.ShipyardError, match=f"cannot reach {server} at"):
        run_stream(served, url, "redis://127.0.0.1:1/stream:out")


# -- docs --------------------------------------------------------------------------------------

def test_docs_name_every_stream_option() -> None:
    import typer

    text = (ROOT / "docs" / "streaming.md").read_text()
    command = typer.main.get_command(app).commands["stream"]  # type: ignore[attr-defined]
    missing = [opt for param in command.params for opt in param.opts
               if opt.startswith("--") and opt not in text]
    assert missing == []
    assert "streaming.md" in (ROOT / "docs" / "serving.md").read_text()
