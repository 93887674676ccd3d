"""Is the process that owns a RUNNING run still alive? Used to mark SIGKILLed runs FAILED."""

from __future__ import annotations

import os
import socket
from typing import Any

__all__ = ["HOST", "owner_is_dead", "process_start_ms"]

HOST = socket.gethostname()


def process_start_ms(pid: int | None = None) -> int:
    import psutil

    return int(psutil.Process(pid or os.getpid()).create_time() * 1000)


def owner_is_dead(row: Any, *, now_ms: int, stale_after_ms: int | None) -> bool:
    """True when ``row`` (a runs row) is RUNNING but its owner can no longer write to it.

    On this host: the owner pid is gone, or that pid now belongs to a process that started
    after the run's last heartbeat (pid reuse). The heartbeat, not ``start_time``, is the
    reference: a caller may give any start time (an imported run, a client's clock), while
    the heartbeat is the writer's own clock at creation and at every write. On other
    hosts we cannot see processes, so only a heartbeat older than ``stale_after_ms`` counts
    (when given).
    """
    if row.owner_host == HOST and row.owner_pid:
        import psutil

        try:
            proc = psutil.Process(row.owner_pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
            started = int(proc.create_time() * 1000)
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:
            return False
        return started > (row.heartbeat_time or row.start_time) + 1000
    if stale_after_ms is not None:
        last = row.heartbeat_time or row.start_time
        return now_ms - last > stale_after_ms
    return False
