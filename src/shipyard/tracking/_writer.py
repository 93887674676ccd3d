"""Buffered logging: calls append to memory; a background thread writes batches.

Durability promise (also in docs/durability.md): a call returns once its record is in this
process's buffer. The buffer is written at least every ``flush_interval`` seconds, as soon
as it holds ``buffer_size`` records, on ``flush()``, on run end and at interpreter exit. A
SIGKILL therefore loses at most the records of the last ``flush_interval`` seconds (and never
more than ``2 × buffer_size`` records, since callers then write synchronously). Each batch
of a run is one transaction: it lands whole or not at all.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shipyard import errors

if TYPE_CHECKING:
    from ._entities import RunStatus
    from ._service import MetricPoint, TrackingService

__all__ = ["BatchWriter"]

_RETRIES = 3


@dataclass
class _RunBuffer:
    metrics: list[MetricPoint] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.metrics) + len(self.params) + len(self.tags)


class BatchWriter:
    """Collects validated records per run and writes them in batches."""

    def __init__(self, service: TrackingService, *, flush_interval: float = 0.5,
                 buffer_size: int = 10_000) -> None:
        self.service = service
        self.flush_interval = flush_interval
        self.buffer_size = buffer_size
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: dict[str, _RunBuffer] = {}
        self._count = 0
        self._errors: dict[str, list[errors.ShipyardError]] = {}
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- submitting ------------------------------------------------------------------------------

    def add_metrics(self, run_id: str, points: list[MetricPoint]) -> None:
        with self._lock:
            self._buffer(run_id).metrics.extend(points)
            self._count += len(points)
        self._after_add()

    def add_params(self, run_id: str, params: dict[str, str]) -> None:
        with self._lock:
            buf = self._buffer(run_id)
            for key, value in params.items():
                old = buf.params.get(key)
                if old is not None and old != value:
                    raise errors.Conflict(
                        f"param {key!r} of run {run_id} was logged as {old!r}; params are "
                        f"immutable, so it cannot become {value!r}", field="param")
            buf.params.update(params)
            self._count += len(params)
        self._after_add()

    def add_tags(self, run_id: str, tags: dict[str, str]) -> None:
        with self._lock:
            self._buffer(run_id).tags.update(tags)
            self._count += len(tags)
        self._after_add()

    def _buffer(self, run_id: str) -> _RunBuffer:
        buf = self._pending.get(run_id)
        if buf is None:
            buf = self._pending[run_id] = _RunBuffer()
        return buf

    def _after_add(self) -> None:
        if self._thread is None:
            self._start()
        if self._count >= 2 * self.buffer_size:
            self._drain()  # back-pressure: the caller writes
        elif self._count >= self.buffer_size:
            self._wake.set()

    # -- flushing --------------------------------------------------------------------------------

    def flush(self, run_id: str | None = None) -> None:
        """Write everything buffered; raise the first error met writing ``run_id`` (or any)."""
        self._drain()
        self._raise_errors(run_id)

    def finish(self, run_id: str, status: RunStatus | str, end_time: int | None = None) -> None:
        """Flush, and end ``run_id`` in the transaction that writes its last batch.

        The run is ended even when its records cannot be written (e.g. it was deleted): the
        status change is then a transaction of its own. Raises the first error met writing
        the run's records, now or earlier, as :meth:`flush` does.
        """
        try:
            with self._write_lock:
                with self._lock:
                    batch, self._pending, self._count = self._pending, {}, 0
                own = batch.pop(run_id, None)
                for other, buf in batch.items():
                    if len(buf):
                        self._write(other, buf)
                if own is None or not len(own) or not self._write(
                        run_id, own, end_status=status, end_time=end_time):
                    self.service.end_run(run_id, status, end_time)
        finally:
            found = self._take_errors(run_id)
        if found:
            raise found[0]

    def pending(self) -> int:
        return self._count

    def close(self) -> None:
        """Flush and stop the background thread (at interpreter exit)."""
        self._closed = True
        self._wake.set()
        self._drain()

    def _raise_errors(self, run_id: str | None) -> None:
        found = self._take_errors(run_id)
        if found:
            raise found[0]

    def _take_errors(self, run_id: str | None) -> list[errors.ShipyardError]:
        with self._lock:
            if run_id is None:
                found = [e for errs in self._errors.values() for e in errs]
                self._errors.clear()
            else:
                found = self._errors.pop(run_id, [])
        return found

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="shipyard-writer",
                                                daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self._drain()
            except Exception:  # noqa: BLE001 - errors are kept per run by _write
                time.sleep(self.flush_interval)

    def _drain(self) -> None:
        with self._write_lock:
            with self._lock:
                batch, self._pending, self._count = self._pending, {}, 0
            for run_id, buf in batch.items():
                if len(buf):
                    self._write(run_id, buf)

    def _write(self, run_id: str, buf: _RunBuffer, *, end_status: RunStatus | str | None = None,
               end_time: int | None = None) -> bool:
        """Write one run's batch (and end the run, with ``end_status``); False when it failed,
        the error kept for flush()."""
        for attempt in range(_RETRIES):
            try:
                self.service.log_batch(run_id, metrics=buf.metrics, params=buf.params,
                                       tags=buf.tags, validated=True, end_status=end_status,
                                       end_time=end_time)
                return True
            except (errors.Conflict, errors.NotFound, errors.InvalidInput) as exc:
                self._keep_error(run_id, exc)
                return False
            except errors.ShipyardError as exc:  # database unavailable: retry, then give up
                if attempt == _RETRIES - 1:
                    self._keep_error(run_id, exc)
                    return False
                time.sleep(0.2 * (attempt + 1))
            except Exception as exc:  # noqa: BLE001 - unexpected: keep it for flush()
                # Raising here would drop the other runs' batches of this drain, and the
                # background loop would swallow it: report it at the next flush instead.
                error = errors.ShipyardError(
                    f"writing buffered records of run {run_id} failed: {exc!r}")
                error.__cause__ = exc
                self._keep_error(run_id, error)
                return False
        return False

    def _keep_error(self, run_id: str, exc: errors.ShipyardError) -> None:
        with self._lock:
            self._errors.setdefault(run_id, []).append(exc)
