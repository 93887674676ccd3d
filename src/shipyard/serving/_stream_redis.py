"""Redis Streams: a consumer-group source and a sink that writes each key once (Lua).

Source: ``XREADGROUP`` as ``consumer`` of ``group`` (created with ``MKSTREAM`` when
missing). A consumer first re-reads its own pending entries (what it had read but not acked
when it last stopped or crashed), then, every half ``claim_idle_ms``, takes over entries
that other consumers left pending longer than ``claim_idle_ms`` (``XAUTOCLAIM``), then reads
new entries. The JSON is the entry field ``field`` (default ``data``).

Sink: one Lua script per batch, atomic in Redis: for each output, if its marker key
``<sink>:written:<source>/<id>`` does not exist, ``XADD`` the entry (fields ``key`` and
``data``) and set the marker (its value is the new entry's id) with a TTL of
``dedupe_ttl_s``. An output and its marker are written together or not at all, so a
redelivery within the TTL never adds a second entry. All keys of a call start with the sink
key: put a hash tag in it (``{scores}``) to use a Redis Cluster.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from shipyard import errors

from ._stream import OutputRecord, SourceMessage, StreamOptions
from ._stream_url import StreamURL, probe

__all__ = ["open_source", "open_sink", "RedisSource", "RedisSink"]

_WRITE_ONCE = """
local written = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local id
    if ARGV[2] == '0' then
      id = redis.call('XADD', KEYS[1], '*', 'key', ARGV[2 * i], ARGV[3], ARGV[2 * i + 1])
    else
      id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
                      'key', ARGV[2 * i], ARGV[3], ARGV[2 * i + 1])
    end
    redis.call('SET', KEYS[i], id, 'EX', ARGV[1])
    written = written + 1
  end
end
return written
"""
# KEYS[1] the sink stream, KEYS[1 + n] the marker of output n; ARGV[1] the marker TTL,
# ARGV[2] MAXLEN (0: no trimming), ARGV[3] the payload field, then per output n:
# ARGV[2 + 2n] its key and ARGV[3 + 2n] its payload.


def _failures() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError)


async def _connect(url: StreamURL) -> Any:
    try:
        import redis.asyncio as aioredis
    except ModuleNotFoundError:
        raise errors.MissingDependency("redis:// streams need redis-py: pip install "
                                       "'shipyard-mlops[redis]'") from None
    await probe(url, "Redis")
    client = aioredis.Redis(host=url.host, port=url.port, db=url.db, username=url.username,
                            password=url.password, ssl=url.scheme == "rediss",
                            socket_connect_timeout=5)
    try:
        await client.ping()
    except _failures() as exc:
        await client.aclose()
        raise errors.ShipyardError(f"cannot reach Redis at {url.display}: {exc}") from exc
    return client


async def open_source(url: StreamURL, options: StreamOptions) -> RedisSource:
    import redis

    client = await _connect(url)
    try:
        await client.xgroup_create(url.stream, options.group,
                                   id="0" if options.start == "earliest" else "$",
                                   mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):  # the group exists: keep its position
            await client.aclose()
            raise errors.ShipyardError(f"{url.display}: {exc}") from exc
    assert options.group is not None and options.consumer is not None
    return RedisSource(client, url, options.group, options.consumer, options.claim_idle_ms)


async def open_sink(url: StreamURL, options: StreamOptions) -> RedisSink:
    return RedisSink(await _connect(url), url, options.dedupe_ttl_s)


class RedisSource:
    """One consumer of a consumer group; see the module docstring for the reading order."""

    def __init__(self, client: Any, url: StreamURL, group: str, consumer: str,
                 claim_idle_ms: int) -> None:
        self.url = url
        self.failures = _failures()
        self._client = client
        self._group = group
        self._consumer = consumer
        self._field = url.options.get("field", "data").encode()
        self._claim_idle_ms = claim_idle_ms
        self._pending_from: str | None = "0"  # own pending entries first; None when done
        self._claim_from = "0-0"
        self._next_claim = 0.0

    async def read(self, count: int, block_ms: int) -> list[SourceMessage]:
        if self._pending_from is not None:
            found = await self._client.xreadgroup(self._group, self._consumer,
                                                  {self.url.stream: self._pending_from},
                                                  count=count)
            entries = found[0][1] if found else []
            if entries:
                self._pending_from = entries[-1][0].decode()
                return await self._messages(entries, redelivered=True)
            self._pending_from = None
        if time.monotonic() >= self._next_claim:
            claimed = await self._claim(count)
            if claimed:
                return claimed
        found = await self._client.xreadgroup(self._group, self._consumer,
                                              {self.url.stream: ">"}, count=count,
                                              block=block_ms)
        return await self._messages(found[0][1] if found else [], redelivered=False)

    async def _claim(self, count: int) -> list[SourceMessage]:
        """Entries other consumers left pending longer than claim_idle_ms (they died)."""
        cursor, entries, *_ = await self._client.xautoclaim(
            self.url.stream, self._group, self._consumer, self._claim_idle_ms,
            start_id=self._claim_from, count=count)
        self._claim_from = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        if self._claim_from == "0-0":  # a full pass: rest until the next one is due
            self._next_claim = time.monotonic() + self._claim_idle_ms / 2000
        return await self._messages(entries, redelivered=True)

    async def _messages(self, entries: list[Any], *, redelivered: bool) -> list[SourceMessage]:
        messages = []
        gone = []
        for raw_id, fields in entries:
            entry_id = raw_id.decode()
            if not fields:  # deleted (XDEL/XTRIM) while pending: nothing left to score
                gone.append(entry_id)
                continue
            payload = fields.get(self._field)
            problem = None if payload is not None else (
                f"the entry has no {self._field.decode()!r} field (fields: "
                f"{', '.join(k.decode(errors='replace') for k in fields)})")
            messages.append(SourceMessage(entry_id, payload, int(entry_id.split("-")[0]),
                                          redelivered, problem))
        if gone:
            await self._client.xack(self.url.stream, self._group, *gone)
        return messages

    async def ack(self, messages: Sequence[SourceMessage]) -> None:
        if messages:
            await self._client.xack(self.url.stream, self._group, *(m.id for m in messages))

    async def lag(self) -> int | None:
        for group in await self._client.xinfo_groups(self.url.stream):
            name = group.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == self._group:
                lag = group.get("lag")
                return int(lag) if lag is not None else None
        return None

    async def close(self) -> None:
        await self._client.aclose()


class RedisSink:
    """Appends outputs to a stream, each dedupe id once within ``dedupe_ttl_s``."""

    def __init__(self, client: Any, url: StreamURL, dedupe_ttl_s: int) -> None:
        self.url = url
        self.failures = _failures()
        self._client = client
        self._script = client.register_script(_WRITE_ONCE)
        self._args = [dedupe_ttl_s, int(url.options.get("maxlen", 0)),
                      url.options.get("field", "data")]

    async def write(self, records: Sequence[OutputRecord]) -> int:
        if not records:
            return 0
        keys = [self.url.stream, *(f"{self.url.stream}:written:{r.dedupe_id}" for r in records)]
        args: list[Any] = list(self._args)
        for record in records:
            args += (record.key, record.payload)
        return int(await self._script(keys=keys, args=args))

    async def close(self) -> None:
        await self._client.aclose()
