"""Streaming inference: a consumer reads a stream, predicts, and writes a prediction stream.

:func:`run_stream` is the same loop for every transport. It reads one batch from a
:class:`StreamSource`, scores it in a worker thread (one model call per batch; see
:mod:`._stream_codec`), writes the predictions to a :class:`StreamSink` and the malformed
messages to the dead-letter sink, and only then acks the batch. One batch is in flight at a
time, so a slow sink pauses the reading (backpressure). Delivery from the source is at least
once; each sink drops a second write of the same source message, which makes the output
exactly once by key (docs/streaming.md states the promise per transport). With a
:class:`~._predlog.PredictionLog` (``predlog``) every scored message is also appended to the
Parquet prediction log ``shipyard serve`` writes — after its output is written, before the
ack — so monitoring sees streamed predictions too.

A URL picks the transport (:mod:`._stream_url`): ``redis://`` and ``rediss://`` go to
:mod:`._stream_redis`, ``nats://`` to :mod:`._stream_nats`; a backend module (and its
client library) is imported only when a URL names it. A new transport is one module with
``open_source(url, options)`` and ``open_sink(url, options)`` returning objects that
satisfy :class:`StreamSource` and :class:`StreamSink`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from shipyard import errors

from ._stream_url import NAME, StreamURL, stream_urls

if TYPE_CHECKING:
    from ._model import ServedModel
    from ._predlog import PredictionLog

__all__ = ["StreamOptions", "StreamStats", "SourceMessage", "OutputRecord", "StreamSource",
           "StreamSink", "run_stream"]

_T = TypeVar("_T")


# -- messages and the transports' interface ----------------------------------------------------


@dataclass(eq=False)
class SourceMessage:
    """One message read from a source, not yet acked."""

    #: its id in the source stream: a Redis entry id, a NATS stream sequence number
    id: str
    #: the JSON bytes; None when the transport found none (``problem`` says why)
    payload: bytes | None
    #: when the source stream stored it (server clock, ms since the epoch)
    time_ms: int
    #: delivered before: recovered from the pending list, claimed, or redelivered
    redelivered: bool = False
    problem: str | None = None
    #: what the transport needs to ack it
    handle: Any = None


@dataclass(frozen=True)
class OutputRecord:
    """One message for a sink (a prediction or a dead letter) and the key it is written once by."""

    key: str
    source: str
    payload: bytes
    redelivered: bool = False
    source_time_ms: int = 0

    @property
    def dedupe_id(self) -> str:
        """The identity a sink writes once: the source stream and the message's id there."""
        return f"{self.source}/{self.key}"


class StreamSource(Protocol):
    """A consumer in a consumer group (Redis) or on a durable pull consumer (NATS)."""

    url: StreamURL
    #: exception types that mean "the transport failed" (reported as one line)
    failures: tuple[type[BaseException], ...]

    async def read(self, count: int, block_ms: int) -> list[SourceMessage]:
        """Up to ``count`` messages, redelivered ones first; [] after ``block_ms`` idle."""
        ...

    async def ack(self, messages: Sequence[SourceMessage]) -> None: ...

    async def lag(self) -> int | None:
        """Messages in the stream that the group has not been given yet (None: unknown)."""
        ...

    async def close(self) -> None: ...


class StreamSink(Protocol):
    """A stream that writes each :attr:`OutputRecord.dedupe_id` at most once."""

    url: StreamURL
    failures: tuple[type[BaseException], ...]

    async def write(self, records: Sequence[OutputRecord]) -> int:
        """Write ``records`` (durably, before returning); the number newly written."""
        ...

    async def close(self) -> None: ...


# -- options and statistics --------------------------------------------------------------------


@dataclass(frozen=True)
class StreamOptions:
    """How :func:`run_stream` consumes; the CLI options of ``shipyard stream``."""

    #: the consumer group (Redis) / durable consumer (NATS); default ``shipyard-<model>``
    group: str | None = None
    #: this consumer's name in a Redis group; keep it stable across restarts (its pending
    #: messages are recovered by name); default: the host name
    consumer: str | None = None
    batch_size: int = 64
    block_ms: int = 1000
    max_messages: int | None = None
    #: Redis: claim messages other consumers left pending this long; NATS: the ack wait
    claim_idle_ms: int = 60_000
    #: how long a Redis sink remembers a written key
    dedupe_ttl_s: int = 86_400
    #: where a new group starts: every message in the stream, or only new ones
    start: Literal["earliest", "latest"] = "earliest"

    def __post_init__(self) -> None:
        for name in ("batch_size", "block_ms", "claim_idle_ms", "dedupe_ttl_s"):
            if getattr(self, name) < 1:
                raise errors.InvalidInput(f"{name} must be at least 1", field=name)
        if self.max_messages is not None and self.max_messages < 1:
            raise errors.InvalidInput("max_messages must be at least 1", field="max_messages")
        if self.start not in ("earliest", "latest"):
            raise errors.InvalidInput("start must be 'earliest' or 'latest'", field="start")
        for name in ("group", "consumer"):
            value = getattr(self, name)
            if value is not None and not NAME.match(value):
                raise errors.InvalidInput(f"{name} may use letters, digits, '-' and '_' only",
                                          field=name)


@dataclass
class StreamStats:
    """What a run did so far (the progress callback gets it after every batch)."""

    messages: int = 0
    records: int = 0
    written: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    #: rows appended to the prediction log, and rows it dropped (its writer was behind)
    logged: int = 0
    log_dropped: int = 0
    batches: int = 0
    lag: int | None = None
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Source messages per second over the run."""
        return self.messages / self.seconds if self.seconds > 0 else 0.0


# -- the loop ----------------------------------------------------------------------------------


def run_stream(model: ServedModel, source: str | StreamURL, sink: str | StreamURL, *,
               dlq: str | StreamURL | None = None, options: StreamOptions | None = None,
               stop: threading.Event | None = None,
               progress: Callable[[StreamStats], None] | None = None,
               handle_signals: bool = False,
               predlog: PredictionLog | None = None) -> StreamStats:
    """Consume ``source`` with ``model`` into ``sink`` until ``stop`` is set, a signal
    arrives (``handle_signals``: SIGINT/SIGTERM finish the batch, ack, return) or
    ``options.max_messages`` have been handled. ``dlq`` defaults to the source's
    dead-letter stream (:meth:`StreamURL.dead_letter`). ``predlog``: append every
    prediction to this log too (the caller closes it)."""
    source_url, sink_url, dlq_url = stream_urls(source, sink, dlq)
    options = options or StreamOptions()
    if options.group is None:
        options = replace(options, group=_safe_name(f"shipyard-{model.name}"))
    if options.consumer is None:
        options = replace(options, consumer=_safe_name(socket.gethostname()) or "consumer")
    return asyncio.run(_main(model, source_url, sink_url, dlq_url, options,
                             stop or threading.Event(), progress, handle_signals, predlog))


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def _backend(url: StreamURL) -> Any:
    return importlib.import_module(f"{__package__}._stream_{url.transport}")


async def _guarded(endpoint: StreamSource | StreamSink, call: Awaitable[_T]) -> _T:
    """``call``, with a transport failure turned into one clear error naming the stream."""
    try:
        return await call
    except endpoint.failures as exc:
        raise errors.ShipyardError(f"{endpoint.url.display}: {type(exc).__name__}: "
                                   f"{exc}") from exc


async def _main(model: ServedModel, source_url: StreamURL, sink_url: StreamURL,
                dlq_url: StreamURL, options: StreamOptions, stop: threading.Event,
                progress: Callable[[StreamStats], None] | None,
                handle_signals: bool, predlog: PredictionLog | None) -> StreamStats:
    async with contextlib.AsyncExitStack() as stack:
        source = await _backend(source_url).open_source(source_url, options)
        stack.push_async_callback(source.close)
        sink = await _backend(sink_url).open_sink(sink_url, options)
        stack.push_async_callback(sink.close)
        dead = await _backend(dlq_url).open_sink(dlq_url, options)
        stack.push_async_callback(dead.close)
        if handle_signals:
            _install_signal_handlers(stop)
        stats = await _consume(model, source, sink, dead, options, stop, progress, predlog)
    return stats


def _install_signal_handlers(stop: threading.Event) -> None:
    """SIGINT/SIGTERM: finish the batch in flight, ack it, stop. A second signal acts as
    usual (the handlers remove themselves), for a consumer stuck on a dead server."""
    loop = asyncio.get_running_loop()

    def stop_once() -> None:
        stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_once)


async def _consume(model: ServedModel, source: StreamSource, sink: StreamSink,
                   dead: StreamSink, options: StreamOptions, stop: threading.Event,
                   progress: Callable[[StreamStats], None] | None,
                   predlog: PredictionLog | None = None) -> StreamStats:
    from ._stream_codec import score_batch

    stats = StreamStats()
    lag_checked = 0.0
    while not stop.is_set():
        want = options.batch_size
        if options.max_messages is not None:
            want = min(want, options.max_messages - stats.messages)
            if want <= 0:
                break
        messages = await _guarded(source, source.read(want, options.block_ms))
        if messages:
            # The model runs in a worker thread: the transports' heartbeats stay answered.
            scored = await asyncio.to_thread(score_batch, model, messages, source.url.stream,
                                             log=predlog is not None)
            if scored.outputs:
                written = await _guarded(sink, sink.write(scored.outputs))
                stats.written += written
                stats.duplicates += len(scored.outputs) - written
            if scored.dead:
                await _guarded(dead, dead.write(scored.dead))
                stats.dead_letters += len(scored.dead)
            if predlog is not None:
                _log(predlog, scored.entries, stats)
            await _guarded(source, source.ack(messages))  # only after the writes
            stats.messages += len(messages)
            stats.records += scored.records
            stats.batches += 1
        stats.seconds = time.monotonic() - stats.started
        if progress is not None:
            if time.monotonic() - lag_checked >= 1.0:
                stats.lag = await _guarded(source, source.lag())
                lag_checked = time.monotonic()
            progress(stats)
    stats.seconds = time.monotonic() - stats.started
    return stats


def _log(predlog: PredictionLog, entries: Sequence[Any], stats: StreamStats) -> None:
    """Queue the batch's predictions for the log writer (never blocks: a log that is behind
    drops them and they are counted, as the server does)."""
    for entry in entries:
        rows = len(entry.prediction_ids)
        if predlog.append(entry):
            stats.logged += rows
        else:
            stats.log_dropped += rows
