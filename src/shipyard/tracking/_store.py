"""SQL for tracking: save and load only. Validation and audit live in the service."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard import errors
from shipyard.store import insert_ignore, tables, upsert
from shipyard.store._dialect import (
    Prepared,
    build_insert_ignore,
    build_upsert,
    build_upsert_latest_metric,
    execute_prepared,
)

from ._entities import (
    ArtifactInfo,
    DatasetInput,
    Experiment,
    LifecycleStage,
    Metric,
    Run,
    RunStatus,
)

__all__ = ["TrackingStore"]

E, ET, R = tables.experiments, tables.experiment_tags, tables.runs
P, T, M, LM = tables.params, tables.tags, tables.metrics, tables.latest_metrics


_METRIC_COLUMNS = ["run_id", "key", "value", "is_nan", "step", "timestamp"]

# The statements of the logging hot path, compiled once per dialect (see Prepared).
_INSERT_METRICS = Prepared(lambda d: M.insert(), _METRIC_COLUMNS)
_UPSERT_LATEST = Prepared(lambda d: build_upsert_latest_metric(d, LM), _METRIC_COLUMNS)
_INSERT_PARAMS = Prepared(lambda d: build_insert_ignore(d, P, ["run_id", "key"]),
                          ["run_id", "key", "value"])
_UPSERT_TAGS = Prepared(lambda d: build_upsert(d, T, ["run_id", "key"], ["value"]),
                        ["run_id", "key", "value"])
_TOUCH_RUN = Prepared(
    lambda d: R.update().where(R.c.run_id == sa.bindparam("b_run_id"),
                               R.c.lifecycle_stage == sa.literal_column("'active'"))
    .values(heartbeat_time=sa.bindparam("b_now")),
    ["b_now", "b_run_id"])
_RUN_STATE = Prepared(
    lambda d: sa.select(R.c.status, R.c.lifecycle_stage)
    .where(R.c.run_id == sa.bindparam("b_run_id")),
    ["b_run_id"])
_SET_STATUS = Prepared(
    lambda d: R.update().where(R.c.run_id == sa.bindparam("b_run_id"))
    .values(status=sa.bindparam("b_status"), end_time=sa.bindparam("b_end")),
    ["b_status", "b_end", "b_run_id"])
_EXPERIMENT_STAGE = Prepared(
    lambda d: sa.select(E.c.lifecycle_stage).where(E.c.experiment_id == sa.bindparam("b_id")),
    ["b_id"])
_RUN_COLUMNS = ["run_id", "experiment_id", "run_name", "status", "start_time",
                "lifecycle_stage", "parent_run_id", "user_id", "owner_host", "owner_pid",
                "heartbeat_time"]
_INSERT_RUN = Prepared(lambda d: R.insert(), _RUN_COLUMNS)
_RUN_COLUMN_SET = frozenset(_RUN_COLUMNS)


class TrackingStore:
    """Stateless SQL operations on a connection; every method takes the caller's transaction."""

    # -- experiments -------------------------------------------------------------------------

    @staticmethod
    def insert_experiment(conn: Connection, name: str, artifact_location: str | None,
                          now: int) -> str:
        result = conn.execute(
            E.insert().values(name=name, artifact_location=artifact_location,
                              lifecycle_stage="active", creation_time=now,
                              last_update_time=now)
        )
        return str(result.inserted_primary_key[0])  # type: ignore[index]

    @staticmethod
    def set_experiment_tags(conn: Connection, experiment_id: str, tags: dict[str, str]) -> None:
        if tags:
            conn.execute(upsert(conn, ET, ["experiment_id", "key"], ["value"]),
                         [{"experiment_id": int(experiment_id), "key": k, "value": v}
                          for k, v in tags.items()])

    @staticmethod
    def _experiments(conn: Connection, where: Any) -> list[Experiment]:
        rows = conn.execute(sa.select(E).where(where).order_by(E.c.experiment_id)).all()
        if not rows:
            return []
        ids = [r.experiment_id for r in rows]
        tag_map: dict[int, dict[str, str]] = {i: {} for i in ids}
        for t in conn.execute(sa.select(ET).where(ET.c.experiment_id.in_(ids))):
            tag_map[t.experiment_id][t.key] = t.value
        return [
            Experiment(experiment_id=str(r.experiment_id), name=r.name,
                       artifact_location=r.artifact_location,
                       lifecycle_stage=LifecycleStage(r.lifecycle_stage),
                       creation_time=r.creation_time, last_update_time=r.last_update_time,
                       tags=tag_map[r.experiment_id])
            for r in rows
        ]

    def get_experiment(self, conn: Connection, experiment_id: str) -> Experiment:
        try:
            eid = int(experiment_id)
        except (TypeError, ValueError):
            raise errors.InvalidInput(f"invalid experiment id {experiment_id!r}",
                                      field="experiment_id") from None
        found = self._experiments(conn, E.c.experiment_id == eid)
        if not found:
            raise errors.NotFound(f"experiment id {experiment_id} does not exist")
        return found[0]

    def find_experiment(self, conn: Connection, name: str) -> Experiment | None:
        found = self._experiments(conn, E.c.name == name)
        return found[0] if found else None

    def list_experiments(self, conn: Connection, view: str) -> list[Experiment]:
        return self._experiments(conn, _lifecycle_filter(E.c.lifecycle_stage, view))

    @staticmethod
    def update_experiment(conn: Connection, experiment_id: str, now: int, **values: Any) -> None:
        conn.execute(E.update().where(E.c.experiment_id == int(experiment_id))
                     .values(last_update_time=now, **values))

    # -- runs --------------------------------------------------------------------------------

    @staticmethod
    def insert_run(conn: Connection, values: dict[str, Any]) -> None:
        if values.keys() == _RUN_COLUMN_SET:
            execute_prepared(conn, _INSERT_RUN, [tuple(values[c] for c in _RUN_COLUMNS)])
        else:
            conn.execute(R.insert().values(**values))

    @staticmethod
    def experiment_stage(conn: Connection, experiment_id: str) -> str | None:
        """The lifecycle stage of an experiment, or None when it does not exist."""
        try:
            eid = int(experiment_id)
        except (TypeError, ValueError):
            raise errors.InvalidInput(f"invalid experiment id {experiment_id!r}",
                                      field="experiment_id") from None
        found = execute_prepared(conn, _EXPERIMENT_STAGE, [(eid,)], fetch=True)
        return str(found[0][0]) if found else None

    @staticmethod
    def run_state(conn: Connection, run_id: str) -> tuple[str, str]:
        """(status, lifecycle stage) of a run; NotFound when it does not exist."""
        found = execute_prepared(conn, _RUN_STATE, [(run_id,)], fetch=True)
        if not found:
            raise errors.NotFound(f"run {run_id} does not exist")
        return str(found[0][0]), str(found[0][1])

    @staticmethod
    def set_run_status(conn: Connection, run_id: str, status: str, end_time: int | None) -> None:
        execute_prepared(conn, _SET_STATUS, [(status, end_time, run_id)])

    @staticmethod
    def update_run(conn: Connection, run_id: str, **values: Any) -> int:
        return conn.execute(R.update().where(R.c.run_id == run_id).values(**values)).rowcount

    @staticmethod
    def run_row(conn: Connection, run_id: str) -> Any:
        row = conn.execute(sa.select(R).where(R.c.run_id == run_id)).first()
        if row is None:
            raise errors.NotFound(f"run {run_id} does not exist")
        return row

    def get_runs(self, conn: Connection, run_ids: Sequence[str]) -> list[Run]:
        """Full runs (params, latest metrics, tags, inputs) in the order of ``run_ids``."""
        if not run_ids:
            return []
        found: dict[str, Any] = {}
        for chunk in _chunks(run_ids, 500):
            for row in conn.execute(sa.select(R).where(R.c.run_id.in_(chunk))):
                found[row.run_id] = row
        data: dict[str, dict[str, dict[str, Any]]] = {
            rid: {"params": {}, "metrics": {}, "tags": {}} for rid in found
        }
        inputs: dict[str, list[DatasetInput]] = {rid: [] for rid in found}
        for chunk in _chunks(list(found), 500):
            for p in conn.execute(sa.select(P).where(P.c.run_id.in_(chunk))):
                data[p.run_id]["params"][p.key] = p.value
            for t in conn.execute(sa.select(T).where(T.c.run_id.in_(chunk))):
                data[t.run_id]["tags"][t.key] = t.value
            for m in conn.execute(sa.select(LM).where(LM.c.run_id.in_(chunk))):
                data[m.run_id]["metrics"][m.key] = math.nan if m.is_nan else m.value
            for rid, ds in self._inputs(conn, chunk):
                inputs[rid].append(ds)
        return [
            Run(run_id=r.run_id, experiment_id=str(r.experiment_id), run_name=r.run_name,
                status=RunStatus(r.status), start_time=r.start_time, end_time=r.end_time,
                lifecycle_stage=LifecycleStage(r.lifecycle_stage),
                parent_run_id=r.parent_run_id, user_id=r.user_id,
                inputs=inputs[r.run_id], **data[r.run_id])
            for rid in run_ids if (r := found.get(rid)) is not None
        ]

    @staticmethod
    def _inputs(conn: Connection, run_ids: Sequence[str]) -> Iterable[tuple[str, DatasetInput]]:
        D, RI = tables.datasets, tables.run_inputs
        q = (sa.select(RI.c.run_id, RI.c.context, D)
             .join(D, D.c.dataset_id == RI.c.dataset_id).where(RI.c.run_id.in_(run_ids)))
        for row in conn.execute(q):
            yield row.run_id, DatasetInput(
                dataset_id=row.dataset_id, name=row.name, digest=row.digest, source=row.source,
                schema=json.loads(row.schema_json) if row.schema_json else None,
                num_rows=row.num_rows, context=row.context)

    @staticmethod
    def touch_active_run(conn: Connection, run_id: str, now: int) -> bool:
        """Refresh the run's heartbeat; False when it does not exist or is deleted."""
        return bool(execute_prepared(conn, _TOUCH_RUN, [(now, run_id)]))

    @staticmethod
    def fail_if_running(conn: Connection, run_id: str, now: int) -> bool:
        return bool(conn.execute(
            R.update().where(R.c.run_id == run_id, R.c.status == RunStatus.RUNNING.value)
            .values(status=RunStatus.FAILED.value, end_time=now)).rowcount)

    @staticmethod
    def running_runs(conn: Connection) -> list[Any]:
        return list(conn.execute(sa.select(R).where(R.c.status == RunStatus.RUNNING.value)))

    # -- params, metrics, tags ----------------------------------------------------------------

    @staticmethod
    def write_params(conn: Connection, run_id: str, params: dict[str, str]) -> None:
        """Insert params; a key already logged with a different value is a Conflict.

        Insert-or-ignore first: when every row went in (the usual case) no key existed and
        nothing needs comparing; otherwise the stored values are read and compared, and a
        Conflict rolls the caller's transaction back, inserted rows included.
        """
        if not params:
            return
        inserted = execute_prepared(conn, _INSERT_PARAMS,
                                    [(run_id, k, v) for k, v in params.items()])
        if inserted == len(params):
            return
        existing = dict(conn.execute(
            sa.select(P.c.key, P.c.value).where(P.c.run_id == run_id, P.c.key.in_(list(params)))
        ).all())
        for key, value in params.items():
            if existing.get(key, value) != value:
                raise errors.Conflict(
                    f"param {key!r} of run {run_id} was logged as {existing[key]!r}; "
                    f"params are immutable, so it cannot become {value!r}", field="param")

    @staticmethod
    def write_tags(conn: Connection, run_id: str, tags: dict[str, str]) -> None:
        if tags:
            execute_prepared(conn, _UPSERT_TAGS, [(run_id, k, v) for k, v in tags.items()])

    @staticmethod
    def delete_tag(conn: Connection, run_id: str, key: str) -> int:
        return conn.execute(T.delete().where(T.c.run_id == run_id, T.c.key == key)).rowcount

    @staticmethod
    def write_metrics(conn: Connection, run_id: str,
                      points: Sequence[tuple[str, float, int, int]]) -> None:
        """Append metric points (key, value, step, timestamp) and refresh latest values."""
        if not points:
            return
        # Rows in _METRIC_COLUMNS order; NaN is stored as value NULL + is_nan.
        rows = [(run_id, k, None, True, s, ts) if v != v else (run_id, k, v, False, s, ts)
                for k, v, s, ts in points]
        execute_prepared(conn, _INSERT_METRICS, rows)
        if len(rows) == 1:
            execute_prepared(conn, _UPSERT_LATEST, rows)
            return
        latest: dict[str, tuple[Any, ...]] = {}
        get = latest.get
        for row in rows:  # per key, the point with the largest (step, timestamp); ties: last
            cur = get(row[1])
            if cur is None or row[4] > cur[4] or (row[4] == cur[4] and row[5] >= cur[5]):
                latest[row[1]] = row
        execute_prepared(conn, _UPSERT_LATEST, list(latest.values()))

    @staticmethod
    def metric_history(conn: Connection, run_id: str, key: str) -> list[Metric]:
        q = (sa.select(M).where(M.c.run_id == run_id, M.c.key == key)
             .order_by(M.c.step, M.c.timestamp, M.c.id))
        return [Metric.from_row(r) for r in conn.execute(q)]

    # -- datasets and artifacts -----------------------------------------------------------------

    @staticmethod
    def upsert_dataset(conn: Connection, values: dict[str, Any]) -> str:
        D = tables.datasets
        conn.execute(insert_ignore(conn, D, ["name", "digest"]), values)
        found = conn.execute(sa.select(D.c.dataset_id).where(
            D.c.name == values["name"], D.c.digest == values["digest"])).scalar_one()
        return str(found)

    @staticmethod
    def link_input(conn: Connection, run_id: str, dataset_id: str, context: str) -> None:
        conn.execute(insert_ignore(conn, tables.run_inputs, ["run_id", "dataset_id", "context"]),
                     {"run_id": run_id, "dataset_id": dataset_id, "context": context})

    @staticmethod
    def put_artifact(conn: Connection, run_id: str, path: str, digest: str, size: int,
                     now: int) -> None:
        conn.execute(upsert(conn, tables.artifacts, ["run_id", "path"],
                            ["digest", "size", "creation_time"]),
                     {"run_id": run_id, "path": path, "digest": digest, "size": size,
                      "creation_time": now})

    @staticmethod
    def list_artifacts(conn: Connection, run_id: str, prefix: str) -> list[ArtifactInfo]:
        A = tables.artifacts
        q = sa.select(A).where(A.c.run_id == run_id)
        if prefix:
            q = q.where(sa.or_(A.c.path == prefix, A.c.path.startswith(prefix + "/",
                                                                      autoescape=True)))
        return [ArtifactInfo(path=r.path, digest=r.digest, size=r.size,
                             creation_time=r.creation_time)
                for r in conn.execute(q.order_by(A.c.path))]


def _lifecycle_filter(column: Any, view: str) -> Any:
    if view == "active_only":
        return column == "active"
    if view == "deleted_only":
        return column == "deleted"
    if view == "all":
        return sa.true()
    raise errors.InvalidInput(f"view must be active_only, deleted_only or all, not {view!r}",
                              field="view")


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
