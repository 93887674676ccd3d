"""The router: one serving state per arm behind one endpoint, choosing an arm per request.

:class:`RouterState` is the ``ServingState`` the model server's endpoints see
(``create_app(router)``). Each arm is a full serving state of its own (its version, its
micro-batcher), all writing to one prediction log with ``deployment`` and ``arm`` columns.
Per request: the strategy picks the arm (``_strategies.ArmChooser``), the arm answers (the
response names the version that answered), shadows get a copy afterwards, and the router
counts the outcome as evidence for the guards. A request addressed to one version
(``/v2/models/M/versions/V/…``) is *pinned*: the arm serving that version answers it,
bypassing the strategy (:data:`PINNED`, set by ``_app.py`` around the versioned routes).

What the deployment says is applied as a *view* (the revision, its arms, its chooser, its
evidence) that is replaced as a whole: a new revision's arms are loaded and warmed in the
background thread first, then one assignment switches new requests over, and arms no longer
used are drained and closed. Requests read the view once.

The background thread (``_worker.RouterWorker``) does all the I/O: writing assignments and
pulls, crediting feedback, polling the deployment and the shared arm statistics, deciding.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from shipyard import errors
from shipyard.deployments import ArmStats, Deployment, SingleStrategy
from shipyard.serving import (
    HTTPError,
    PredictionLog,
    PredictionResult,
    ServedModel,
    ServingConfig,
    ServingState,
    warm_up,
)

from ._evidence import Evidence, evidence_from_counts
from ._metrics import RouterMetrics
from ._records import Credit, PendingRecords, PredictionMemory
from ._shadow import ShadowCopier, ShadowCopy, compare_results
from ._strategies import ArmChooser, Route, serving_arms, shadow_arms, stable_of
from ._worker import RouterWorker

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from shipyard.client import Client

__all__ = ["RouterState", "RouterOptions", "Pinned", "PINNED"]

log = logging.getLogger("shipyard.rollout")


@dataclass(frozen=True)
class Pinned:
    """A request addressed to version ``version`` (its label), which arm ``arm`` serves."""

    arm: str
    version: str


#: The pin of the request being handled (None: the strategy chooses the arm).
PINNED: contextvars.ContextVar[Pinned | None] = contextvars.ContextVar(
    "shipyard_rollout_pinned", default=None)


@dataclass(frozen=True)
class RouterOptions:
    """The router's own knobs (``shipyard deployments serve`` options; short in tests)."""

    #: seconds between polls of the deployment (runtime changes) and the shared arm stats
    refresh_interval: float = 1.0
    #: seconds between guard evaluations (step / promote / rollback)
    control_interval: float = 1.0
    #: seconds between writes of assignments, pulls, feedback credits and shared evidence
    flush_interval: float = 1.0
    #: copies waiting per shadow arm; beyond it copies are dropped (and counted)
    shadow_queue: int = 1000
    #: prediction ids kept in memory to credit feedback without a database read
    remember: int = 100_000
    #: how long feedback waits for its prediction's assignment to appear (another worker)
    credit_wait: float = 30.0
    #: seconds an assignment is kept to credit late feedback (older ones are pruned);
    #: ``math.inf`` keeps them all
    assignment_retention: float = 7 * 24 * 3600.0
    #: seconds between prunings of assignments older than ``assignment_retention``
    prune_interval: float = 600.0
    #: whether this router takes automatic decisions (the deployment's ``auto`` too)
    decide: bool = True
    #: the actor recorded with automatic decisions
    actor: str = "router"
    #: seed of the arm-choice random generator (tests)
    seed: int | None = None


@dataclass(eq=False)
class View:
    """One revision as served: its arms (loaded), chooser, and evidence so far."""

    deployment: Deployment
    chooser: ArmChooser
    arms: dict[str, ServingState]
    primary: str
    evidence: Evidence
    baseline: dict[str, ArmStats] = field(default_factory=dict)

    @property
    def revision(self) -> int:
        return self.deployment.revision

    @property
    def records(self) -> bool:
        """Whether assignments are written (every strategy but a single arm)."""
        return not isinstance(self.deployment.strategy, SingleStrategy)


class RouterState(ServingState):
    """Serves deployment ``deployment`` (a name or a record) with ``config``'s serving knobs.

    Deliberately does not call ``ServingState.__init__``: the router serves no model of its
    own; ``served`` is the primary arm's model (what V2 metadata and ``/ready`` describe).
    Arms are loaded (and warmed) here, before the first request.
    """

    def __init__(self, deployment: str | Deployment, config: ServingConfig | None = None,
                 home: str | Path | None = None, *, client: Client | None = None,
                 options: RouterOptions | None = None, start: bool = True) -> None:
        from shipyard.client import Client

        self.client = client or Client()
        self.options = options or RouterOptions()
        self.config = config or ServingConfig()
        self.home = Path(home) if home is not None else Path(self.client.settings.home)
        dep = deployment if isinstance(deployment, Deployment) \
            else self.client.deployments.get(deployment)
        self.name = dep.name
        self.deployment = dep.name
        self.model = dep.model
        self.arm = None
        self.swaps = 0
        self._owns_predlog = True
        self.predlog = PredictionLog(
            self.home, dep.model, flush_interval=self.config.predlog_flush_interval,
            flush_rows=self.config.predlog_flush_rows) if self.config.log_predictions else None
        self.router_metrics = RouterMetrics(dep.model, dep.name, self._arm_registries)
        self.metrics = self.router_metrics
        self.rng = random.Random(self.options.seed)
        self.memory = PredictionMemory(self.options.remember)
        self.pending = PendingRecords()
        self.credits: collections.deque[Credit] = collections.deque()
        #: evidence of revisions no longer served, until what they counted is shared
        self.retired_evidence: list[Evidence] = []
        #: the revision and shared evidence totals ({arm: {counter: total}}) that the
        #: control loop read last
        self.shared_totals: tuple[int, dict[str, dict[str, float]]] = (0, {})
        self.shadows = ShadowCopier(self.options.shadow_queue, self._shadow_answered,
                                    batch=self.config.max_batch_size)
        self.stats: dict[str, ArmStats] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.RLock()  # one background operation at a time
        with contextlib.suppress(Exception):  # the database may be down for a moment
            self.stats = self.client.deployments.arm_stats(dep.name)
        self.view = self._build(dep, None)
        self.ready = True
        self.worker = RouterWorker(self)
        if start:
            self.worker.start()

    # -- what the endpoints use --------------------------------------------------------------

    @property
    def served(self) -> ServedModel:
        """The primary (stable) arm's model: what V2 metadata and ``/ready`` describe; in a
        request pinned to a version, the model of the arm serving it."""
        view = self.view
        pin = PINNED.get()
        if pin is not None:
            state = view.arms.get(pin.arm)
            if state is not None:
                return state.served
        return view.arms[view.primary].served

    def arm_for_version(self, version: str) -> str | None:
        """The arm of the served revision whose version is ``version`` (a label): the
        primary if it is, else the first such arm; None when no arm serves it."""
        return _arm_for_version(self.view, version)

    async def predict(self, data: Any, rows: int, *, want_proba: bool, endpoint: str,
                      request_id: str, started: float, explain: bool = False,
                      routing_key: str | None = None) -> PredictionResult:
        self._loop = asyncio.get_running_loop()
        view = self.view
        if view.deployment.status == "stopped":
            raise HTTPError(503, "UNAVAILABLE", f"deployment {self.name!r} is stopped; "
                            "`shipyard deployments update` starts it again")
        pin = PINNED.get()
        if pin is None:
            route = view.chooser.choose(routing_key, self.stats)
        else:
            route = Route(self._pinned_arm(view, pin))
        try:
            result = await view.arms[route.arm].predict(
                data, rows, want_proba=want_proba, endpoint=endpoint, request_id=request_id,
                started=started, explain=explain, routing_key=routing_key)
        except errors.ShipyardError:
            raise  # the caller's input (4xx): not the arm's fault
        except HTTPError as exc:
            if exc.status == 503 and view is not self.view:  # its arm closed meanwhile
                return await self.predict(data, rows, want_proba=want_proba,
                                          endpoint=endpoint, request_id=request_id,
                                          started=started, explain=explain,
                                          routing_key=routing_key)
            self._failed(view, route.arm)
            raise
        except Exception:
            self._failed(view, route.arm)
            raise
        view.evidence.answered(route.arm, (time.perf_counter() - started) * 1000)
        self.router_metrics.child(self.router_metrics.arm_requests, route.arm, "ok").inc()
        if pin is not None:
            self.router_metrics.child(self.router_metrics.pinned, route.arm).inc()
        self.memory.add(result.prediction_ids, route.arm, view.revision, result.predictions)
        if view.records:
            self.pending.add(result.prediction_ids, route.arm, view.revision)
        for arm in route.shadows:
            copy = ShadowCopy(view.arms[arm], data, rows, want_proba, request_id, result)
            if not self.shadows.offer(arm, copy):
                view.evidence.dropped(arm)
                self.router_metrics.child(self.router_metrics.shadow_copies, arm, "dropped").inc()
        return result

    def _pinned_arm(self, view: View, pin: Pinned) -> str:
        """The arm that answers a pinned request in ``view`` (the revision may have changed
        since the request was matched: the version is what counts)."""
        state = view.arms.get(pin.arm)
        if state is not None and state.served.version_label == pin.version:
            return pin.arm
        arm = _arm_for_version(view, pin.version)
        if arm is None:
            raise errors.NotFound(f"version {pin.version} of {self.model!r} is not served by "
                                  f"deployment {self.name!r} any more")
        return arm

    def _failed(self, view: View, arm: str) -> None:
        view.evidence.failed(arm)
        self.router_metrics.child(self.router_metrics.arm_requests, arm, "error").inc()

    async def record_feedback(self, prediction_id: str, *, label: Any,
                              reward: float | None) -> bool:
        """Log the feedback, then queue it for crediting the arm that made the prediction
        (the background thread finds the arm: this worker's memory, else the database)."""
        if self.predlog is not None and not await super().record_feedback(
                prediction_id, label=label, reward=reward):
            return False
        self.credits.append(Credit(prediction_id, label, reward))
        return True

    async def swap(self, new: ServedModel) -> None:
        raise errors.Conflict(f"deployment {self.name!r} changes through `shipyard "
                              "deployments update`, not by swapping one model")

    async def close(self) -> None:
        """Stop the background thread, flush what is pending, close the arms and the log."""
        self.ready = False
        self.worker.stop()
        if self.worker.is_alive():
            await run_in_threadpool(self.worker.join, 30)
        await self.shadows.wait_idle(timeout=5)
        await self.shadows.close()
        for state in list(self.view.arms.values()):
            await state.close()
        try:  # what is still queued: assignments, pulls, rewards, evidence
            await run_in_threadpool(self.worker.flush, True)
        except Exception:  # noqa: BLE001 - closing goes on; say what was lost
            log.exception("router %s: the last flush failed; what it held is lost", self.name)
        if self.predlog is not None:
            await run_in_threadpool(self.predlog.close)

    # -- shadows -----------------------------------------------------------------------------

    def _shadow_answered(self, arm: str, copy: ShadowCopy,
                         outcome: PredictionResult | BaseException, latency_ms: float) -> None:
        view = self.view
        if copy.state is not view.arms.get(arm):
            return  # a copy for an arm of an older revision: its evidence is gone
        if isinstance(outcome, BaseException):
            view.evidence.failed(arm)
            self.router_metrics.child(self.router_metrics.shadow_copies, arm, "failed").inc()
            return
        view.evidence.answered(arm, latency_ms)
        rows, agreed, proba_rows, diff = compare_results(copy.primary, outcome)
        view.evidence.compared(arm, rows, agreed, proba_rows, diff)
        self.memory.add_shadow(copy.primary.prediction_ids, arm, outcome.predictions)
        m = self.router_metrics
        m.child(m.shadow_copies, arm, "compared").inc()
        m.child(m.shadow_rows, arm).inc(rows)
        m.child(m.shadow_agreed, arm).inc(agreed)
        m.child(m.shadow_diff, arm).inc(diff)
        agreement, mean_diff = view.evidence.shadow_rates(arm)
        if agreement is not None:
            m.child(m.shadow_agreement, arm).set(agreement)
        if mean_diff is not None:
            m.child(m.shadow_mean_diff, arm).set(mean_diff)

    async def wait_for_shadows(self, timeout: float = 10.0) -> None:
        """Until every queued shadow copy has been answered (tests, demos)."""
        await self.shadows.wait_idle(timeout)

    # -- views (the background thread) -------------------------------------------------------

    def _arm_registries(self) -> list[CollectorRegistry]:
        view = getattr(self, "view", None)
        return [s.metrics.registry for s in view.arms.values()] if view else []

    def _build(self, dep: Deployment, previous: View | None) -> View:
        """The view of ``dep``: arms reused when their version is unchanged, else loaded and
        warmed here (raises, changing nothing, when one cannot be)."""
        strategy = dep.strategy
        names = list(dict.fromkeys([*serving_arms(strategy), *shadow_arms(strategy)]))
        arms: dict[str, ServingState] = {}
        for name in names:
            version = dep.arm(name).version
            old = previous.arms.get(name) if previous else None
            if old is not None and old.served.version == version:
                arms[name] = old
                continue
            served = ServedModel.load(f"models:/{dep.model}/{version}", self.client)
            warm_up(served)
            arms[name] = ServingState(served, self.config, self.home, deployment=dep.name,
                                      arm=name, predlog=self.predlog)
        primary = stable_of(strategy) or serving_arms(strategy)[0]
        chooser = ArmChooser(strategy, salt=dep.name, rng=self.rng)
        self.router_metrics.child(self.router_metrics.revision).set(dep.revision)
        evidence = Evidence(dep.revision, share=not isinstance(strategy, SingleStrategy))
        return View(dep, chooser, arms, primary, evidence, dict(self.stats))

    def apply(self, dep: Deployment) -> bool:
        """Serve ``dep`` from now on if it is a newer revision; True when switched."""
        with self._lock:
            previous = self.view
            if dep.revision <= previous.revision:
                return False
            view = self._build(dep, previous)
            self.view = view
            if previous.evidence.share:
                self.retired_evidence.append(previous.evidence)
            retired = [s for s in previous.arms.values()
                       if all(s is not t for t in view.arms.values())]
            log.info("deployment %s: serving revision %d (%s)", dep.name, dep.revision,
                     dep.strategy.kind)
        for state in retired:
            self._close_later(state)
        return True

    def _close_later(self, state: ServingState) -> None:
        """Drain and close an arm that no revision uses any more, on the serving loop."""
        loop = self._loop
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(state.close(), loop)
        elif loop is None:
            asyncio.run(state.close())  # never served a request: nothing is bound to a loop

    def describe(self) -> dict[str, Any]:
        """The view in plain data: revision, strategy, arms and their versions, and the
        evidence — this worker's own, and the totals of every worker as the control loop
        last read them (``shared_evidence``; empty until it has)."""
        view = self.view
        revision, totals = self.shared_totals
        if revision != view.revision:
            totals = {}
        return {"deployment": self.name, "revision": view.revision,
                "status": view.deployment.status, "strategy": view.deployment.strategy.kind,
                "arms": {a: s.served.version for a, s in view.arms.items()},
                "evidence": {a: view.evidence.of(a, self.stats.get(a), view.baseline.get(a))
                             for a in view.arms},
                "shared_evidence": {a: evidence_from_counts(totals[a], self.stats.get(a),
                                                            view.baseline.get(a))
                                    for a in view.arms if a in totals},
                "worker": os.getpid()}


def _arm_for_version(view: View, version: str) -> str | None:
    for arm in dict.fromkeys([view.primary, *view.arms]):
        if view.arms[arm].served.version_label == version:
            return arm
    return None
