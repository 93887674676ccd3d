"""The router's background thread: everything that talks to the database.

Three duties, each on its own interval (``RouterOptions``):

- **flush**: write the assignments and pulls the event loop queued (batched: one write per
  interval, never on the request path); credit queued feedback to its arm — found in this
  worker's memory, else through ``assignment_of`` (a prediction another worker made; an
  assignment not written yet is retried for ``credit_wait`` seconds) — with one
  ``record_rewards`` transaction for all of them; and add the evidence counted since the
  last flush to the totals every worker shares (``record_evidence``). What fails to be
  written is kept and written at the next flush; closing the router flushes once more;
- **refresh**: read the deployment and the shared arm statistics; a new revision is
  loaded, warmed and switched to (``RouterState.apply``) — how ``shipyard deployments
  update`` reaches a running server, and how every worker follows one worker's decision;
- **control**: share this worker's evidence, read the totals of every worker,
  :func:`~._control.decide`, and carry the decision out through the deployment service
  with the revision as an optimistic lock (a ``Conflict`` means another worker decided
  first: nothing to do);
- **prune**: forget the assignments older than ``assignment_retention`` (one row is
  written per prediction; they only serve to credit late feedback).

A thread rather than an asyncio task: the work is blocking I/O and model loading, and it
must go on while no request arrives.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shipyard import errors
from shipyard.deployments import BanditStrategy

from ._control import decide, judged
from ._evidence import evidence_from_counts
from ._records import Credit, reward_for, same_label

if TYPE_CHECKING:
    from shipyard.deployments import Deployment

    from ._router import RouterState

__all__ = ["RouterWorker"]

log = logging.getLogger("shipyard.rollout")
_MAX_BACKOFF = 60.0
#: assignments one prune call deletes at most (20 transactions of 5,000)
PRUNE_LIMIT = 100_000
_MAX_WAITING = 50_000


class RouterWorker(threading.Thread):
    """Flushes, refreshes and decides for ``router`` until :meth:`stop`."""

    def __init__(self, router: RouterState) -> None:
        super().__init__(daemon=True, name=f"shipyard-router-{router.name}")
        self.router = router
        opts = router.options
        self.intervals = {"flush": opts.flush_interval, "refresh": opts.refresh_interval,
                          "control": opts.control_interval, "prune": opts.prune_interval}
        self.tick = max(0.01, min(0.25, min(self.intervals.values()) / 2))
        self.pruned = 0  # assignments this worker pruned
        self._halt = threading.Event()
        self._waiting: list[Credit] = []
        self._rewards: list[tuple[str, float, bool | None]] = []  # resolved, not written
        self._backoff: dict[str, tuple[float, float]] = {}  # duty -> (retry at, delay)

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        due = dict.fromkeys(self.intervals, 0.0)
        duties: dict[str, Callable[[], object]] = {
            "flush": self.flush, "refresh": self.refresh, "control": self.control,
            "prune": self.prune}
        while not self._halt.wait(self.tick):
            for name, duty in duties.items():
                now = time.monotonic()
                if now < due[name] or now < self._backoff.get(name, (0.0, 0.0))[0]:
                    continue
                due[name] = now + self.intervals[name]
                try:
                    if duty() is True:  # more of the same work waiting (prune)
                        due[name] = 0.0
                    self._backoff.pop(name, None)
                except Exception:  # noqa: BLE001 - keep serving; try again after a pause
                    delay = min(max(self._backoff.get(name, (0.0, 0.5))[1] * 2, 1.0),
                                _MAX_BACKOFF)
                    self._backoff[name] = (time.monotonic() + delay, delay)
                    log.exception("router %s: %s failed; retrying in %.0f s",
                                  self.router.name, name, delay)

    # -- prune ---------------------------------------------------------------------------------

    def prune(self) -> bool:
        """Forget this deployment's assignments older than the retention, at most
        :data:`PRUNE_LIMIT` a call (the other duties share this thread); True when more
        may be left, so that the next tick goes on at once."""
        router = self.router
        retention = router.options.assignment_retention
        if math.isinf(retention):
            return False
        done = router.client.deployments.prune_assignments(router.name, retention,
                                                           limit=PRUNE_LIMIT)
        self.pruned += done
        return done >= PRUNE_LIMIT

    # -- flush ---------------------------------------------------------------------------------

    def flush(self, final: bool = False) -> None:
        """Write pending assignments and pulls, credit the feedback received, and share the
        evidence counted since the last flush."""
        router = self.router
        with router._lock:  # noqa: SLF001 - the router's own background lock
            self._write_assignments()
            self._credit_feedback(final)
            self.share_evidence()

    def _write_assignments(self) -> None:
        router = self.router
        service = router.client.deployments
        rows, pulls = router.pending.take()
        known_arms = set(router.view.deployment.arm_names)
        pulls = {arm: n for arm, n in pulls.items() if arm in known_arms and n}
        try:
            if rows:
                service.record_assignments(router.name, rows)
            if pulls:
                service.record_pulls(router.name, pulls)
        except errors.NotFound:
            log.warning("router %s: the deployment is gone; %d assignments dropped",
                        router.name, len(rows))
        except Exception:
            router.pending.put_back(rows, pulls)
            raise

    def _credit_feedback(self, final: bool) -> None:
        """Find the arm of each piece of feedback received, then credit them all at once."""
        router = self.router
        waiting, self._waiting = self._waiting, []
        while router.credits:
            waiting.append(router.credits.popleft())
        for i, credit in enumerate(waiting):
            try:
                if not self._resolve(credit, final):
                    self._waiting.append(credit)
            except Exception:
                self._waiting.extend(waiting[i:])
                raise
        if len(self._waiting) > _MAX_WAITING:
            del self._waiting[:len(self._waiting) - _MAX_WAITING]
        if len(self._rewards) > _MAX_WAITING:
            log.warning("router %s: %d rewards could not be written for long; dropped",
                        router.name, len(self._rewards) - _MAX_WAITING)
            del self._rewards[:len(self._rewards) - _MAX_WAITING]
        self._write_rewards()

    def _resolve(self, credit: Credit, final: bool) -> bool:
        """Find the arm of one piece of feedback and queue its reward; False to try again
        later (its prediction's assignment is not known yet)."""
        router = self.router
        metrics = router.router_metrics
        known = router.memory.get(credit.prediction_id)
        if known is not None:
            arm = known.arm
        else:
            found = router.client.deployments.assignment_of(credit.prediction_id)
            if found is None or found[0] != router.name:
                if found is None and not final and \
                        time.monotonic() - credit.since < router.options.credit_wait:
                    return False
                metrics.child(metrics.feedback, "unknown_prediction").inc()
                return True
            arm = found[1]
        view = router.view
        if known is not None and credit.label is not None and known.revision == view.revision:
            view.evidence.labelled(arm, same_label(known.prediction, credit.label))
            for shadow, prediction in known.shadows.items():
                view.evidence.labelled(shadow, same_label(prediction, credit.label))
        strategy = view.deployment.strategy
        field = strategy.reward if isinstance(strategy, BanditStrategy) else "reward"
        value = reward_for(credit, known, field)
        if value is None:
            metrics.child(metrics.feedback, "no_reward").inc()
            return True
        self._rewards.append((arm, value, value > 0))
        return True

    def _write_rewards(self) -> None:
        """One ``record_rewards`` transaction for every reward resolved so far."""
        rows = self._rewards
        if not rows:
            return
        router = self.router
        metrics = router.router_metrics
        service = router.client.deployments
        try:
            service.record_rewards(router.name, rows)
        except errors.NotFound as exc:
            if exc.field != "arm":  # the deployment is gone
                log.warning("router %s: the deployment is gone; %d rewards dropped",
                            router.name, len(rows))
                self._rewards = []
                return
            # an arm was removed from the deployment since: credit the others
            arms = set(service.get(router.name).arm_names)
            kept = [row for row in rows if row[0] in arms]
            metrics.child(metrics.feedback, "unknown_arm").inc(len(rows) - len(kept))
            if kept:
                service.record_rewards(router.name, kept)
            rows = kept
        self._rewards = []
        metrics.child(metrics.feedback, "credited").inc(len(rows))

    def share_evidence(self) -> None:
        """Add what this worker counted since its last call to the shared totals (the
        revisions it served since, too), one transaction per revision."""
        router = self.router
        service = router.client.deployments
        current = router.view.evidence
        for evidence in [*router.retired_evidence, current]:
            deltas = evidence.unshared() if evidence.share else {}
            if deltas:
                try:
                    service.record_evidence(router.name, evidence.revision, deltas)
                except errors.NotFound:
                    log.warning("router %s: the deployment is gone; evidence dropped",
                                router.name)
                evidence.shared(deltas)
            if evidence is not current:
                router.retired_evidence.remove(evidence)

    # -- refresh -------------------------------------------------------------------------------

    def refresh(self) -> Deployment:
        """Read the deployment and the arm stats; switch to a newer revision."""
        router = self.router
        service = router.client.deployments
        dep = service.get(router.name)
        router.stats = service.arm_stats(router.name)
        if dep.revision > router.view.revision:
            router.apply(dep)
        return dep

    # -- control -------------------------------------------------------------------------------

    def control(self) -> str | None:
        """Decide once; the action taken ("step", "promote", "rollback") or None."""
        router = self.router
        if not router.options.decide:
            return None
        with router._lock:  # noqa: SLF001 - the router's own background lock
            view = router.view
            dep = view.deployment
            if not judged(dep):
                return None
            service = router.client.deployments
            self.share_evidence()  # this worker's latest counts are in the totals read next
            totals = service.evidence(router.name, view.revision) if view.evidence.share \
                else {arm: view.evidence.counts(arm) for arm in view.arms}
            router.shared_totals = (view.revision, totals)
            evidence = {arm: evidence_from_counts(totals.get(arm, {}), router.stats.get(arm),
                                                  view.baseline.get(arm))
                        for arm in view.arms}
            action = decide(dep, evidence, int(time.time() * 1000))
            if action is None:
                return None
            proof = {**action.evidence, "worker": os.getpid()}
            common: dict[str, Any] = {"evidence": proof, "actor": router.options.actor,
                      "reason": action.reason, "revision": dep.revision}
            try:
                if action.kind == "step":
                    new = service.step(router.name, **common)
                elif action.kind == "promote":
                    assert action.arm is not None
                    new = service.promote(router.name, action.arm, **common)
                else:
                    new = service.rollback(router.name, **common)
            except errors.Conflict as exc:
                log.info("router %s: %s not applied: %s", router.name, action.kind,
                         exc.message)
                return None
            log.info("router %s: %s (%s)", router.name, action.kind, action.reason)
            router.router_metrics.child(router.router_metrics.decisions, action.kind).inc()
            router.apply(new)
            return action.kind
