"""Shadow traffic: copies of answered requests sent to the shadow arms, off the request path.

The primary answers first; then :meth:`ShadowCopier.offer` puts a copy on the shadow arm's
bounded queue without waiting (a full queue drops the copy and counts it), so a slow or
failing shadow never delays or fails a response. One task per shadow arm takes whatever is
queued and submits it at once, so the shadow's micro-batcher batches the copies as it
batches live traffic. The shadow's answers are logged by its own state (endpoint
``"shadow"``, same request id as the primary's) and compared with the primary's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.serving import PredictionResult, ServingState

__all__ = ["ShadowCopy", "ShadowCopier", "compare_results"]

log = logging.getLogger("shipyard.rollout")


@dataclass(frozen=True, eq=False)
class ShadowCopy:
    """One answered request, to be replayed on a shadow arm."""

    state: ServingState
    data: Any
    rows: int
    want_proba: bool
    request_id: str
    primary: PredictionResult


#: Called with (shadow arm, the copy, the shadow's result or error, its latency in ms).
ResultHook = Callable[[str, ShadowCopy, "PredictionResult | BaseException", float], None]


@dataclass(eq=False)
class _Lane:
    queue: asyncio.Queue[ShadowCopy]
    task: asyncio.Task[None]


class ShadowCopier:
    """Bounded queues of copies, one per shadow arm, drained by one task each."""

    def __init__(self, capacity: int, on_result: ResultHook, *, batch: int = 32) -> None:
        if capacity < 1:
            raise ValueError("the shadow queue capacity must be >= 1")
        self.capacity = capacity
        self.batch = max(1, batch)
        self.on_result = on_result
        self._lanes: dict[str, _Lane] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight = 0  # copies queued or being replayed

    def offer(self, arm: str, copy: ShadowCopy) -> bool:
        """Queue ``copy`` for ``arm`` (call on the event loop); False when it was dropped."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first call, or a new loop (a test client's)
            self._lanes.clear()
            self._loop = loop
        lane = self._lanes.get(arm)
        if lane is None or lane.task.done():
            queue: asyncio.Queue[ShadowCopy] = asyncio.Queue(self.capacity)
            lane = self._lanes[arm] = _Lane(queue, loop.create_task(
                self._drain(arm, queue), name=f"shipyard-shadow-{arm}"))
        try:
            lane.queue.put_nowait(copy)
        except asyncio.QueueFull:
            return False
        self._inflight += 1
        return True

    @property
    def pending(self) -> int:
        """Copies queued or being replayed."""
        return self._inflight

    async def _drain(self, arm: str, queue: asyncio.Queue[ShadowCopy]) -> None:
        while True:
            items = [await queue.get()]
            while len(items) < self.batch and not queue.empty():
                items.append(queue.get_nowait())
            await asyncio.gather(*(self._replay(arm, item) for item in items))

    async def _replay(self, arm: str, copy: ShadowCopy) -> None:
        started = time.perf_counter()
        outcome: PredictionResult | BaseException
        try:
            outcome = await copy.state.predict(
                copy.data, copy.rows, want_proba=copy.want_proba, endpoint="shadow",
                request_id=copy.request_id, started=started)
        except Exception as exc:  # noqa: BLE001 - a failing shadow is measured, not raised
            outcome = exc
        try:
            self.on_result(arm, copy, outcome, (time.perf_counter() - started) * 1000)
        except Exception:  # noqa: BLE001 - the comparison must not stop the lane
            log.exception("could not record the answer of shadow arm %s", arm)
        finally:
            self._inflight -= 1

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Until every queued copy has been replayed (or ``timeout``): for tests and close."""
        deadline = time.monotonic() + timeout
        while self._inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Stop the lanes; copies still queued are dropped (the primary answered long ago)."""
        lanes, self._lanes = list(self._lanes.values()), {}
        self._inflight = 0
        for lane in lanes:
            lane.task.cancel()
        for lane in lanes:
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await lane.task


def compare_results(primary: PredictionResult,
                    shadow: PredictionResult) -> tuple[int, int, int, float]:
    """(rows, rows whose prediction agrees, rows with probabilities on both sides, sum over
    those rows of the mean absolute difference of their class probabilities)."""
    import numpy as np

    a = np.asarray(primary.predictions)
    b = np.asarray(shadow.predictions)
    rows = len(a)
    if a.shape != b.shape:
        return rows, 0, 0, 0.0
    same = a == b
    agreed = int(same.reshape(rows, -1).all(axis=1).sum()) if rows else 0
    pa, pb = primary.probabilities, shadow.probabilities
    if pa is None or pb is None or np.shape(pa) != np.shape(pb):
        return rows, agreed, 0, 0.0
    diff = np.abs(np.asarray(pa, dtype=np.float64) - np.asarray(pb, dtype=np.float64))
    per_row = diff.reshape(rows, -1).mean(axis=1)
    return rows, agreed, rows, float(per_row.sum())
