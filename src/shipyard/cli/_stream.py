"""``shipyard stream``: streaming inference from a Redis or NATS stream into another.

The work lives in :func:`shipyard.serving.run_stream`; this command parses options, shows a
status line on a terminal and prints a summary.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import typer

__all__ = ["stream"]

_URLS = ("redis://HOST[:PORT][/DB]/stream:KEY or "
         "nats://HOST[:PORT]/stream:STREAM[/subject:SUBJECT]")


def stream(
    model_ref: str = typer.Argument(..., metavar="MODEL_REF",
                                    help="NAME@ALIAS, NAME/VERSION, NAME (the latest "
                                    "version) or a models:/ URI."),
    source: str = typer.Option(..., "--source", metavar="URL",
                               help=f"The stream to consume: {_URLS}."),
    sink: str = typer.Option(..., "--sink", metavar="URL",
                             help="The stream the predictions go to (same URL forms; a NATS "
                             "sink needs /subject:SUBJECT)."),
    dlq: str | None = typer.Option(None, "--dlq", metavar="URL",
                                   help="Dead-letter stream for malformed messages. Default: "
                                   "<source key>:dlq (Redis), <STREAM>_DLQ (NATS)."),
    group: str | None = typer.Option(None, "--group", metavar="NAME",
                                     help="Consumer group (Redis) or durable consumer "
                                     "(NATS). Default: shipyard-<model>."),
    consumer: str | None = typer.Option(None, "--consumer", metavar="NAME",
                                        help="This consumer's name in the group; keep it "
                                        "stable across restarts. Default: the host name."),
    batch_size: int = typer.Option(64, "--batch-size", min=1,
                                   help="Most messages read, predicted and acked together."),
    block_ms: int = typer.Option(1000, "--block-ms", min=1, help="Longest wait for new "
                                 "messages per read (and for a stop signal to take effect)."),
    max_messages: int | None = typer.Option(None, "--max-messages", min=1,
                                            help="Stop after this many source messages."),
    claim_idle_ms: int = typer.Option(60_000, "--claim-idle-ms", min=1,
                                      help="Redis: take over messages another consumer left "
                                      "unacked this long. NATS: the ack wait of a new "
                                      "durable consumer."),
    dedupe_ttl: int = typer.Option(86_400, "--dedupe-ttl", min=1, metavar="SECONDS",
                                   help="How long a Redis sink remembers a written key."),
    start: str = typer.Option("earliest", "--start", metavar="earliest|latest",
                              help="Where a new group starts: every message in the stream "
                              "or only new ones."),
    progress: bool | None = typer.Option(None, "--progress/--no-progress",
                                         help="Show a status line (default: on a terminal)."),
    log_predictions: bool = typer.Option(True, "--log-predictions/--no-log-predictions",
                                         help="Also append every prediction to the Parquet "
                                         "prediction log under SHIPYARD_HOME (as `shipyard "
                                         "serve` does), for monitoring."),
) -> None:
    """Consume a stream, predict each batch in one model call, write a prediction stream.

    Outputs are written, then the batch is acked; a message delivered twice is written
    once (by its id in the source). Malformed messages go to the dead-letter stream.
    Predictions are also logged (endpoint "stream", request id = the message id) unless
    --no-log-predictions. SIGINT/SIGTERM finish the batch in flight and exit 0.
    """
    from shipyard import errors
    from shipyard.config import get_settings
    from shipyard.serving import (
        PredictionLog,
        ServedModel,
        StreamOptions,
        run_stream,
        stream_urls,
    )

    if start not in ("earliest", "latest"):
        raise errors.InvalidInput("--start must be 'earliest' or 'latest'", field="start")
    source_url, sink_url, dlq_url = stream_urls(source, sink, dlq)  # before the model loads
    options = StreamOptions(group=group, consumer=consumer, batch_size=batch_size,
                            block_ms=block_ms, max_messages=max_messages,
                            claim_idle_ms=claim_idle_ms, dedupe_ttl_s=dedupe_ttl,
                            start=start)  # type: ignore[arg-type]
    served = ServedModel.load(model_ref)
    label = f"{served.name} v{served.version_label}"
    predlog = PredictionLog(get_settings().home, served.name) if log_predictions else None
    where = "" if predlog is None else f"; predictions logged to {predlog.predictions_dir}"
    typer.echo(f"Streaming {source_url.display} -> {sink_url.display} with {label} "
               f"(digest {served.digest[:12]}); dead letters to {dlq_url.display}{where}",
               err=True)
    show = sys.stderr.isatty() if progress is None else progress
    try:
        with _StatusLine(label, show) as status:
            stats = run_stream(served, source_url, sink_url, dlq=dlq_url,
                               options=options, progress=status.update if show else None,
                               handle_signals=True, predlog=predlog)
    finally:
        if predlog is not None:
            predlog.close()  # what is queued reaches the disk
    logged = "" if predlog is None else f"; {stats.logged} rows logged" + (
        f" ({stats.log_dropped} dropped: the log was behind)" if stats.log_dropped else "")
    typer.echo(f"stopped: {stats.messages} messages ({stats.records} records) in "
               f"{stats.seconds:.1f}s, {stats.rate:,.0f} messages/s; {stats.written} written, "
               f"{stats.duplicates} already written, {stats.dead_letters} dead-lettered"
               f"{logged}", err=True)


class _StatusLine:
    """A rich status line on stderr, redrawn at most a few times a second."""

    def __init__(self, label: str, enabled: bool) -> None:
        self._label = label
        self._enabled = enabled
        self._live: Any = None
        self._last = (time.monotonic(), 0)
        self._rate = 0.0

    def __enter__(self) -> _StatusLine:
        if self._enabled:
            from rich.console import Console
            from rich.live import Live

            self._live = Live("", console=Console(stderr=True), refresh_per_second=4,
                              transient=True)
            self._live.__enter__()
        return self

    def update(self, stats: Any) -> None:
        if self._live is None:
            return
        now = time.monotonic()
        since, count = self._last
        if now - since >= 1.0:  # messages/s over the last second or so
            self._rate = (stats.messages - count) / (now - since)
            self._last = (now, stats.messages)
        lag = "?" if stats.lag is None else f"{stats.lag:,}"
        self._live.update(f"[bold]{self._label}[/]: {stats.messages:,} messages, "
                          f"{self._rate:,.0f}/s, lag {lag}, {stats.dead_letters:,} "
                          f"dead-lettered, {stats.duplicates:,} already written")

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
