"""The deployment service: create and change deployments, audited; shared arm state.

Every change of a deployment (create, update, step, promote, rollback, stop) writes, in one
transaction, the new state, a revision row, a decision (reason + evidence), an audit event
and lineage edges deployment → model version. Refs are resolved through the registry once,
before anything is written: a bad spec writes nothing.
"""

from __future__ import annotations

import builtins
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shipyard import errors
from shipyard.store import add_edge, now_ms, record_event

from ._spec import (
    ArmStats,
    CanaryStrategy,
    Decision,
    DecisionAction,
    Deployment,
    DeploymentStatus,
    Guard,
    SingleStrategy,
    Strategy,
)
from ._store import DeploymentStore
from ._validate import (
    check_count,
    check_deployment_name,
    check_guards,
    check_revision,
    check_spec,
    evidence_rows,
    resolve_arms,
    reward_deltas,
    reward_totals,
)

if TYPE_CHECKING:
    from shipyard.registry import RegistryService

__all__ = ["DeploymentService", "DEFAULT_PROMOTE_ALIAS"]

#: The alias promote moves when the stable arm was not given by alias.
DEFAULT_PROMOTE_ALIAS = "champion"


class DeploymentService:
    """Deployments of registered models: spec, revisions, decisions, arm state."""

    def __init__(self, registry: RegistryService) -> None:
        self.registry = registry
        self.db = registry.db
        self.actor = registry.actor
        self.store = DeploymentStore()

    # -- reading -----------------------------------------------------------------------------

    def get(self, name: str, revision: int | None = None) -> Deployment:
        """The deployment as it is now, or as it was at ``revision``."""
        with self.db.read() as conn:
            if revision is None:
                return self.store.get(conn, name)
            return self.store.get_revision(conn, name, int(revision))

    def list(self) -> builtins.list[Deployment]:
        """Every deployment, by name."""
        with self.db.read() as conn:
            return self.store.all(conn)

    def decisions(self, name: str, limit: int | None = None) -> builtins.list[Decision]:
        """The deployment's decisions, oldest first (``limit``: only the last ones)."""
        if limit is not None and limit < 1:
            raise errors.InvalidInput("limit must be at least 1", field="limit")
        with self.db.read() as conn:
            if not self.store.exists(conn, name):
                raise errors.NotFound(f"deployment {name!r} does not exist", field="name")
            return self.store.decisions(conn, name, limit)

    # -- changing the spec -------------------------------------------------------------------

    def create(self, name: str, model: str, arms: Mapping[str, str | int],
               strategy: Strategy | Mapping[str, Any],
               guards: Sequence[Guard | Mapping[str, Any]] | None = None,
               auto: bool = True) -> Deployment:
        """A new deployment of ``model``: ``arms`` maps arm names to refs (``"@champion"``,
        ``"champion"``, ``"3"``, ``"latest"``), each pinned to the version it names now."""
        check_deployment_name(name)
        pinned = resolve_arms(self.registry, model, arms)
        now = now_ms()
        dep = check_spec(
            name=name, model=model, arms=pinned, strategy=strategy,
            guards=check_guards(guards or []), auto=auto, revision=1, status="active",
            created_at=now, updated_at=now, created_by=self.actor)
        with self.db.write() as conn:
            if self.store.exists(conn, name):
                raise errors.AlreadyExists(f"deployment {name!r} already exists", field="name")
            self.store.save(conn, dep, self.actor, new=True)
            self.store.init_arms(conn, name, dep.arm_names)
            self._decide(conn, dep, "create", None, "", {}, self.actor,
                         {"model": model, "arms": {a.name: a.version for a in pinned},
                          "strategy": dep.strategy.kind})
        return dep

    def update(self, name: str, *, arms: Mapping[str, str | int] | None = None,
               strategy: Strategy | Mapping[str, Any] | None = None,
               guards: Sequence[Guard | Mapping[str, Any]] | None = None,
               auto: bool | None = None, reason: str = "") -> Deployment:
        """Change any part of the spec (revision + 1; the deployment is active again).

        ``arms`` replaces the whole arm set and re-pins every ref (an alias that moved
        since is followed); left out, the arms keep their pinned versions.
        """
        current = self.get(name)
        pinned = (resolve_arms(self.registry, current.model, arms) if arms is not None
                  else current.arms)
        checked_guards = check_guards(guards) if guards is not None else current.guards
        with self.db.write() as conn:
            current = self._locked(conn, name, None)
            dep = check_spec(
                **{**current.model_dump(exclude={"arms", "strategy", "guards"}),
                   "arms": pinned, "guards": checked_guards,
                   "strategy": current.strategy if strategy is None else strategy,
                   "auto": current.auto if auto is None else auto,
                   "revision": current.revision + 1, "status": "active",
                   "updated_at": now_ms()})
            diff = _diff(current, dep)
            if not diff and current.status == "active":
                raise errors.InvalidInput(f"update of {name!r} changes nothing", field="name")
            self.store.save(conn, dep, self.actor, new=False)
            self.store.init_arms(conn, name, dep.arm_names)
            self._decide(conn, dep, "update", None, reason, {}, self.actor, {"changed": diff})
        return dep

    def step(self, name: str, *, evidence: dict[str, Any] | None = None,
             actor: str | None = "router", reason: str = "",
             revision: int | None = None) -> Deployment:
        """Move a canary to its next step.

        ``revision``: refuse (Conflict) unless the deployment is still at that revision, so
        that of several router workers deciding at once only one step applies.
        """
        with self.db.write() as conn:
            current = self._locked(conn, name, revision)
            strategy = current.strategy
            if current.status != "active" or not isinstance(strategy, CanaryStrategy):
                raise errors.Conflict(f"deployment {name!r} is not an active canary "
                                      f"({current.status}, {strategy.kind})")
            nxt = strategy.next_percent()
            if nxt is None:
                raise errors.Conflict(f"the canary of {name!r} is at its last step "
                                      f"({strategy.percent:g}%)")
            dep = self._next(current, strategy.model_copy(update={"percent": nxt}), "active")
            self._save_decision(conn, dep, "step", strategy.canary,
                                reason or f"canary {strategy.percent:g}% -> {nxt:g}%",
                                evidence, actor, {"from": strategy.percent, "to": nxt})
        return dep

    def promote(self, name: str, arm: str, *, evidence: dict[str, Any] | None = None,
                actor: str | None = None, reason: str = "",
                revision: int | None = None) -> Deployment:
        """Make ``arm`` the only arm serving, and move the model's alias to its version.

        The alias moved is the one the stable arm's ref named (``@champion`` → champion),
        else ``champion``. The alias moves through the registry (its policies may refuse,
        its own audit event is written) in the same transaction as the deployment's change:
        both happen or neither.
        """
        current = self.get(name)
        if revision is not None and current.revision != revision:
            raise self._stale(current, revision)
        if current.status == "stopped":
            raise errors.Conflict(f"deployment {name!r} is stopped; update it first")
        try:
            target = current.arm(arm)
        except KeyError:
            raise errors.InvalidInput(f"deployment {name!r} has no arm {arm!r} (arms: "
                                      f"{', '.join(current.arm_names)})", field="arm") from None
        alias = current.arm(current.stable_arm).alias or DEFAULT_PROMOTE_ALIAS
        with self.db.write() as conn:
            current = self._locked(conn, name, revision)
            previous = self.registry.store.alias_version(conn, current.model, alias)
            if previous != target.version:
                self.registry.set_alias_in(conn, current.model, alias, target.version,
                                           reason=f"deployment {name}: promote {arm}")
            dep = self._next(current, SingleStrategy(arm=arm), "promoted")
            moved = (f"{current.model}@{alias}: "
                     f"{'unset' if previous is None else f'v{previous}'} -> v{target.version}")
            self._save_decision(conn, dep, "promote", arm,
                                f"{reason or f'promote {arm}'} ({moved})", evidence, actor,
                                {"alias": alias, "from": previous, "to": target.version})
        return dep

    def rollback(self, name: str, *, evidence: dict[str, Any] | None = None,
                 actor: str | None = None, reason: str = "",
                 revision: int | None = None) -> Deployment:
        """Send all traffic back to the stable/primary arm (strategy single)."""
        with self.db.write() as conn:
            current = self._locked(conn, name, revision)
            if current.status != "active":
                raise errors.Conflict(f"deployment {name!r} is {current.status}; only an "
                                      "active deployment can be rolled back")
            stable = current.stable_arm
            dep = self._next(current, SingleStrategy(arm=stable), "rolled_back")
            self._save_decision(conn, dep, "rollback", stable,
                                reason or f"rollback to {stable}", evidence, actor,
                                {"from": current.strategy.kind})
        return dep

    def stop(self, name: str, *, reason: str = "", actor: str | None = None) -> Deployment:
        """Stop the deployment: the router stops serving it until it is updated."""
        with self.db.write() as conn:
            current = self._locked(conn, name, None)
            if current.status == "stopped":
                raise errors.Conflict(f"deployment {name!r} is stopped already")
            dep = self._next(current, current.strategy, "stopped")
            self._save_decision(conn, dep, "stop", None, reason or "stopped", None, actor,
                                {"from": current.status})
        return dep

    # -- shared arm state --------------------------------------------------------------------

    def record_pulls(self, name: str, counts: dict[str, int]) -> None:
        """Add routed-prediction counts per arm (one atomic UPDATE per arm)."""
        clean = {arm: check_count(arm, n) for arm, n in counts.items()}
        with self.db.write() as conn:
            for arm, n in sorted(clean.items()):  # one lock order for every writer
                if n:
                    self._add(conn, name, arm, {"pulls": n})

    def record_reward(self, name: str, arm: str, reward: float,
                      success: bool | None = None) -> None:
        """Credit ``arm`` with one reward (and a Bernoulli outcome when ``success`` is
        given): one atomic ``UPDATE … SET x = x + :d`` statement."""
        deltas = reward_deltas(reward, success, "reward")
        with self.db.write() as conn:
            self._add(conn, name, arm, deltas)

    def record_rewards(self, name: str,
                       rows: builtins.list[tuple[str, float, bool | None]]) -> None:
        """Credit many rewards at once: ``(arm, reward, success)`` rows, each meaning what
        :meth:`record_reward` means, in one transaction — one atomic ``UPDATE … SET x = x +
        :d`` per arm with the rows' sums. Every row is checked first (a bad one is an error
        naming it, ``rows.3``); a bad row or an unknown arm writes nothing."""
        totals = reward_totals(rows)
        if not totals:
            return
        with self.db.write() as conn:
            for arm, deltas in sorted(totals.items()):  # one lock order for every writer
                self._add(conn, name, arm, deltas)

    def arm_stats(self, name: str) -> dict[str, ArmStats]:
        """Each arm's shared state (zeros for an arm nothing was recorded for)."""
        with self.db.read() as conn:
            dep = self.store.get(conn, name)
            stats = self.store.arm_stats(conn, name)
        return {a: stats.get(a) or ArmStats(arm=a) for a in dep.arm_names} | stats

    def record_evidence(self, name: str, revision: int,
                        counts: dict[str, dict[str, float]]) -> None:
        """Add ``counts`` ({arm: {counter: delta}}) to the guard evidence that the router
        workers of revision ``revision`` share: one atomic ``SET value = value + :d`` per
        counter, in one transaction. Counter names and meanings are the router's
        (``shipyard.rollout``); deltas are finite and not negative."""
        rows = evidence_rows(name, check_revision(revision), counts)
        with self.db.write() as conn:
            if not self.store.exists(conn, name):
                raise errors.NotFound(f"deployment {name!r} does not exist", field="name")
            self.store.add_evidence(conn, rows)

    def evidence(self, name: str, revision: int) -> dict[str, dict[str, float]]:
        """The shared evidence counters of ``revision``: {arm: {counter: total}}."""
        rev = check_revision(revision)
        with self.db.read() as conn:
            if not self.store.exists(conn, name):
                raise errors.NotFound(f"deployment {name!r} does not exist", field="name")
            return self.store.evidence(conn, name, rev)

    def record_assignments(self, name: str,
                           rows: builtins.list[tuple[str, str, int]]) -> None:
        """Remember which arm (at which revision) answered each prediction id; repeats of an
        id keep the first record."""
        now = now_ms()
        values = [(str(pid), name, str(arm), int(rev), now) for pid, arm, rev in rows]
        for pid, *_ in values:
            if not pid or len(pid) > 128:
                raise errors.InvalidInput(f"invalid prediction id {pid!r}", field="rows")
        with self.db.write() as conn:
            if not self.store.exists(conn, name):
                raise errors.NotFound(f"deployment {name!r} does not exist", field="name")
            self.store.assign(conn, values)

    def prune_assignments(self, name: str, older_than_s: float, *,
                          batch: int = 5_000, limit: int | None = None) -> int:
        """Forget the assignments of ``name`` older than ``older_than_s`` seconds; returns
        how many. They only serve to credit late feedback to its arm (feedback for a
        forgotten prediction is counted as unknown), and a router writes one a prediction,
        so a running router prunes them on its own (``RouterOptions.assignment_retention``).
        Deletes in transactions of ``batch`` rows, so writers never wait long, and at most
        ``limit`` rows a call (None: all of them)."""
        if isinstance(older_than_s, bool) or not isinstance(older_than_s, int | float) \
                or not math.isfinite(older_than_s) or older_than_s < 0:
            raise errors.InvalidInput("older_than_s must be a finite number of seconds >= 0",
                                      field="older_than_s")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise errors.InvalidInput("batch must be an integer >= 1", field="batch")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise errors.InvalidInput("limit must be an integer >= 1", field="limit")
        before = now_ms() - min(int(older_than_s * 1000), now_ms())
        total = 0
        while limit is None or total < limit:
            size = batch if limit is None else min(batch, limit - total)
            with self.db.write() as conn:
                deleted = self.store.prune_assignments(conn, name, before, size)
            total += deleted
            if deleted < size:
                break
        return total

    def assignment_of(self, prediction_id: str) -> tuple[str, str] | None:
        """(deployment, arm) that answered ``prediction_id``, or None."""
        with self.db.read() as conn:
            return self.store.assignment_of(conn, prediction_id)

    # -- internals ---------------------------------------------------------------------------

    def _add(self, conn: Any, name: str, arm: str, deltas: dict[str, float]) -> None:
        if self.store.add(conn, name, arm, deltas):
            return
        dep = self.store.get(conn, name)  # no row: an unknown deployment or arm?
        if arm not in dep.arm_names:
            raise errors.NotFound(f"deployment {name!r} has no arm {arm!r}", field="arm")
        self.store.upsert_add(conn, name, arm, deltas)

    def _locked(self, conn: Any, name: str, revision: int | None) -> Deployment:
        current = self.store.get(conn, name, lock=True)
        if revision is not None and current.revision != revision:
            raise self._stale(current, revision)
        return current

    @staticmethod
    def _stale(current: Deployment, revision: int) -> errors.Conflict:
        return errors.Conflict(f"deployment {current.name!r} is at revision "
                               f"{current.revision}, not {revision}: someone changed it first",
                               field="revision")

    @staticmethod
    def _next(current: Deployment, strategy: Any, status: DeploymentStatus) -> Deployment:
        return current.model_copy(update={"strategy": strategy, "status": status,
                                          "revision": current.revision + 1,
                                          "updated_at": now_ms()})

    def _save_decision(self, conn: Any, dep: Deployment, action: DecisionAction,
                       arm: str | None, reason: str, evidence: Mapping[str, Any] | None,
                       actor: str | None, details: dict[str, Any]) -> None:
        if actor is not None and not (isinstance(actor, str) and 0 < len(actor) <= 256):
            raise errors.InvalidInput("actor must be 1-256 characters", field="actor")
        if evidence is not None and not isinstance(evidence, Mapping):
            raise errors.InvalidInput("evidence must be an object", field="evidence")
        self.store.save(conn, dep, self.actor, new=False)
        self._decide(conn, dep, action, arm, reason, evidence or {}, actor or self.actor,
                     details)

    def _decide(self, conn: Any, dep: Deployment, action: DecisionAction, arm: str | None,
                reason: str, evidence: Mapping[str, Any], actor: str,
                details: dict[str, Any]) -> None:
        """The decision row, its audit event and lineage edges, on ``conn``."""
        try:
            evidence_json = json.dumps(dict(evidence), sort_keys=True, default=str,
                                       allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise errors.InvalidInput(f"evidence is not JSON: {exc}", field="evidence") from exc
        decision_id = self.store.add_decision(conn, {
            "deployment": dep.name, "revision": dep.revision, "action": action, "arm": arm,
            "reason": reason or "", "evidence_json": evidence_json, "actor": actor,
            "time": dep.updated_at})
        record_event(conn, actor=self.actor, action=f"deployment.{action}",
                     object_type="deployment", object_id=dep.name,
                     details={**details, "revision": dep.revision, "arm": arm,
                              "decision": decision_id, "decided_by": actor,
                              "reason": reason or None})
        for a in dep.arms:
            add_edge(conn, ("deployment", dep.name), "deploys",
                     ("model_version", f"{dep.model}/{a.version}"))


def _diff(old: Deployment, new: Deployment) -> dict[str, Any]:
    """What an update changed, field by field ({field: {"from": …, "to": …}})."""
    out: dict[str, Any] = {}
    for field in ("arms", "strategy", "guards", "auto"):
        before = old.model_dump(mode="json", include={field})[field]
        after = new.model_dump(mode="json", include={field})[field]
        if before != after:
            out[field] = {"from": before, "to": after}
    return out

