"""Shipyard's domain objects as the JSON of MLflow's protos (Experiment, Run, LoggedModel…)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from shipyard.store import tables

from ._http import num
from ._ids import (
    INTERNAL_PREFIX,
    LOGGED_MODEL_TAG,
    MODEL_DIR,
    MODEL_TYPE_TAG,
    MODEL_VERSIONS_TAG,
    OUTPUT_STEP_TAG,
    STATUS_MESSAGE_TAG,
    ExperimentIds,
    artifact_uri,
    model_id_of,
)

__all__ = ["experiment", "run", "run_info", "logged_model", "latest_points", "kv",
           "dataset_input", "dataset_kwargs", "is_logged_model", "output_step",
           "LOGGED_MODEL_STATUS", "RUN_NAME_TAG", "PARENT_TAG", "USER_TAG"]

RUN_NAME_TAG = "mlflow.runName"
PARENT_TAG = "mlflow.parentRunId"
USER_TAG = "mlflow.user"
CONTEXT_TAG = "mlflow.data.context"
#: Run status of the run behind a logged model ↔ the logged model's status.
LOGGED_MODEL_STATUS = {"RUNNING": "LOGGED_MODEL_PENDING", "SCHEDULED": "LOGGED_MODEL_PENDING",
                       "FINISHED": "LOGGED_MODEL_READY", "FAILED": "LOGGED_MODEL_UPLOAD_FAILED",
                       "KILLED": "LOGGED_MODEL_UPLOAD_FAILED"}


def kv(mapping: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in mapping.items()]


def experiment(exp: Any, ids: ExperimentIds) -> dict[str, Any]:
    eid = ids.to_mlflow(exp.experiment_id)
    return {
        "experiment_id": eid, "name": exp.name,
        "artifact_location": exp.artifact_location or f"mlflow-artifacts:/{eid}",
        "lifecycle_stage": exp.lifecycle_stage.value, "creation_time": exp.creation_time,
        "last_update_time": exp.last_update_time, "tags": kv(exp.tags),
    }


def latest_points(db: Any, run_ids: Sequence[str]) -> dict[str, dict[str, tuple[int, int]]]:
    """(step, timestamp) of each run's latest metric values, which Run objects do not carry."""
    LM = tables.latest_metrics
    out: dict[str, dict[str, tuple[int, int]]] = {rid: {} for rid in run_ids}
    if not run_ids:
        return out
    with db.read() as conn:
        for i in range(0, len(run_ids), 500):
            chunk = list(run_ids[i:i + 500])
            q = sa.select(LM.c.run_id, LM.c.key, LM.c.step, LM.c.timestamp).where(
                LM.c.run_id.in_(chunk))
            for row in conn.execute(q):
                out[row.run_id][row.key] = (int(row.step), int(row.timestamp))
    return out


def run_info(r: Any, ids: ExperimentIds) -> dict[str, Any]:
    eid = ids.to_mlflow(r.experiment_id)
    info: dict[str, Any] = {
        "run_id": r.run_id, "run_uuid": r.run_id, "run_name": r.run_name or "",
        "experiment_id": eid, "user_id": r.user_id or "", "status": r.status.value,
        "start_time": r.start_time, "artifact_uri": artifact_uri(eid, r.run_id),
        "lifecycle_stage": r.lifecycle_stage.value,
    }
    if r.end_time is not None:
        info["end_time"] = r.end_time
    return info


def run(r: Any, ids: ExperimentIds, points: dict[str, tuple[int, int]] | None = None,
        outputs: Iterable[tuple[str, int]] = ()) -> dict[str, Any]:
    """A Run proto: info, data (latest metrics, params, tags), inputs and outputs."""
    points = points or {}
    tags = dict(r.tags)
    tags[RUN_NAME_TAG] = r.run_name or ""
    if r.parent_run_id and PARENT_TAG not in tags:
        tags[PARENT_TAG] = r.parent_run_id
    if r.user_id and USER_TAG not in tags:
        tags[USER_TAG] = r.user_id
    metrics = []
    for key, value in r.metrics.items():
        step, ts = points.get(key, (0, r.start_time))
        metrics.append({"key": key, "value": num(value), "timestamp": ts, "step": step})
    return {
        "info": run_info(r, ids),
        "data": {"metrics": metrics, "params": kv(r.params), "tags": kv(tags)},
        "inputs": {"dataset_inputs": [dataset_input(d) for d in r.inputs], "model_inputs": []},
        "outputs": {"model_outputs": [{"model_id": m, "step": s} for m, s in outputs]},
    }


def dataset_input(d: Any) -> dict[str, Any]:
    """A Shipyard dataset input as MLflow's DatasetInput (its MLflow-only fields restored)."""
    schema = dict(d.schema_ or {})
    source_type = schema.pop("mlflow_source_type", None) or "shipyard"
    profile = schema.pop("mlflow_profile", None)
    raw_schema = schema.pop("mlflow_schema", None)
    if profile is None and d.num_rows is not None:
        profile = json.dumps({"num_rows": d.num_rows})
    return {"tags": [{"key": CONTEXT_TAG, "value": d.context}],
            "dataset": {"name": d.name, "digest": d.digest, "source_type": str(source_type),
                        "source": d.source or "",
                        "schema": raw_schema or (json.dumps(schema) if schema else ""),
                        "profile": profile or ""}}


def dataset_kwargs(item: dict[str, Any]) -> dict[str, Any]:
    """MLflow's DatasetInput as the arguments of ``TrackingService.log_input``."""
    ds = item.get("dataset") if isinstance(item.get("dataset"), dict) else {}
    assert isinstance(ds, dict)
    tags = {t.get("key"): t.get("value") for t in item.get("tags") or []
            if isinstance(t, dict)}
    schema: dict[str, Any] = {}
    raw = ds.get("schema") or ""
    if raw:
        try:
            parsed = json.loads(raw)
        except (TypeError, ValueError):
            parsed = None
        if isinstance(parsed, dict):
            schema.update(parsed)
        else:
            schema["mlflow_schema"] = str(raw)
    if ds.get("source_type"):
        schema["mlflow_source_type"] = str(ds["source_type"])
    num_rows = None
    if ds.get("profile"):
        schema["mlflow_profile"] = str(ds["profile"])
        try:
            rows = json.loads(ds["profile"]).get("num_rows")
            num_rows = int(rows) if rows is not None else None
        except (TypeError, ValueError, AttributeError):
            num_rows = None
    return {"name": ds.get("name"), "digest": ds.get("digest"),
            "source": ds.get("source") or None, "schema": schema or None,
            "num_rows": num_rows, "context": str(tags.get(CONTEXT_TAG) or "training")}


def logged_model(r: Any, ids: ExperimentIds,
                 points: dict[str, tuple[int, int]] | None = None) -> dict[str, Any]:
    """The Shipyard run behind a logged model as MLflow's LoggedModel."""
    eid = ids.to_mlflow(r.experiment_id)
    points = points or {}
    model_id = model_id_of(r.run_id)
    try:
        registrations = json.loads(r.tags.get(MODEL_VERSIONS_TAG) or "[]")
    except ValueError:
        registrations = []
    info: dict[str, Any] = {
        "model_id": model_id, "experiment_id": eid, "name": r.run_name or "",
        "creation_timestamp_ms": r.start_time,
        "last_updated_timestamp_ms": r.end_time or r.start_time,
        "artifact_uri": artifact_uri(eid, r.run_id, MODEL_DIR),
        "status": LOGGED_MODEL_STATUS.get(r.status.value, "LOGGED_MODEL_PENDING"),
        "model_type": r.tags.get(MODEL_TYPE_TAG, ""),
        "source_run_id": r.parent_run_id or "",
        "status_message": r.tags.get(STATUS_MESSAGE_TAG, ""),
        "tags": kv({k: v for k, v in r.tags.items() if not k.startswith(INTERNAL_PREFIX)}),
        "registrations": [{"name": str(x.get("name")), "version": str(x.get("version"))}
                          for x in registrations if isinstance(x, dict)],
    }
    metrics = []
    for key, value in r.metrics.items():
        step, ts = points.get(key, (0, r.start_time))
        metrics.append({"key": key, "value": num(value), "timestamp": ts, "step": step,
                        "model_id": model_id, "run_id": r.parent_run_id or ""})
    return {"info": info, "data": {"params": kv(r.params), "metrics": metrics}}


def is_logged_model(r: Any) -> bool:
    return r.tags.get(LOGGED_MODEL_TAG) == "true"


def output_step(r: Any) -> int:
    try:
        return int(r.tags.get(OUTPUT_STEP_TAG, "0"))
    except ValueError:
        return 0
