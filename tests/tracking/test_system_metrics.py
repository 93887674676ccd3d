"""System metrics sampling into ``system/…`` metrics."""

from __future__ import annotations

import threading
import time
from typing import Any

from shipyard.tracking import SystemMetricsSampler


def test_sample_has_system_metrics() -> None:
    sample = SystemMetricsSampler(lambda *a, **k: None).sample()
    assert set(sample) == {"system/cpu_utilization_percentage",
                           "system/system_memory_usage_megabytes",
                           "system/system_memory_usage_percentage",
                           "system/process_rss_megabytes"}
    assert all(isinstance(v, float) and v >= 0 for v in sample.values())
    assert 0 < sample["system/system_memory_usage_percentage"] <= 100


def test_sampler_logs_until_stopped_and_once_more_at_stop() -> None:
    calls: list[tuple[dict[str, float], int]] = []
    enough = threading.Event()

    def log(metrics: dict[str, float], step: int) -> None:
        calls.append((metrics, step))
        if len(calls) >= 3:
            enough.set()

    sampler = SystemMetricsSampler(log, interval=0.01).start()
    assert enough.wait(30)
    sampler.stop()
    count = len(calls)
    assert [step for _, step in calls] == list(range(count))
    time.sleep(0.05)
    assert len(calls) == count  # nothing after stop
    sampler.stop()  # idempotent
    assert len(calls) == count


def test_a_failing_log_stops_sampling_quietly() -> None:
    calls: list[Any] = []

    def log(metrics: dict[str, float], step: int) -> None:
        calls.append(step)
        raise RuntimeError("database gone")

    sampler = SystemMetricsSampler(log, interval=0.01).start()
    deadline = time.monotonic() + 30
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    assert calls == [0]
    assert sampler.samples_ == 0
