"""`shipyard serve` as a real subprocess, and steady client load against it (swap/worker tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .conftest import free_port


class ServeProcess:
    """``shipyard serve <args>`` on a free port; stopped with SIGINT (a graceful shutdown)."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "shipyard.cli", "serve", *args,
                     "--port", str(self.port)]
        self.env = {**os.environ, "SHIPYARD_HOME": str(home), **(env or {})}
        self.output = ""
        self.proc: subprocess.Popen[str] | None = None
        # One client (building an SSL context per call costs ~50 ms), no keep-alive: every
        # call is a new connection, which any worker may accept.
        self.http = httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))

    def __enter__(self) -> ServeProcess:
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.wait_for(lambda: self.get("/v2/health/ready").status_code == 200, "ready")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        assert self.proc is not None
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.output = self.proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.output = self.proc.communicate()[0]

    def worker_pids(self, want: int, timeout: float = 60) -> set[int]:
        """The worker processes seen answering /health, polled until ``want`` have answered
        (each call is a new connection; a worker still starting answers nothing)."""
        seen: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < want and time.monotonic() < deadline:
            try:
                seen.add(self.get("/health").json()["pid"])
            except httpx.TransportError:
                time.sleep(0.01)
        return seen

    def get(self, path: str) -> httpx.Response:
        return self.http.get(f"{self.url}{path}")

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.http.post(f"{self.url}{path}", json=body)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"shipyard serve exited: {self.proc.communicate()[0]}")
            try:
                if condition():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.01)
        raise AssertionError(f"shipyard serve: not {what} after {timeout} s")


@dataclass
class Load:
    """``threads`` clients posting ``body`` to ``url`` back to back until stopped."""

    url: str
    body: dict[str, Any]
    threads: int = 4
    keep_alive: bool = True
    ok: list[int] = field(default_factory=list)  # model_version of each success
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        self._workers = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)

    def wait_for_successes(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        start = len(self.ok)
        while len(self.ok) < start + n and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        limits = None if self.keep_alive else httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=30, **({"limits": limits} if limits else {})) as client:
            while not self._stop.is_set():
                try:
                    r = client.post(self.url, json=self.body)
                except httpx.TransportError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if r.status_code == 200:
                    self.ok.append(r.json()["model_version"])
                else:
                    self.failures.append(f"{r.status_code}: {r.text[:200]}")


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))
