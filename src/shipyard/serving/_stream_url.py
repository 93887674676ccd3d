"""Stream URLs: which transport, server and stream a ``--source``/``--sink``/``--dlq`` names.

Grammar (docs/streaming.md)::

    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]/stream:KEY[?field=data&maxlen=N]
    rediss://...                      (the same over TLS)
    nats://[USER:PASSWORD@]HOST[:PORT]/stream:STREAM[/subject:SUBJECT]

Parsing only reads the text; nothing connects until :func:`probe` or a backend does.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from shipyard import errors

__all__ = ["StreamURL", "parse_stream_url", "stream_urls", "probe", "NAME"]

_BACKENDS = {"redis": "redis", "rediss": "redis", "nats": "nats"}
_DEFAULT_PORTS = {"redis": 6379, "nats": 4222}
_OPTIONS = {"redis": {"field", "maxlen"}, "nats": set()}
#: a JetStream stream or consumer name (also what group and consumer names may use)
NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_NATS_SUBJECT = re.compile(r"^[^\s.]+(\.[^\s.]+)*$")


@dataclass(frozen=True)
class StreamURL:
    """One stream on one server, parsed from a URL (see :func:`parse_stream_url`)."""

    transport: Literal["redis", "nats"]
    scheme: str
    host: str
    port: int
    stream: str
    db: int = 0
    subject: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    options: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def display(self) -> str:
        """The URL without its password, for messages."""
        auth = f"{self.username or ''}:***@" if self.password else (
            f"{self.username}@" if self.username else "")
        path = f"/{self.db}/stream:{self.stream}" if self.transport == "redis" else (
            f"/stream:{self.stream}" + (f"/subject:{self.subject}" if self.subject else ""))
        return f"{self.scheme}://{auth}{self.host}:{self.port}{path}"

    def same_stream(self, other: StreamURL) -> bool:
        return (self.transport, self.host, self.port, self.db, self.stream) == (
            other.transport, other.host, other.port, other.db, other.stream)

    def dead_letter(self) -> StreamURL:
        """The default dead-letter stream of this source: ``<key>:dlq`` on the same Redis
        database; on NATS the stream ``<STREAM>_DLQ`` on subject ``shipyard.dlq.<STREAM>``."""
        if self.transport == "redis":
            return replace(self, stream=f"{self.stream}:dlq")
        return replace(self, stream=f"{self.stream}_DLQ", subject=f"shipyard.dlq.{self.stream}",
                       options={})


def parse_stream_url(url: str, *, field: str = "source") -> StreamURL:
    """A :class:`StreamURL` from ``url`` (InvalidInput naming ``field`` when it is wrong).

    Grammar::

        redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]/stream:KEY[?field=data&maxlen=N]
        rediss://...                      (the same over TLS)
        nats://[USER:PASSWORD@]HOST[:PORT]/stream:STREAM[/subject:SUBJECT]

    ``KEY`` is the Redis key of the stream (it may contain ``:`` and ``/``); ``field`` names
    the entry field that holds the JSON (default ``data``); ``maxlen`` trims a sink stream
    to about that many entries. ``SUBJECT`` filters a NATS source and is where a NATS sink
    publishes (required for a sink); a missing stream is created with that subject.
    """
    def bad(why: str) -> errors.InvalidInput:
        return errors.InvalidInput(f"--{field} {url!r}: {why}", field=field)

    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise bad(str(exc)) from None
    transport = _BACKENDS.get(parts.scheme)
    if transport is None:
        raise bad("the scheme must be redis://, rediss:// or nats:// (e.g. "
                  "redis://127.0.0.1:6379/0/stream:transactions)")
    if not parts.hostname:
        raise bad("no host")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - _OPTIONS[transport])
    if unknown:
        allowed = ", ".join(sorted(_OPTIONS[transport])) or "none"
        raise bad(f"unknown option(s) {', '.join(unknown)} (allowed: {allowed})")
    common: dict[str, Any] = {
        "scheme": parts.scheme, "host": parts.hostname,
        "port": port or _DEFAULT_PORTS[transport], "options": options,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None}
    path = parts.path.lstrip("/")
    if transport == "redis":
        return _redis_url(path, options, common, bad)
    return _nats_url(path, common, bad)


def _redis_url(path: str, options: dict[str, str], common: dict[str, Any],
               bad: Callable[[str], errors.InvalidInput]) -> StreamURL:
    db = 0
    head, _, rest = path.partition("/")
    if head.isdigit():
        db, path = int(head), rest
    if not path.startswith("stream:") or not path[len("stream:"):]:
        raise bad("the path must be [/DB]/stream:KEY (e.g. "
                  "redis://127.0.0.1:6379/0/stream:transactions)")
    if "maxlen" in options and not options["maxlen"].isdigit():
        raise bad("maxlen must be a whole number of entries")
    if "field" in options and not options["field"]:
        raise bad("field must not be empty")
    return StreamURL(transport="redis", stream=unquote(path[len("stream:"):]), db=db, **common)


def _nats_url(path: str, common: dict[str, Any],
              bad: Callable[[str], errors.InvalidInput]) -> StreamURL:
    named: dict[str, str] = {}
    for segment in filter(None, path.split("/")):
        label, sep, value = segment.partition(":")
        if not sep or label not in ("stream", "subject") or label in named or not value:
            raise bad("the path must be /stream:STREAM[/subject:SUBJECT] (e.g. "
                      "nats://127.0.0.1:4222/stream:TRANSACTIONS/subject:transactions)")
        named[label] = unquote(value)
    if "stream" not in named:
        raise bad("no /stream:STREAM in the path")
    if not NAME.match(named["stream"]):
        raise bad("a JetStream stream name may use letters, digits, '-' and '_' only")
    subject = named.get("subject")
    if subject is not None and not _NATS_SUBJECT.match(subject):
        raise bad(f"{subject!r} is not a NATS subject (dot-separated tokens, no spaces)")
    return StreamURL(transport="nats", stream=named["stream"], subject=subject, **common)



def stream_urls(source: str | StreamURL, sink: str | StreamURL,
                dlq: str | StreamURL | None = None) -> tuple[StreamURL, StreamURL, StreamURL]:
    """The parsed source, sink and dead-letter URLs (the default DLQ filled in), checked
    against each other: no stream is both read and written, a NATS sink names a subject."""
    src = source if isinstance(source, StreamURL) else parse_stream_url(source, field="source")
    out = sink if isinstance(sink, StreamURL) else parse_stream_url(sink, field="sink")
    dead = (src.dead_letter() if dlq is None else
            dlq if isinstance(dlq, StreamURL) else parse_stream_url(dlq, field="dlq"))
    for name, url in (("sink", out), ("dlq", dead)):
        if url.same_stream(src):
            raise errors.InvalidInput(f"--{name} is the source stream {src.display}; the "
                                      "consumer would read its own output", field=name)
        if url.transport == "nats" and not url.subject:
            raise errors.InvalidInput(f"--{name} {url.display}: a NATS sink needs "
                                      "/subject:SUBJECT to publish to", field=name)
    if dead.same_stream(out):
        raise errors.InvalidInput("--dlq is the sink stream; send malformed messages to a "
                                  "stream of their own", field="dlq")
    return src, out, dead



async def probe(url: StreamURL, server: str) -> None:
    """Fail at once, in one line, when nothing listens at ``url``'s host and port (the
    clients retry a first connection as they would a lost one: seconds to minutes)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(url.host, url.port), 5)
    except (OSError, TimeoutError) as exc:
        raise errors.ShipyardError(f"cannot reach {server} at {url.display}: "
                                   f"{type(exc).__name__}: {exc}") from None
    writer.close()
