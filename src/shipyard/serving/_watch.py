"""Following an alias: a server started with ``NAME@ALIAS`` serves whatever the alias names.

Each worker process polls the registry every ``watch_interval`` seconds (resolving an alias
is one indexed read) and, when the alias has moved, loads the new version off the event
loop and hands it to :meth:`ServingState.swap`, which warms it and switches with no failed
request. A version that fails to load or warm is logged and tried again after a back-off;
the server keeps serving what it has, and a later move of the alias is picked up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from ._model import ServedModel, resolve_model_ref

if TYPE_CHECKING:
    from shipyard.client import Client
    from shipyard.registry import RegistryService

    from ._state import ServingState

__all__ = ["AliasWatcher", "is_alias_ref"]

log = logging.getLogger("shipyard.serving")
_MAX_BACKOFF = 60.0


def is_alias_ref(ref: str) -> bool:
    """Whether ``ref`` (``NAME@ALIAS`` or a ``models:/`` URI) names an alias."""
    from shipyard.registry import parse_model_uri

    return parse_model_uri(resolve_model_ref(ref)).kind == "alias"


class AliasWatcher:
    """Swaps ``state`` to the version ``ref`` (an alias) names, checking every ``interval`` s."""

    def __init__(self, state: ServingState, ref: str, *, interval: float,
                 client: Client | None = None) -> None:
        if interval <= 0:
            raise ValueError("the watch interval must be > 0")
        self.state = state
        self.uri = resolve_model_ref(ref)
        self.interval = interval
        self._client = client
        self._task: asyncio.Task[None] | None = None
        self._failed: dict[int, tuple[float, float]] = {}  # version -> (retry at, back-off)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name="shipyard-alias-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        last_error = ""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception as exc:  # noqa: BLE001 - the registry may be down for a moment
                error = f"{type(exc).__name__}: {exc}"
                if error != last_error:  # once per distinct problem, not every interval
                    log.warning("could not check %s (%s); still serving version %s",
                                self.uri, error, self.state.served.version_label)
                last_error = error
            else:
                if last_error:
                    log.warning("checking %s works again", self.uri)
                last_error = ""

    async def check(self) -> bool:
        """Resolve the alias once; swap when it names another version. True if swapped."""
        target = await run_in_threadpool(self._registry().resolve, self.uri)
        if target.version == self.state.served.version:
            return False
        retry_at, backoff = self._failed.get(target.version, (0.0, 0.0))
        if time.monotonic() < retry_at:
            return False
        try:
            new = await run_in_threadpool(ServedModel.load, target.uri, self._client)
            await self.state.swap(new)
        except Exception:  # noqa: BLE001 - a bad version must not take the server down
            backoff = min(max(backoff * 2, self.interval, 1.0), _MAX_BACKOFF)
            self._failed[target.version] = (time.monotonic() + backoff, backoff)
            log.exception("%s moved to version %s, which could not be loaded; still serving "
                          "version %s, retrying in %.0f s", self.uri, target.version,
                          self.state.served.version_label, backoff)
            return False
        self._failed.pop(target.version, None)
        return True

    def _registry(self) -> RegistryService:
        if self._client is None:
            from shipyard.client import Client

            self._client = Client()
        return self._client.registry
