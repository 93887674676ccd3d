"""MLflow 3's logged models, each backed by a Shipyard run nested under its source run.

``mlflow.<flavor>.log_model`` creates a logged model (``POST logged-models``), uploads the
model folder to the model's ``artifact_uri``, links it to the run (``runs/outputs``) and
finalizes it (``PATCH logged-models/<id>``). Here the model is a run tagged
``shipyard.mlflow.logged_model`` whose parent is the source run: its name is the run name,
its params and tags the run's, its status the run's status (RUNNING = pending, FINISHED =
ready, FAILED = upload failed), its files the run's artifacts under ``model/``.
"""

from __future__ import annotations

import json
from typing import Any

from shipyard import errors

from . import _convert as cv
from . import _filter as flt
from ._artifacts import listing
from ._http import Args, Ctx
from ._ids import (
    INTERNAL_PREFIX,
    LOGGED_MODEL_TAG,
    MODEL_DIR,
    MODEL_TYPE_TAG,
    ExperimentIds,
    artifact_uri,
    check_relative,
    model_id_of,
    run_of_model_id,
)

__all__ = ["ROUTES", "model_run"]

_FINAL = {"LOGGED_MODEL_PENDING": "RUNNING", "LOGGED_MODEL_READY": "FINISHED",
          "LOGGED_MODEL_UPLOAD_FAILED": "FAILED", "1": "RUNNING", "2": "FINISHED",
          "3": "FAILED"}
_SHORT_STATUS = {"RUNNING": "PENDING", "SCHEDULED": "PENDING", "FINISHED": "READY",
                 "FAILED": "FAILED", "KILLED": "FAILED"}
LOG_MODEL_HISTORY_TAG = "mlflow.log-model.history"


def model_run(ctx: Ctx, model_id: object, *, allow_deleted: bool = False) -> Any:
    """The Shipyard run behind logged model ``model_id`` (NotFound for any other id)."""
    try:
        r = ctx.tracking.get_run(run_of_model_id(model_id))
    except errors.NotFound:
        raise errors.NotFound(f"logged model {model_id!r} does not exist") from None
    if not cv.is_logged_model(r) or (r.lifecycle_stage.value == "deleted"
                                     and not allow_deleted):
        raise errors.NotFound(f"logged model {model_id!r} does not exist")
    return r


def _json(ctx: Ctx, r: Any, ids: ExperimentIds | None = None) -> dict[str, Any]:
    points = cv.latest_points(ctx.client.db, [r.run_id])[r.run_id]
    return cv.logged_model(r, ids or ExperimentIds(ctx.tracking), points)


def _user_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith(INTERNAL_PREFIX)}


def create_logged_model(ctx: Ctx, a: Args) -> Any:
    ids = ExperimentIds(ctx.tracking)
    tags = _user_tags(a.pairs("tags"))
    tags[LOGGED_MODEL_TAG] = "true"
    if a.has("model_type"):
        tags[MODEL_TYPE_TAG] = a.req("model_type")
    client = ctx.request.client
    created = ctx.tracking.create_run(
        ids.to_shipyard(a.req("experiment_id"), create=True), run_name=a.text("name"),
        parent_run_id=a.text("source_run_id") or None, tags=tags,
        user=ctx.user or tags.get(cv.USER_TAG), owner_pid=0,
        owner_host=f"mlflow-client:{client.host if client else 'unknown'}")
    params = a.pairs("params")
    if params:
        ctx.tracking.log_batch(created.run_id, params=params)
    return {"model": _json(ctx, ctx.tracking.get_run(created.run_id), ids)}


def get_logged_model(ctx: Ctx, a: Args) -> Any:
    r = model_run(ctx, a.req("model_id"), allow_deleted=a.boolean("allow_deleted"))
    return {"model": _json(ctx, r)}


def finalize_logged_model(ctx: Ctx, a: Args) -> Any:
    r = model_run(ctx, a.req("model_id"))
    status = _FINAL.get(a.req("status").upper())
    if status is None:
        raise errors.InvalidInput(f"invalid logged model status {a.data.get('status')!r}",
                                  field="status")
    if status != r.status.value:
        ctx.tracking.end_run(r.run_id, status)
    return {"model": _json(ctx, ctx.tracking.get_run(r.run_id))}


def delete_logged_model(ctx: Ctx, a: Args) -> Any:
    r = model_run(ctx, a.req("model_id"))
    ctx.tracking.delete_run(r.run_id)
    return {}


def set_logged_model_tags(ctx: Ctx, a: Args) -> Any:
    r = model_run(ctx, a.req("model_id"))
    tags = _user_tags(a.pairs("tags"))
    if tags:
        ctx.tracking.log_batch(r.run_id, tags=tags)
    return {"model": _json(ctx, ctx.tracking.get_run(r.run_id))}


def delete_logged_model_tag(ctx: Ctx, a: Args) -> Any:
    r = model_run(ctx, a.req("model_id"))
    key = a.req("tag_key")
    if key.startswith(INTERNAL_PREFIX):
        raise errors.NotFound(f"logged model {a.req('model_id')} has no tag {key!r}")
    ctx.tracking.delete_tag(r.run_id, key)
    return {}


def log_logged_model_params(ctx: Ctx, a: Args) -> Any:
    r = model_run(ctx, a.req("model_id"))
    params = a.pairs("params")
    if params:
        ctx.tracking.log_batch(r.run_id, params=params)
    return {}


def _value(r: Any, entity: str, key: str) -> Any:
    if entity == "tag":
        return r.tags.get(key) if not key.startswith(INTERNAL_PREFIX) else None
    if entity == "param":
        return r.params.get(key)
    if entity == "metric":
        return r.metrics.get(key)
    return {"name": r.run_name, "model_id": model_id_of(r.run_id),
            "model_type": r.tags.get(MODEL_TYPE_TAG), "status": _SHORT_STATUS[r.status.value],
            "source_run_id": r.parent_run_id, "creation_timestamp": r.start_time,
            "creation_time": r.start_time,
            "last_updated_timestamp": r.end_time or r.start_time}.get(key)


def search_logged_models(ctx: Ctx, a: Args) -> Any:
    ids = ExperimentIds(ctx.tracking)
    experiment_ids = []
    for value in a.strings("experiment_ids"):
        try:
            experiment_ids.append(ids.to_shipyard(value))
        except errors.NotFound:
            continue
    if not experiment_ids:
        return {"models": []}
    found, _ = ctx.tracking.search_runs(experiment_ids, max_results=50000,
                                        filter_string=f"tags.`{LOGGED_MODEL_TAG}` = 'true'")
    clauses = flt.parse(a.text("filter"))
    found = [r for r in found if flt.matches(r, clauses, _value)]
    order = [f"{o.get('field_name')} {'ASC' if o.get('ascending', True) else 'DESC'}"
             for o in a.objects("order_by") if o.get("field_name")]
    found = flt.sort(found, order, _value, ["creation_timestamp DESC"])
    chunk, token = flt.page(found, a.integer("max_results", default=100), a.text("page_token"))
    points = cv.latest_points(ctx.client.db, [r.run_id for r in chunk])
    out: dict[str, Any] = {"models": [cv.logged_model(r, ids, points[r.run_id])
                                      for r in chunk]}
    if token:
        out["next_page_token"] = token
    return out


def list_logged_model_artifacts(ctx: Ctx, a: Args) -> Any:
    r = model_run(ctx, a.req("model_id"))
    sub = check_relative(a.text("artifact_directory_path") or "")
    prefix = f"{MODEL_DIR}/{sub}" if sub else MODEL_DIR
    files = listing(ctx.tracking.list_artifacts(r.run_id, prefix), prefix, full=True)
    for f in files:
        f["path"] = f["path"][len(MODEL_DIR) + 1:]
    eid = ExperimentIds(ctx.tracking).to_mlflow(r.experiment_id)
    return {"root_uri": artifact_uri(eid, r.run_id, MODEL_DIR), "files": files}


def log_model_history(ctx: Ctx, a: Args) -> Any:
    """MLflow 2's ``runs/log-model``: append the model's metadata to the run's history tag."""
    r = ctx.tracking.get_run(a.text("run_id") or a.req("run_uuid"))
    try:
        entry = json.loads(a.req("model_json"))
        history = json.loads(r.tags.get(LOG_MODEL_HISTORY_TAG) or "[]")
    except ValueError as exc:
        raise errors.InvalidInput(f"model_json is not valid JSON: {exc}",
                                  field="model_json") from None
    history = (history if isinstance(history, list) else []) + [entry]
    ctx.tracking.set_tag(r.run_id, LOG_MODEL_HISTORY_TAG, json.dumps(history))
    return {}


ROUTES = [
    ("POST", "/logged-models", create_logged_model),
    ("POST", "/logged-models/search", search_logged_models),
    ("GET", "/logged-models/{model_id}", get_logged_model),
    ("PATCH", "/logged-models/{model_id}", finalize_logged_model),
    ("DELETE", "/logged-models/{model_id}", delete_logged_model),
    ("PATCH", "/logged-models/{model_id}/tags", set_logged_model_tags),
    ("DELETE", "/logged-models/{model_id}/tags/{tag_key:path}", delete_logged_model_tag),
    ("POST", "/logged-models/{model_id}/params", log_logged_model_params),
    ("GET", "/logged-models/{model_id}/artifacts/directories", list_logged_model_artifacts),
    ("POST", "/runs/log-model", log_model_history),
]
