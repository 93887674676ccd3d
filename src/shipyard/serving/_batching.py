"""Adaptive micro-batching: concurrent requests become one model call.

Requests wait in a bounded queue; one worker task takes everything queued (up to
``max_batch_size`` rows), runs the handler on it in a dedicated thread and hands each
request its own result. The thread hands the results back through a socket pair the event
loop watches (:class:`_Handback`): no executor future, no wrapped future and no extra trip
through the worker task before a caller sees its result. The thread wakes the loop with a
``send`` that releases the GIL first, so the woken loop does not have to wait for the
thread to let go of it (``call_soon_threadsafe`` wakes it while still holding the GIL: on
busy cores, a stall of a scheduler slice per request).

While a batch is being predicted the next one forms by itself, so batches grow with load.
On top of that the worker waits up to ``max_wait_ms`` for more requests, but only while
requests are arriving concurrently: a lone sequential client never pays the wait (see
:meth:`MicroBatcher._should_wait`).

:meth:`MicroBatcher.close` drains: everything already queued or in hand is predicted and
answered before the worker stops, which is what a zero-downtime model swap relies on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["MicroBatcher", "QueueFull", "BatchStats", "BatcherClosed"]

log = logging.getLogger("shipyard.serving")
T = TypeVar("T")
R = TypeVar("R")

#: The handler: items in, one result (or the exception for that item) per item out.
Handler = Callable[[list[T]], Sequence[R | BaseException]]


class QueueFull(Exception):
    """The request queue is full: the server is overloaded (HTTP 429)."""

    def __init__(self, max_queue: int) -> None:
        super().__init__(f"the server is overloaded: {max_queue} requests are already "
                         "waiting for the model; retry later")
        self.max_queue = max_queue


class BatcherClosed(RuntimeError):
    """The batcher was closed before this request was predicted (a swap or a shutdown)."""


@dataclass(frozen=True)
class BatchStats:
    """What :attr:`MicroBatcher.on_batch` receives after each batch."""

    items: int
    rows: int
    seconds: float
    waited: bool  # whether the worker waited max_wait_ms for more requests
    queued: int = 0  # requests still waiting when the batch was answered


@dataclass(eq=False)
class _Pending:
    item: Any
    rows: int
    future: asyncio.Future[Any] = field(repr=False)


class MicroBatcher(Generic[T, R]):
    """Collects concurrent :meth:`submit` calls into batches for ``handler``.

    ``max_queue`` bounds the requests waiting (not counting the batch being predicted);
    :meth:`submit` raises :class:`QueueFull` at once beyond it. An item with more rows than
    ``max_batch_size`` is predicted alone, never split.
    """

    def __init__(self, handler: Handler[T, R], *, max_batch_size: int = 32,
                 max_wait_ms: float = 2.0, max_queue: int = 1000,
                 on_batch: Callable[[BatchStats], None] | None = None,
                 after_answer: Callable[[], None] | None = None) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1, max_wait_ms >= 0")
        self.handler = handler
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.on_batch = on_batch
        #: run in the predict thread right after each batch is answered (work the callers
        #: need not wait for, such as the prediction log); close() waits for it
        self.after_answer = after_answer
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: batches for the predict thread: (items, batch, done), None to stop it
        self._jobs: queue.SimpleQueue[tuple[list[Any], list[_Pending],
                                            asyncio.Future[None]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._handback = _Handback()
        self._concurrent = False  # did recent requests arrive while others were pending?
        self._busy = False
        self._closed = False
        self._in_hand: list[_Pending] = []  # the batch taken from the queue, not answered

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch (the one being predicted not included)."""
        return len(self._queue)

    async def submit(self, item: T, rows: int = 1) -> R:
        """Queue ``item`` (``rows`` rows) and wait for its result; QueueFull when full.

        Everything up to the enqueue runs without yielding to the event loop, so a caller
        that picked this batcher and calls ``submit`` at once is queued before any
        :meth:`close` can start draining. BatcherClosed when it is closed already.
        """
        if self._closed:
            raise BatcherClosed("this model's batcher is closed")
        self._ensure_worker()
        if len(self._queue) >= self.max_queue:
            raise QueueFull(self.max_queue)
        assert self._loop is not None and self._wakeup is not None
        future: asyncio.Future[R] = self._loop.create_future()
        self._queue.append(_Pending(item, rows, future))
        self._wakeup.set()
        return await future

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._worker is not None and self._loop is loop and not self._worker.done():
            return
        if self._loop is not loop:
            # First call, or a new event loop (a test client that runs each request in its
            # own): requests of a dead loop can never be answered, drop them.
            self._queue.clear()
            self._handback.watch_from(loop)
            self._loop = loop
            self._wakeup = asyncio.Event()
        self._worker = loop.create_task(self._run(), name="shipyard-batcher")

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                if self._closed:
                    return  # drained: close() is waiting for this
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch: list[_Pending] = []
            self._in_hand = batch  # what close() must answer if it has to give up waiting
            rows = self._take(batch, 0)
            self._concurrent = len(batch) > 1 or self._concurrent
            waited = self._should_wait(rows)
            if waited:
                before = len(batch)
                rows = await self._wait_for_more(batch, rows)
                self._concurrent = len(batch) > before
            if batch:
                await self._execute(batch, waited)
            self._in_hand = []

    def _take(self, batch: list[_Pending], rows: int) -> int:
        """Move queued requests into ``batch`` while it has room; returns its row count."""
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # the caller went away (client disconnected)
                self._queue.popleft()
                continue
            if batch and rows + head.rows > self.max_batch_size:
                break
            self._queue.popleft()
            batch.append(head)
            rows += head.rows
        return rows

    def _should_wait(self, rows: int) -> bool:
        # Waiting only pays off when other requests are on their way. A sequential client
        # sends its next request after this answer, so a wait would only add latency; the
        # flag is set when requests queued up behind each other, and cleared by a wait that
        # brought nothing.
        return (self.max_wait > 0 and rows < self.max_batch_size and self._concurrent
                and not self._closed)

    async def _wait_for_more(self, batch: list[_Pending], rows: int) -> int:
        assert self._loop is not None and self._wakeup is not None
        deadline = self._loop.time() + self.max_wait
        while rows < self.max_batch_size and not self._closed:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            if self._queue and batch and rows + self._queue[0].rows > self.max_batch_size:
                break
            rows = self._take(batch, rows)
        return rows

    async def _execute(self, batch: list[_Pending], waited: bool) -> None:
        assert self._loop is not None
        started = time.perf_counter()
        self._busy = True
        done: asyncio.Future[None] = self._loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._predict_thread,
                                            name="shipyard-predict", daemon=True)
            self._thread.start()
        try:
            self._jobs.put(([p.item for p in batch], batch, done))
            await done  # the thread has answered the batch's callers by then
        finally:
            self._busy = False
        if self.on_batch is not None:
            stats = BatchStats(items=len(batch), rows=sum(p.rows for p in batch),
                               seconds=time.perf_counter() - started, waited=waited,
                               queued=len(self._queue))
            try:
                self.on_batch(stats)
            except Exception:  # noqa: BLE001 - a metrics hook must not stop the batcher
                log.exception("the on_batch hook failed")

    def _predict_thread(self) -> None:
        """The model's thread: run the handler on each batch, then answer on the loop."""
        while True:
            job = self._jobs.get()
            if job is None:
                self._handback.close_sender()
                return
            items, batch, done = job
            try:
                results: Sequence[Any] = self.handler(items)
                if len(results) != len(batch):
                    raise RuntimeError(f"batch handler returned {len(results)} results for "
                                       f"{len(batch)} items")
            except BaseException as exc:  # noqa: BLE001 - every waiting caller gets it
                results = [exc] * len(batch)
            self._handback.send(batch, results, done)
            if self.after_answer is not None:
                try:
                    self.after_answer()
                except Exception:  # noqa: BLE001 - the callers have their answers
                    log.exception("the after_answer hook failed")

    async def close(self, *, drain_timeout: float = 10.0) -> None:
        """Answer everything queued or being predicted (up to ``drain_timeout`` seconds),
        then stop. New :meth:`submit` calls raise BatcherClosed from now on."""
        self._closed = True
        worker = self._worker
        if worker is not None and not worker.done():
            if self._loop is asyncio.get_running_loop():
                assert self._wakeup is not None
                self._wakeup.set()
                try:
                    await asyncio.wait_for(asyncio.shield(worker), drain_timeout)
                except TimeoutError:
                    log.warning("the batcher did not drain in %.0f s; failing %d queued "
                                "requests", drain_timeout, len(self._queue))
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            else:  # the loop that ran the worker is gone (a test client's): nothing to drain
                with contextlib.suppress(RuntimeError):
                    worker.cancel()
        for pending in [*self._in_hand, *self._queue]:
            if not pending.future.done():
                pending.future.set_exception(BatcherClosed("the model was closed before "
                                                           "this request was answered"))
        self._queue.clear()
        self._in_hand = []
        self._handback.close_receiver()
        if self._thread is None:
            self._handback.close_sender()
        self._jobs.put(None)  # the thread finishes the batch in hand (if any), then stops
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # ... including its after_answer work (the log entries of the last batches)
            await asyncio.get_running_loop().run_in_executor(None, thread.join,
                                                             drain_timeout)


class _Handback:
    """Answered batches from the predict thread to the event loop: a queue, and a socket
    pair whose reading end the loop watches (the one byte sent wakes it)."""

    def __init__(self) -> None:
        self._ready: collections.deque[tuple[list[_Pending], Sequence[Any],
                                             asyncio.Future[None]]] = collections.deque()
        self._receiver: socket.socket | None = None  # made on first use: a batcher that
        self._sender: socket.socket | None = None    # never predicts holds no sockets
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch_from(self, loop: asyncio.AbstractEventLoop) -> None:
        """Answer on ``loop`` from now on (a test client may run each request in a new
        loop; the old one is gone)."""
        if self._receiver is None:
            self._receiver, self._sender = socket.socketpair()
            self._receiver.setblocking(False)
            self._sender.setblocking(False)
        elif self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._receiver.fileno())
        self._ready.clear()
        self._loop = loop
        loop.add_reader(self._receiver.fileno(), self._drain)

    def send(self, batch: list[_Pending], results: Sequence[Any],
             done: asyncio.Future[None]) -> None:
        """Predict thread: queue the answer and wake the loop."""
        self._ready.append((batch, results, done))
        # a full buffer already means a wake-up is pending; closed: nobody waits any more
        with contextlib.suppress(OSError, AttributeError):
            self._sender.send(b"\0")  # type: ignore[union-attr]

    def _drain(self) -> None:
        """Event loop: answer every batch the thread has finished."""
        with contextlib.suppress(OSError, AttributeError):
            self._receiver.recv(4096)  # type: ignore[union-attr]
        while self._ready:
            _answer(*self._ready.popleft())

    def close_receiver(self) -> None:
        if self._receiver is None:
            return
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._receiver.fileno())
        self._receiver.close()

    def close_sender(self) -> None:
        """Closed by the predict thread when it stops (it is the only one sending)."""
        if self._sender is not None:
            self._sender.close()


def _answer(batch: list[_Pending], results: Sequence[Any], done: asyncio.Future[None]) -> None:
    """On the event loop: hand each caller its result, then let the worker go on."""
    for pending, result in zip(batch, results, strict=True):
        if pending.future.done():  # went away, or failed by close()
            continue
        if isinstance(result, BaseException):
            pending.future.set_exception(result)
        else:
            pending.future.set_result(result)
    if not done.done():
        done.set_result(None)
