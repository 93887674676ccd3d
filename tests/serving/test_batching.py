"""The micro-batcher on its own: batches form under concurrency, results go back right."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from shipyard.serving import BatchStats, MicroBatcher, QueueFull


class Recorder:
    """A handler that doubles each item and records the batches it saw."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.batches: list[list[Any]] = []

    def __call__(self, items: list[Any]) -> list[Any]:
        if self.delay:
            time.sleep(self.delay)
        self.batches.append(list(items))
        return [item * 2 for item in items]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_concurrent_requests_form_batches_and_get_their_own_results() -> None:
    handler = Recorder(delay=0.005)
    stats: list[BatchStats] = []

    async def main() -> list[int]:
        batcher = MicroBatcher(handler, max_batch_size=16, max_wait_ms=5, on_batch=stats.append)
        try:
            return await asyncio.gather(*(batcher.submit(i) for i in range(100)))
        finally:
            await batcher.close()

    results = run(main())
    assert results == [i * 2 for i in range(100)]
    sizes = [len(b) for b in handler.batches]
    assert sum(sizes) == 100
    assert max(sizes) == 16 and len(sizes) < 100  # > 1 row per batch under concurrency
    assert all(size <= 16 for size in sizes)
    assert [s.rows for s in stats] == sizes


def test_rows_count_towards_the_batch_size_and_a_big_item_goes_alone() -> None:
    handler = Recorder()

    async def main() -> None:
        batcher = MicroBatcher(handler, max_batch_size=10, max_wait_ms=1)
        await asyncio.gather(batcher.submit(1, rows=4), batcher.submit(2, rows=4),
                             batcher.submit(3, rows=4), batcher.submit(4, rows=25))
        await batcher.close()

    run(main())
    assert handler.batches == [[1, 2], [3], [4]]


def test_arrivals_during_a_slow_batch_join_the_next_one() -> None:
    handler = Recorder(delay=0.05)

    async def main() -> None:
        batcher = MicroBatcher(handler, max_batch_size=64, max_wait_ms=0)
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.01)  # the first batch is now being predicted
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 11)]
        await asyncio.gather(first, *rest)
        await batcher.close()

    run(main())
    assert [len(b) for b in handler.batches] == [1, 10]


def test_a_sequential_caller_never_waits_for_a_batch() -> None:
    stats: list[BatchStats] = []

    async def main() -> None:
        batcher = MicroBatcher(Recorder(), max_batch_size=32, max_wait_ms=500,
                               on_batch=stats.append)
        for i in range(5):
            assert await batcher.submit(i) == i * 2
        await batcher.close()

    run(main())
    assert [s.waited for s in stats] == [False] * 5


def test_per_item_errors_reach_only_their_caller() -> None:
    def handler(items: list[int]) -> list[Any]:
        return [ValueError(f"bad {i}") if i % 2 else i for i in items]

    async def main() -> list[Any]:
        batcher = MicroBatcher(handler, max_batch_size=8)
        out = await asyncio.gather(*(batcher.submit(i) for i in range(4)),
                                   return_exceptions=True)
        await batcher.close()
        return out

    out = run(main())
    assert out[0] == 0 and out[2] == 2
    assert isinstance(out[1], ValueError) and str(out[1]) == "bad 1"


def test_a_failing_handler_fails_the_whole_batch_but_not_the_batcher() -> None:
    calls = []

    def handler(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("model crashed")
        return items

    async def main() -> tuple[list[Any], int]:
        batcher = MicroBatcher(handler, max_batch_size=8)
        out = await asyncio.gather(*(batcher.submit(i) for i in range(3)),
                                   return_exceptions=True)
        after = await batcher.submit(7)
        await batcher.close()
        return out, after

    out, after = run(main())
    assert all(isinstance(o, RuntimeError) for o in out)
    assert after == 7


def test_a_full_queue_rejects_at_once() -> None:
    release = threading.Event()

    def handler(items: list[int]) -> list[int]:
        release.wait(5)
        return items

    async def main() -> None:
        batcher = MicroBatcher(handler, max_batch_size=1, max_queue=2)
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.02)  # taken by the worker: no longer queued
        queued = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0)
        assert batcher.queue_depth == 2
        with pytest.raises(QueueFull, match="overloaded: 2 requests are already waiting"):
            await batcher.submit(3)
        release.set()
        assert await asyncio.gather(first, *queued) == [0, 1, 2]
        await batcher.close()

    run(main())


def test_callers_that_went_away_are_skipped() -> None:
    handler = Recorder(delay=0.03)

    async def main() -> None:
        batcher = MicroBatcher(handler, max_batch_size=1)
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(batcher.submit(1))
        kept = asyncio.ensure_future(batcher.submit(2))
        await asyncio.sleep(0)
        gone.cancel()
        assert await first == 0 and await kept == 4
        await batcher.close()

    run(main())
    assert [b for b in handler.batches] == [[0], [2]]


def test_close_lets_queued_requests_finish() -> None:
    handler = Recorder(delay=0.01)

    async def main() -> list[int]:
        batcher = MicroBatcher(handler, max_batch_size=2)
        futures = [asyncio.ensure_future(batcher.submit(i)) for i in range(6)]
        await asyncio.sleep(0)
        await batcher.close()
        return await asyncio.gather(*futures)

    assert run(main()) == [0, 2, 4, 6, 8, 10]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(Recorder(), max_batch_size=0)
