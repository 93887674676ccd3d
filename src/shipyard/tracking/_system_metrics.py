"""Background sampling of CPU and memory into ``system/…`` metrics of a run."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["SystemMetricsSampler"]


class SystemMetricsSampler:
    """Calls ``log(metrics, step)`` every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, log: Callable[..., None], interval: float = 10.0) -> None:
        self.log = log
        self.interval = interval
        self.samples_ = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> dict[str, float]:
        import psutil

        vm = psutil.virtual_memory()
        proc = psutil.Process()
        return {
            "system/cpu_utilization_percentage": float(psutil.cpu_percent(interval=None)),
            "system/system_memory_usage_megabytes": (vm.total - vm.available) / 2**20,
            "system/system_memory_usage_percentage": float(vm.percent),
            "system/process_rss_megabytes": proc.memory_info().rss / 2**20,
        }

    def start(self) -> SystemMetricsSampler:
        import psutil

        psutil.cpu_percent(interval=None)  # prime: the first call always returns 0.0
        self._thread = threading.Thread(target=self._loop, name="shipyard-sysmetrics",
                                        daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._log_once()

    def _log_once(self) -> None:
        try:
            self.log(self.sample(), step=self.samples_)
            self.samples_ += 1
        except Exception:  # noqa: BLE001 - sampling must never break the user's run
            self._stop.set()

    def stop(self) -> None:
        """Stop sampling; takes one last sample so short runs still get a point."""
        if self._thread is None or self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._log_once()
