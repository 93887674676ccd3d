"""SQL for deployments: save and load only (rules live in the service).

The shared arm state is only ever changed by ``UPDATE … SET x = x + :delta`` (or the
equivalent upsert when an arm has no row yet), so any number of worker processes can add to
it at once without a lost update, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard import errors
from shipyard.store import tables
from shipyard.store._dialect import Prepared, dialect_insert, execute_prepared, insert_ignore

from ._spec import ArmStats, Decision, Deployment

__all__ = ["DeploymentStore", "spec_json"]

D, DR = tables.deployments, tables.deployment_revisions
AS, DA, DD = (tables.deployment_arm_stats, tables.deployment_assignments,
              tables.deployment_decisions)
EV = tables.deployment_evidence

_COUNTERS = ("pulls", "rewards", "reward_sum", "reward_sq_sum", "successes", "failures")


def _add_counters(_dialect: str) -> Any:
    """``UPDATE arm_stats SET x = x + :d_x … WHERE deployment = :b_dep AND arm = :b_arm``
    (a bound parameter may not share a column's name in an UPDATE)."""
    return AS.update().where(
        AS.c.deployment == sa.bindparam("b_dep"), AS.c.arm == sa.bindparam("b_arm"),
    ).values({c: AS.c[c] + sa.bindparam(f"d_{c}") for c in _COUNTERS})


def _upsert_counters(dialect: str) -> Any:
    """The same addition for an arm that may have no row yet (one atomic statement)."""
    stmt = dialect_insert(dialect, AS)
    return stmt.on_conflict_do_update(
        index_elements=["deployment", "arm"],
        set_={c: AS.c[c] + stmt.excluded[c] for c in _COUNTERS})


_ADD = Prepared(_add_counters, ["b_dep", "b_arm", *(f"d_{c}" for c in _COUNTERS)])
_UPSERT = Prepared(_upsert_counters, ["deployment", "arm", *_COUNTERS])
_ASSIGN = Prepared(
    lambda dialect: dialect_insert(dialect, DA).on_conflict_do_nothing(
        index_elements=["prediction_id"]),
    ["prediction_id", "deployment", "arm", "revision", "time"])


def _upsert_evidence(dialect: str) -> Any:
    """``INSERT … ON CONFLICT DO UPDATE SET value = value + excluded.value``: one atomic
    addition to a shared evidence counter, whether or not its row exists yet."""
    stmt = dialect_insert(dialect, EV)
    return stmt.on_conflict_do_update(
        index_elements=["deployment", "revision", "arm", "counter"],
        set_={"value": EV.c.value + stmt.excluded.value})


_EVIDENCE = Prepared(_upsert_evidence, ["deployment", "revision", "arm", "counter", "value"])
_EXISTS = sa.select(D.c.name).where(D.c.name == sa.bindparam("n"))
_ASSIGNMENT = sa.select(DA.c.deployment, DA.c.arm).where(DA.c.prediction_id == sa.bindparam("p"))


def spec_json(deployment: Deployment) -> str:
    """The part of a deployment that changes by revision, as stored JSON."""
    return json.dumps(deployment.model_dump(
        mode="json", include={"arms", "strategy", "guards", "auto"}), sort_keys=True)


def _deployment(row: Any, spec: str, revision: int, status: str) -> Deployment:
    return Deployment.model_validate({
        **json.loads(spec), "name": row.name, "model": row.model, "revision": revision,
        "status": status, "created_at": row.created_at, "updated_at": row.updated_at,
        "created_by": row.created_by})


class DeploymentStore:
    """Stateless SQL on the caller's connection."""

    # -- deployments -------------------------------------------------------------------------

    @staticmethod
    def exists(conn: Connection, name: str) -> bool:
        return conn.execute(_EXISTS, {"n": name}).first() is not None

    @staticmethod
    def get(conn: Connection, name: str, *, lock: bool = False) -> Deployment:
        q = sa.select(D).where(D.c.name == name)
        if lock and conn.dialect.name == "postgresql":
            q = q.with_for_update()
        row = conn.execute(q).first()
        if row is None:
            raise errors.NotFound(f"deployment {name!r} does not exist", field="name")
        return _deployment(row, row.spec_json, row.revision, row.status)

    @staticmethod
    def get_revision(conn: Connection, name: str, revision: int) -> Deployment:
        row = conn.execute(sa.select(D).where(D.c.name == name)).first()
        if row is None:
            raise errors.NotFound(f"deployment {name!r} does not exist", field="name")
        rev = conn.execute(sa.select(DR).where(DR.c.deployment == name,
                                               DR.c.revision == revision)).first()
        if rev is None:
            raise errors.NotFound(f"deployment {name!r} has no revision {revision}",
                                  field="revision")
        return _deployment(row, rev.spec_json, rev.revision, rev.status)

    @staticmethod
    def all(conn: Connection) -> list[Deployment]:
        return [_deployment(r, r.spec_json, r.revision, r.status)
                for r in conn.execute(sa.select(D).order_by(D.c.name))]

    @staticmethod
    def save(conn: Connection, dep: Deployment, actor: str, *, new: bool) -> None:
        """Insert (``new``) or overwrite a deployment's row, and append its revision."""
        spec = spec_json(dep)
        if new:
            conn.execute(D.insert().values(
                name=dep.name, model=dep.model, spec_json=spec, revision=dep.revision,
                status=dep.status, created_at=dep.created_at, updated_at=dep.updated_at,
                created_by=dep.created_by))
        else:
            conn.execute(D.update().where(D.c.name == dep.name).values(
                spec_json=spec, revision=dep.revision, status=dep.status,
                updated_at=dep.updated_at))
        conn.execute(DR.insert().values(deployment=dep.name, revision=dep.revision,
                                        spec_json=spec, status=dep.status,
                                        created_at=dep.updated_at, actor=actor))

    # -- decisions ---------------------------------------------------------------------------

    @staticmethod
    def add_decision(conn: Connection, values: dict[str, Any]) -> int:
        result = conn.execute(DD.insert().values(**values))
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    @staticmethod
    def decisions(conn: Connection, name: str, limit: int | None) -> list[Decision]:
        q = sa.select(DD).where(DD.c.deployment == name).order_by(DD.c.id.desc())
        if limit is not None:
            q = q.limit(limit)
        rows = list(conn.execute(q))[::-1]
        return [Decision(id=r.id, deployment=r.deployment, revision=r.revision,
                         action=r.action, arm=r.arm, reason=r.reason or "",
                         evidence=json.loads(r.evidence_json) if r.evidence_json else {},
                         actor=r.actor, time=r.time) for r in rows]

    # -- arm state ---------------------------------------------------------------------------

    @staticmethod
    def init_arms(conn: Connection, name: str, arms: list[str]) -> None:
        if arms:
            conn.execute(insert_ignore(conn, AS, ["deployment", "arm"]),
                         [{"deployment": name, "arm": a, **dict.fromkeys(_COUNTERS, 0)}
                          for a in arms])

    @staticmethod
    def add(conn: Connection, name: str, arm: str, deltas: dict[str, float]) -> int:
        """Add ``deltas`` to an arm's counters; the number of rows changed (0: no row)."""
        row = (name, arm, *(deltas.get(c, 0) for c in _COUNTERS))
        return int(execute_prepared(conn, _ADD, [row]))

    @staticmethod
    def upsert_add(conn: Connection, name: str, arm: str, deltas: dict[str, float]) -> None:
        row = (name, arm, *(deltas.get(c, 0) for c in _COUNTERS))
        execute_prepared(conn, _UPSERT, [row])

    @staticmethod
    def arm_stats(conn: Connection, name: str) -> dict[str, ArmStats]:
        rows = conn.execute(sa.select(AS).where(AS.c.deployment == name).order_by(AS.c.arm))
        return {r.arm: ArmStats(arm=r.arm, pulls=r.pulls, rewards=r.rewards,
                                reward_sum=r.reward_sum, reward_sq_sum=r.reward_sq_sum,
                                successes=r.successes, failures=r.failures) for r in rows}

    # -- shared evidence -----------------------------------------------------------------------

    @staticmethod
    def add_evidence(conn: Connection, rows: list[tuple[str, int, str, str, float]]) -> None:
        """Add (deployment, revision, arm, counter, delta) rows, in the order given (the
        caller sorts them, so concurrent writers lock rows in one order: no deadlock)."""
        execute_prepared(conn, _EVIDENCE, rows)

    @staticmethod
    def evidence(conn: Connection, name: str, revision: int) -> dict[str, dict[str, float]]:
        rows = conn.execute(sa.select(EV.c.arm, EV.c.counter, EV.c.value).where(
            EV.c.deployment == name, EV.c.revision == revision))
        out: dict[str, dict[str, float]] = {}
        for r in rows:
            out.setdefault(r.arm, {})[r.counter] = float(r.value)
        return out

    # -- assignments -------------------------------------------------------------------------

    @staticmethod
    def assign(conn: Connection, rows: list[tuple[str, str, str, int, int]]) -> None:
        """Insert (prediction_id, deployment, arm, revision, time) rows; repeats are ignored."""
        execute_prepared(conn, _ASSIGN, rows)

    @staticmethod
    def prune_assignments(conn: Connection, name: str, before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` assignments of ``name`` made before ``before_ms``."""
        doomed = sa.select(DA.c.prediction_id).where(
            DA.c.deployment == name, DA.c.time < before_ms).limit(limit)
        result = conn.execute(sa.delete(DA).where(DA.c.prediction_id.in_(
            doomed.scalar_subquery())))
        return int(result.rowcount or 0)

    @staticmethod
    def assignment_of(conn: Connection, prediction_id: str) -> tuple[str, str] | None:
        row = conn.execute(_ASSIGNMENT, {"p": prediction_id}).first()
        return None if row is None else (row.deployment, row.arm)
