"""NATS JetStream: a durable pull consumer as source, a stream that writes each key once as sink.

Source: the durable pull consumer ``group`` on the stream (created when missing, with
explicit acks, ``ack_wait`` = ``claim_idle_ms`` and the URL's subject as filter). Every
process bound to the same durable shares its messages; a message not acked within
``ack_wait`` (its consumer died) is delivered again, to whichever process pulls next. The
message's id is its stream sequence number.

Sink: each output is published with ``Nats-Msg-Id: <source>/<id>``; JetStream drops a
second publish with the same id within the stream's duplicate window (2 minutes unless the
stream says otherwise). Beyond the window, a redelivered message is checked first: the
sink scans its own stream, headers only, from the time the source message was stored (less
a margin for clock skew), and skips the outputs whose id it finds. First deliveries never
pay for that scan. A missing sink stream is created with the URL's subject.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from shipyard import errors

from ._stream import OutputRecord, SourceMessage, StreamOptions
from ._stream_url import StreamURL, probe

__all__ = ["open_source", "open_sink", "NatsSource", "NatsSink"]

#: allowance for the clocks of this host and the NATS servers to disagree
CLOCK_SKEW_S = 10.0
_MSG_ID = "Nats-Msg-Id"


def _failures() -> tuple[type[BaseException], ...]:
    import nats.errors

    return (nats.errors.Error, OSError, asyncio.TimeoutError)


async def _connect(url: StreamURL, name: str) -> Any:
    try:
        import nats
    except ModuleNotFoundError:
        raise errors.MissingDependency("nats:// streams need nats-py: pip install "
                                       "'shipyard-mlops[nats]'") from None

    async def quiet(exc: Exception) -> None:  # reconnects are logged by the server side
        return None

    await probe(url, "NATS")
    try:
        return await nats.connect(servers=[f"nats://{url.host}:{url.port}"], name=name,
                                  user=url.username, password=url.password,
                                  connect_timeout=3, max_reconnect_attempts=10,
                                  allow_reconnect=True, error_cb=quiet)
    except _failures() as exc:  # ConnectionRefusedError is an OSError
        raise errors.ShipyardError(f"cannot reach NATS at {url.display}: "
                                   f"{type(exc).__name__}: {exc}") from exc


async def _stream_info(js: Any, url: StreamURL) -> Any:
    """The stream's info; a missing stream is created on the URL's subject."""
    import nats.js.errors
    from nats.js.api import StreamConfig

    try:
        return await js.stream_info(url.stream)
    except nats.js.errors.NotFoundError:
        if not url.subject:
            raise errors.NotFound(f"{url.display}: no JetStream stream {url.stream!r}; add "
                                  "/subject:SUBJECT to the URL to create it") from None
    try:
        await js.add_stream(StreamConfig(name=url.stream, subjects=[url.subject]))
    except nats.js.errors.BadRequestError as exc:  # e.g. subjects overlap another stream
        raise errors.InvalidInput(f"{url.display}: cannot create the stream: "
                                  f"{exc.description}") from None
    return await js.stream_info(url.stream)


async def open_source(url: StreamURL, options: StreamOptions) -> NatsSource:
    import nats.js.errors
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    assert options.group is not None
    nc = await _connect(url, options.consumer or options.group)
    try:
        js = nc.jetstream()
        await _stream_info(js, url)
        try:
            await js.consumer_info(url.stream, options.group)
        except nats.js.errors.NotFoundError:
            await js.add_consumer(url.stream, ConsumerConfig(
                durable_name=options.group, ack_policy=AckPolicy.EXPLICIT,
                ack_wait=options.claim_idle_ms / 1000, filter_subject=url.subject,
                deliver_policy=DeliverPolicy.ALL if options.start == "earliest"
                else DeliverPolicy.NEW))
        sub = await js.pull_subscribe_bind(durable=options.group, stream=url.stream)
    except BaseException:
        await nc.close()
        raise
    return NatsSource(nc, sub, url)


async def open_sink(url: StreamURL, options: StreamOptions) -> NatsSink:
    nc = await _connect(url, f"shipyard-sink-{url.stream}")
    try:
        js = nc.jetstream()
        info = await _stream_info(js, url)
    except BaseException:
        await nc.close()
        raise
    window = info.config.duplicate_window or 120.0
    return NatsSink(nc, js, url, float(window))


class NatsSource:
    """A process bound to a durable pull consumer."""

    def __init__(self, nc: Any, sub: Any, url: StreamURL) -> None:
        self.url = url
        self.failures = _failures()
        self._nc = nc
        self._sub = sub

    async def read(self, count: int, block_ms: int) -> list[SourceMessage]:
        try:
            found = await self._sub.fetch(count, timeout=block_ms / 1000)
        except TimeoutError:  # nats.errors.TimeoutError or asyncio's, by the code path
            return []
        messages = []
        for msg in found:
            meta = msg.metadata
            messages.append(SourceMessage(
                str(meta.sequence.stream), msg.data, int(meta.timestamp.timestamp() * 1000),
                meta.num_delivered > 1, handle=msg))
        return messages

    async def ack(self, messages: Sequence[SourceMessage]) -> None:
        for message in messages:
            await message.handle.ack()
        await self._nc.flush()

    async def lag(self) -> int | None:
        info = await self._sub.consumer_info()
        return int(info.num_pending) if info.num_pending is not None else None

    async def close(self) -> None:
        await self._nc.close()


class NatsSink:
    """Publishes outputs with their dedupe id; checks redeliveries older than the window."""

    def __init__(self, nc: Any, js: Any, url: StreamURL, window_s: float) -> None:
        assert url.subject is not None
        self.url = url
        self.failures = _failures()
        self._nc = nc
        self._js = js
        self._subject = url.subject
        self._window_s = window_s

    async def write(self, records: Sequence[OutputRecord]) -> int:
        now_ms = time.time() * 1000
        horizon_ms = (self._window_s - CLOCK_SKEW_S) * 1000
        late = [r for r in records if r.redelivered and now_ms - r.source_time_ms > horizon_ms]
        done = await self._written_ids(late) if late else set()
        pending = []
        for record in records:
            if record.dedupe_id in done:
                continue
            pending.append(await self._js.publish_async(
                self._subject, record.payload, stream=self.url.stream,
                headers={_MSG_ID: record.dedupe_id}))
        acks = await asyncio.gather(*pending)
        return sum(1 for ack in acks if not ack.duplicate)

    async def _written_ids(self, records: Sequence[OutputRecord]) -> set[str]:
        """Which of ``records`` are in the sink already: a headers-only scan of the sink
        from the oldest source message's time (an output is always written after it)."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        wanted = {r.dedupe_id for r in records}
        info = await self._js.stream_info(self.url.stream)
        if not info.state.messages:
            return set()
        since = min(r.source_time_ms for r in records) / 1000 - CLOCK_SKEW_S
        sub = await self._js.pull_subscribe(self._subject, stream=self.url.stream,
                                            config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=datetime.fromtimestamp(max(since, 0), UTC),
            ack_policy=AckPolicy.NONE, headers_only=True, inactive_threshold=60))
        found: set[str] = set()
        try:
            if not (await sub.consumer_info()).num_pending:  # nothing that recent
                return set()
            while wanted - found:
                try:
                    batch = await sub.fetch(512, timeout=1)
                except TimeoutError:
                    break
                found.update(m.headers.get(_MSG_ID) for m in batch if m.headers)
                last = batch[-1].metadata
                if not last.num_pending or last.sequence.stream >= info.state.last_seq:
                    break
        finally:
            name = (await sub.consumer_info()).name
            await sub.unsubscribe()
            await self._js.delete_consumer(self.url.stream, name)  # not left to expire
        return found & wanted

    async def close(self) -> None:
        await self._nc.close()
