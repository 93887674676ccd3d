"""The tracking service: validation, audit events and store calls, one transaction each.

Every interface (SDK, CLI, REST) goes through here, so the rules live in one place.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from shipyard import errors
from shipyard.artifacts import ArtifactStore
from shipyard.store import Database, add_edge, now_ms, record_event

from . import _validation as v
from ._entities import ArtifactInfo, Experiment, LifecycleStage, Metric, Run, RunStatus
from ._liveness import HOST, owner_is_dead
from ._store import TrackingStore

__all__ = ["TrackingService", "MetricPoint"]

#: (key, value, step, timestamp_ms)
MetricPoint = tuple[str, float, int, int]

DEFAULT_EXPERIMENT = "Default"

#: A run this process wrote to less than this many seconds ago is not checked (and its
#: heartbeat not refreshed) again: see "Heartbeats" in docs/durability.md.
TOUCH_WINDOW_S = 1.0
#: (database URL, run id) → time.monotonic() of the last check, shared by every service of
#: this process on that database, so that a delete through any of them is seen at once.
_touched: dict[tuple[str, str], float] = {}
_TOUCHED_MAX = 10_000


def _forget_touch(url: str, run_id: str) -> None:
    _touched.pop((url, run_id), None)


class TrackingService:
    """Experiments, runs, params, metrics, tags, dataset inputs and run artifacts."""

    #: Bumped whenever a service of this process renames, deletes or restores an experiment,
    #: so that caches of experiment names (``shipyard.fluent``) know to forget them.
    experiment_epoch = 0

    def __init__(self, db: Database, artifacts: ArtifactStore, actor: str) -> None:
        self.db = db
        self.artifacts = artifacts
        self.actor = actor
        self.store = TrackingStore()

    def _audit(self, conn: Any, action: str, object_type: str, object_id: str,
               details: dict[str, Any] | None = None) -> None:
        record_event(conn, actor=self.actor, action=action, object_type=object_type,
                     object_id=object_id, details=details)

    # -- experiments ---------------------------------------------------------------------------

    def create_experiment(self, name: str, *, artifact_location: str | None = None,
                          tags: dict[str, Any] | None = None) -> Experiment:
        v.check_name("experiment", name)
        clean_tags = self._clean_tags(tags)
        exists = errors.AlreadyExists(f"experiment {name!r} already exists", field="name")
        try:
            with self.db.write() as conn:
                if self.store.find_experiment(conn, name) is not None:
                    raise exists
                eid = self.store.insert_experiment(conn, name, artifact_location, now_ms())
                self.store.set_experiment_tags(conn, eid, clean_tags)
                self._audit(conn, "experiment.create", "experiment", eid, {"name": name})
                return self.store.get_experiment(conn, eid)
        except errors.Conflict:
            # PostgreSQL: a concurrent transaction inserted the name after our check.
            with self.db.read() as conn:
                if self.store.find_experiment(conn, name) is not None:
                    raise exists from None
            raise

    def get_experiment(self, experiment_id: str | int) -> Experiment:
        with self.db.read() as conn:
            return self.store.get_experiment(conn, str(experiment_id))

    def get_experiment_by_name(self, name: str) -> Experiment:
        with self.db.read() as conn:
            found = self.store.find_experiment(conn, name)
        if found is None:
            raise errors.NotFound(f"experiment {name!r} does not exist")
        return found

    def get_or_create_experiment(self, name: str) -> Experiment:
        with self.db.read() as conn:
            found = self.store.find_experiment(conn, name)
        if found is not None:
            if found.lifecycle_stage is LifecycleStage.DELETED:
                raise errors.Conflict(
                    f"experiment {name!r} is deleted; restore it "
                    f"(shipyard experiments restore {found.experiment_id}) or pick another name")
            return found
        try:
            return self.create_experiment(name)
        except errors.AlreadyExists:  # another process created it meanwhile
            return self.get_experiment_by_name(name)

    def list_experiments(self, view: str = "active_only") -> list[Experiment]:
        with self.db.read() as conn:
            return self.store.list_experiments(conn, view)

    def rename_experiment(self, experiment_id: str | int, new_name: str) -> Experiment:
        v.check_name("experiment", new_name)
        exists = errors.AlreadyExists(f"experiment {new_name!r} already exists", field="name")
        try:
            with self.db.write() as conn:
                old = self.store.get_experiment(conn, str(experiment_id))
                if old.name != new_name and self.store.find_experiment(conn, new_name):
                    raise exists
                self.store.update_experiment(conn, old.experiment_id, now_ms(), name=new_name)
                self._audit(conn, "experiment.rename", "experiment", old.experiment_id,
                            {"from": old.name, "to": new_name})
                TrackingService.experiment_epoch += 1
                return self.store.get_experiment(conn, old.experiment_id)
        except errors.Conflict:
            # PostgreSQL: a concurrent rename or create took the name after our check.
            raise exists from None

    def delete_experiment(self, experiment_id: str | int) -> None:
        self._set_experiment_stage(experiment_id, LifecycleStage.DELETED)

    def restore_experiment(self, experiment_id: str | int) -> None:
        self._set_experiment_stage(experiment_id, LifecycleStage.ACTIVE)

    def _set_experiment_stage(self, experiment_id: str | int, stage: LifecycleStage) -> None:
        with self.db.write() as conn:
            exp = self.store.get_experiment(conn, str(experiment_id))
            if exp.lifecycle_stage is stage:
                raise errors.Conflict(f"experiment {exp.name!r} is already {stage.value}")
            self.store.update_experiment(conn, exp.experiment_id, now_ms(),
                                         lifecycle_stage=stage.value)
            action = "delete" if stage is LifecycleStage.DELETED else "restore"
            self._audit(conn, f"experiment.{action}", "experiment", exp.experiment_id)
        TrackingService.experiment_epoch += 1

    def set_experiment_tag(self, experiment_id: str | int, key: str, value: Any) -> None:
        tags = self._clean_tags({key: value})
        with self.db.write() as conn:
            exp = self.store.get_experiment(conn, str(experiment_id))
            self.store.set_experiment_tags(conn, exp.experiment_id, tags)
            self._audit(conn, "experiment.set_tag", "experiment", exp.experiment_id, tags)

    # -- runs ------------------------------------------------------------------------------------

    def create_run(self, experiment_id: str | int, *, run_name: str | None = None,
                   parent_run_id: str | None = None, tags: dict[str, Any] | None = None,
                   start_time: int | None = None, user: str | None = None,
                   owner_pid: int | None = None, owner_host: str | None = None) -> Run:
        """Start a RUNNING run. ``owner_pid``/``owner_host`` name the process that logs to it
        (default: this one), which ``gc_runs`` checks to find runs whose process died."""
        if run_name is not None:
            v.check_name("run", run_name)
        if parent_run_id is not None:
            v.check_run_id(parent_run_id)
        clean_tags = self._clean_tags(tags)
        run_id = uuid.uuid4().hex
        name = run_name or _default_run_name(run_id)
        start = start_time if start_time is not None else now_ms()
        exp_id = str(experiment_id)
        with self.db.write() as conn:
            stage = self.store.experiment_stage(conn, exp_id)
            if stage != LifecycleStage.ACTIVE.value:
                exp = self.store.get_experiment(conn, exp_id)  # NotFound when missing
                raise errors.Conflict(f"experiment {exp.name!r} is deleted; cannot add runs")
            exp_id = str(int(exp_id))  # "007" → "7", as get_experiment would give it
            if parent_run_id is not None:
                self.store.run_row(conn, parent_run_id)
            self.store.insert_run(conn, {
                "run_id": run_id, "experiment_id": int(exp_id),
                "run_name": name,
                "status": RunStatus.RUNNING.value, "start_time": start,
                "lifecycle_stage": "active", "parent_run_id": parent_run_id,
                "user_id": user or self.actor, "owner_host": owner_host or HOST,
                "owner_pid": owner_pid if owner_pid is not None else os.getpid(),
                "heartbeat_time": now_ms(),  # the real time, whatever start_time says
            })
            self.store.write_tags(conn, run_id, clean_tags)
            self._audit(conn, "run.create", "run", run_id,
                        {"experiment_id": exp_id, "parent_run_id": parent_run_id})
            if parent_run_id:
                add_edge(conn, ("run", parent_run_id), "parent_of", ("run", run_id))
        return Run(run_id=run_id, experiment_id=exp_id,
                   run_name=name, status=RunStatus.RUNNING,
                   start_time=start, parent_run_id=parent_run_id, user_id=user or self.actor,
                   tags=clean_tags)

    def get_run(self, run_id: str) -> Run:
        v.check_run_id(run_id)
        with self.db.read() as conn:
            row = self.store.run_row(conn, run_id)
        if row.status == RunStatus.RUNNING.value and owner_is_dead(
                row, now_ms=now_ms(), stale_after_ms=None):
            self._fail_orphan(run_id)
        with self.db.read() as conn:
            return self.store.get_runs(conn, [run_id])[0]

    def get_runs(self, run_ids: Sequence[str]) -> list[Run]:
        with self.db.read() as conn:
            return self.store.get_runs(conn, list(run_ids))

    def end_run(self, run_id: str, status: RunStatus | str = RunStatus.FINISHED,
                end_time: int | None = None) -> None:
        v.check_run_id(run_id)
        st = _run_status(status)
        with self.db.write() as conn:
            self._set_status(conn, run_id, st, end_time)

    def _set_status(self, conn: Any, run_id: str, st: RunStatus, end_time: int | None,
                    old: str | None = None) -> None:
        """Change a run's status (NotFound when it does not exist) with its audit event;
        ``old``: its status, when the caller has read it already."""
        if old is None:
            old = self.store.run_state(conn, run_id)[0]
        if st.is_terminal:
            self.store.set_run_status(conn, run_id, st.value,
                                      end_time if end_time is not None else now_ms())
        elif st is RunStatus.RUNNING:
            # Resuming: the calling process takes the run over, so the liveness check
            # no longer looks at a previous (possibly dead) owner.
            self.store.update_run(conn, run_id, status=st.value, end_time=None,
                                  owner_host=HOST, owner_pid=os.getpid(),
                                  heartbeat_time=now_ms())
        else:
            self.store.update_run(conn, run_id, status=st.value)
        self._audit(conn, "run.set_status", "run", run_id, {"from": old, "to": st.value})

    def set_run_name(self, run_id: str, run_name: str) -> None:
        v.check_name("run", run_name)
        with self.db.write() as conn:
            self.store.run_row(conn, v.check_run_id(run_id))
            self.store.update_run(conn, run_id, run_name=run_name)
            self._audit(conn, "run.rename", "run", run_id, {"to": run_name})

    def delete_run(self, run_id: str) -> None:
        self._set_run_stage(run_id, LifecycleStage.DELETED)

    def restore_run(self, run_id: str) -> None:
        self._set_run_stage(run_id, LifecycleStage.ACTIVE)

    def _set_run_stage(self, run_id: str, stage: LifecycleStage) -> None:
        with self.db.write() as conn:
            row = self.store.run_row(conn, v.check_run_id(run_id))
            if row.lifecycle_stage == stage.value:
                raise errors.Conflict(f"run {run_id} is already {stage.value}")
            self.store.update_run(conn, run_id, lifecycle_stage=stage.value)
            action = "delete" if stage is LifecycleStage.DELETED else "restore"
            self._audit(conn, f"run.{action}", "run", run_id)
        _forget_touch(self.db.url, run_id)

    def gc_runs(self, *, stale_after_s: float | None = None) -> list[str]:
        """Mark RUNNING runs whose owner process died (SIGKILL, crash) as FAILED.

        Runs owned by this host are checked by pid; runs of other hosts only when
        ``stale_after_s`` is given and their last heartbeat is older than that.
        """
        stale_ms = None if stale_after_s is None else int(stale_after_s * 1000)
        with self.db.read() as conn:
            rows = self.store.running_runs(conn)
        now = now_ms()
        dead = [r.run_id for r in rows if owner_is_dead(r, now_ms=now, stale_after_ms=stale_ms)]
        for run_id in dead:
            self._fail_orphan(run_id)
        return dead

    def _fail_orphan(self, run_id: str) -> None:
        with self.db.write() as conn:
            changed = self.store.fail_if_running(conn, run_id, now_ms())
            if changed:
                self._audit(conn, "run.set_status", "run", run_id,
                            {"from": "RUNNING", "to": "FAILED", "reason": "owner process died"})

    # -- params, metrics, tags -------------------------------------------------------------------

    def log_batch(self, run_id: str, *, metrics: Sequence[MetricPoint] = (),
                  params: dict[str, Any] | None = None, tags: dict[str, Any] | None = None,
                  validated: bool = False, end_status: RunStatus | str | None = None,
                  end_time: int | None = None) -> None:
        """Write metrics, params and tags of one run in one transaction with one audit event.

        ``validated=True`` skips the checks (the buffered writer validated at call time).
        With ``end_status``, the same transaction then ends the run as :meth:`end_run` does
        (with its own ``run.set_status`` event): the buffered writer's last batch of a run.
        """
        st = None if end_status is None else _run_status(end_status)
        if not validated:
            v.check_run_id(run_id)
            metrics = v.check_metric_points(metrics)
            params = {v.check_key("param", k): v.check_param_value(k, val)
                      for k, val in (params or {}).items()}
            tags = self._clean_tags(tags)
        elif st is not None:
            v.check_run_id(run_id)
        if not (metrics or params or tags):
            if st is not None:
                self.end_run(run_id, st, end_time)
            return
        old = None
        with self.db.write() as conn:
            if st is None:
                self._touch_active_run(conn, run_id)
            else:  # ending it: check the run whatever the window, and keep its status
                old, stage = self.store.run_state(conn, run_id)
                if stage != LifecycleStage.ACTIVE.value:
                    raise self._deleted(run_id)
            if params:
                self.store.write_params(conn, run_id, params)
            if tags:
                self.store.write_tags(conn, run_id, tags)
            self.store.write_metrics(conn, run_id, metrics)
            self._audit(conn, "run.log_batch", "run", run_id, {
                "metrics": len(metrics), "params": sorted(params or {}),
                "tags": sorted(tags or {})})
            if st is not None:
                self._set_status(conn, run_id, st, end_time, old)

    def _touch_active_run(self, conn: Any, run_id: str) -> None:
        """Check that the run exists and is not deleted, and refresh its heartbeat; skipped
        when this process did so less than TOUCH_WINDOW_S ago."""
        key = (self.db.url, run_id)
        now = time.monotonic()
        last = _touched.get(key)
        if last is not None and now - last < TOUCH_WINDOW_S:
            return
        if not self.store.touch_active_run(conn, run_id, now_ms()):
            _touched.pop(key, None)
            self.store.run_row(conn, run_id)  # NotFound when it does not exist at all
            raise self._deleted(run_id)
        if len(_touched) >= _TOUCHED_MAX:
            _touched.clear()
        _touched[key] = now

    @staticmethod
    def _deleted(run_id: str) -> errors.Conflict:
        return errors.Conflict(f"run {run_id} is deleted; restore it before logging to it")

    def log_metric(self, run_id: str, key: str, value: float, step: int = 0,
                   timestamp: int | None = None) -> None:
        self.log_batch(run_id, metrics=[(key, value, step,
                                         now_ms() if timestamp is None else timestamp)])

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, params={key: value})

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, tags={key: value})

    def delete_tag(self, run_id: str, key: str) -> None:
        with self.db.write() as conn:
            self.store.run_row(conn, v.check_run_id(run_id))
            if not self.store.delete_tag(conn, run_id, key):
                raise errors.NotFound(f"run {run_id} has no tag {key!r}")
            self._audit(conn, "run.delete_tag", "run", run_id, {"key": key})

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        with self.db.read() as conn:
            self.store.run_row(conn, v.check_run_id(run_id))
            return self.store.metric_history(conn, run_id, key)

    @staticmethod
    def _clean_tags(tags: dict[str, Any] | None) -> dict[str, str]:
        return {v.check_key("tag", k): v.check_tag_value(k, val)
                for k, val in (tags or {}).items()}

    # -- search ----------------------------------------------------------------------------------

    def search_runs(self, experiment_ids: Sequence[str | int] | None = None, *,
                    filter_string: str | None = None, order_by: Sequence[str] | None = None,
                    max_results: int = 1000, page_token: str | None = None,
                    run_view: str = "active_only") -> tuple[list[Run], str | None]:
        """Runs matching an MLflow-style filter, ordered, one page at a time."""
        from ._search import search_run_ids

        ids = None
        if experiment_ids is not None:
            try:
                ids = [int(e) for e in experiment_ids]
            except (TypeError, ValueError):
                raise errors.InvalidInput(f"invalid experiment ids {experiment_ids!r}",
                                          field="experiment_ids") from None
        with self.db.read() as conn:
            run_ids, token = search_run_ids(
                conn, experiment_ids=ids, filter_string=filter_string,
                order_by=list(order_by or []), run_view=run_view, max_results=max_results,
                page_token=page_token)
            return self.store.get_runs(conn, run_ids), token

    # -- dataset inputs --------------------------------------------------------------------------

    def log_input(self, run_id: str, *, name: str, digest: str, source: str | None = None,
                  schema: dict[str, Any] | None = None, num_rows: int | None = None,
                  context: str = "training") -> str:
        """Record that ``run_id`` used a dataset version; returns the dataset id."""
        v.check_name("dataset", name)
        v.check_key("context", context)
        if len(context) > 64:  # the width of run_inputs.context
            raise errors.InvalidInput("dataset context must be at most 64 characters",
                                      field="context")
        if not isinstance(digest, str) or not digest or len(digest) > 64:
            raise errors.InvalidInput("dataset digest must be a non-empty string of ≤64 chars",
                                      field="digest")
        with self.db.write() as conn:
            self._touch_active_run(conn, v.check_run_id(run_id))
            dataset_id = self.store.upsert_dataset(conn, {
                "dataset_id": uuid.uuid4().hex, "name": name, "digest": digest,
                "source": source, "schema_json": json.dumps(schema) if schema else None,
                "num_rows": num_rows, "creation_time": now_ms()})
            self.store.link_input(conn, run_id, dataset_id, context)
            # One edge per (dataset, run); the context lives in run_inputs.
            add_edge(conn, ("dataset", dataset_id), "input_of", ("run", run_id))
            self._audit(conn, "run.log_input", "run", run_id,
                        {"dataset": name, "digest": digest, "context": context})
        return dataset_id

    # -- artifacts -------------------------------------------------------------------------------

    def log_artifact_file(self, run_id: str, local_path: str | os.PathLike[str],
                          artifact_path: str) -> ArtifactInfo:
        """Store a local file under ``artifact_path``: object first, then the metadata."""
        path = v.check_artifact_path(artifact_path)
        if not Path(local_path).is_file():
            raise errors.InvalidInput(f"no such file: {local_path}", field="local_path")
        v.check_run_id(run_id)
        self._require_run(run_id)  # fail before uploading for an unknown run
        digest, size = self.artifacts.put_file(local_path)
        return self._commit_artifact(run_id, path, digest, size)

    def log_artifact_bytes(self, run_id: str, data: bytes, artifact_path: str) -> ArtifactInfo:
        path = v.check_artifact_path(artifact_path)
        self._require_run(v.check_run_id(run_id))
        digest, size = self.artifacts.put_bytes(data)
        return self._commit_artifact(run_id, path, digest, size)

    def _require_run(self, run_id: str) -> None:
        """NotFound unless the run exists (a light check before uploading bytes)."""
        with self.db.read() as conn:
            self.store.run_row(conn, run_id)

    def _commit_artifact(self, run_id: str, path: str, digest: str, size: int) -> ArtifactInfo:
        now = now_ms()
        with self.db.write() as conn:
            self._touch_active_run(conn, run_id)
            self.store.put_artifact(conn, run_id, path, digest, size, now)
            self._audit(conn, "run.log_artifact", "run", run_id,
                        {"path": path, "digest": digest, "size": size})
        return ArtifactInfo(path=path, digest=digest, size=size, creation_time=now)

    def list_artifacts(self, run_id: str, path: str = "") -> list[ArtifactInfo]:
        prefix = v.check_artifact_path(path, allow_empty=True)
        with self.db.read() as conn:
            self.store.run_row(conn, v.check_run_id(run_id))
            return self.store.list_artifacts(conn, run_id, prefix)

    def read_artifact(self, run_id: str, path: str) -> bytes:
        """The bytes of one artifact file, digest-verified."""
        path = v.check_artifact_path(path)
        found = [a for a in self.list_artifacts(run_id, path) if a.path == path]
        if not found:
            raise errors.NotFound(f"run {run_id} has no artifact {path!r}")
        return self.artifacts.get_bytes(found[0].digest)

    def download_artifacts(self, run_id: str, path: str = "",
                           dst: str | os.PathLike[str] = ".") -> Path:
        """Copy an artifact file or folder to ``dst``; returns the local path."""
        infos = self.list_artifacts(run_id, path)
        if not infos:
            raise errors.NotFound(f"run {run_id} has no artifact {path!r}")
        dst = Path(dst)
        prefix = v.check_artifact_path(path, allow_empty=True)
        for info in infos:
            self.artifacts.get_file(info.digest, dst / info.path)
        return dst / prefix if prefix else dst

    # -- audit -----------------------------------------------------------------------------------

    def audit_events(self, object_type: str | None = None,
                     object_id: str | None = None) -> list[dict[str, Any]]:
        from shipyard.store import tables

        A = tables.audit_events
        q = sa.select(A).order_by(A.c.id)
        if object_type:
            q = q.where(A.c.object_type == object_type)
        if object_id:
            q = q.where(A.c.object_id == str(object_id))
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]


_ADJECTIVES = ("amber", "bold", "calm", "deft", "eager", "fair", "glad", "keen", "lucid",
               "merry", "noble", "proud", "quick", "rapid", "sharp", "tidy", "vivid", "wise")
_NOUNS = ("anchor", "beacon", "cutter", "dinghy", "ferry", "galley", "harbor", "keel", "lantern",
          "mast", "oar", "pier", "rudder", "sail", "schooner", "tide", "wharf", "yawl")


def _run_status(status: RunStatus | str) -> RunStatus:
    try:
        return RunStatus(status)
    except ValueError:
        raise errors.InvalidInput(
            f"invalid run status {status!r}: use one of "
            f"{', '.join(s.value for s in RunStatus)}", field="status") from None


def _default_run_name(run_id: str) -> str:
    n = int(run_id[:8], 16)
    return f"{_ADJECTIVES[n % len(_ADJECTIVES)]}-{_NOUNS[(n // 31) % len(_NOUNS)]}-{n % 1000}"

