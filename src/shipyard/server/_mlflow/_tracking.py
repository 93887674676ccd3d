"""MLflow's experiment and run routes over Shipyard's TrackingService."""

from __future__ import annotations

import re
from typing import Any

from shipyard import errors

from . import _convert as cv
from . import _filter as flt
from ._http import Args, Ctx, as_float, as_int, num
from ._ids import LOGGED_MODEL_TAG, OUTPUT_STEP_TAG, ExperimentIds, run_of_model_id

__all__ = ["ROUTES", "run_json", "hide_logged_models"]

_STATUS_NUMBERS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_VIEWS = {"ACTIVE_ONLY": "active_only", "DELETED_ONLY": "deleted_only", "ALL": "all",
          "1": "active_only", "2": "deleted_only", "3": "all"}
_TAG_KEY = r"tags?\.(?:`{0}`|\"{0}\"|{0})(?![\w.])"
_RUN_NAME_KEY = re.compile(_TAG_KEY.format(re.escape(cv.RUN_NAME_TAG)))
_PARENT_KEY = re.compile(_TAG_KEY.format(re.escape(cv.PARENT_TAG)))


def _view(value: str | None) -> str:
    if value is None:
        return "active_only"
    view = _VIEWS.get(value.upper())
    if view is None:
        raise errors.InvalidInput(f"invalid view type {value!r}: use ACTIVE_ONLY, DELETED_ONLY "
                                  "or ALL", field="view_type")
    return view


def _run_id(a: Args) -> str:
    value = a.text("run_id") or a.text("run_uuid")
    if not value:
        raise errors.InvalidInput("Missing value for required parameter 'run_id'",
                                  field="run_id")
    return value


# -- experiments -------------------------------------------------------------------------------

def _exp_value(exp: Any, entity: str, key: str) -> Any:
    if entity == "tag":
        return exp.tags.get(key)
    if entity != "attribute":
        return None
    return {"name": exp.name, "experiment_id": int(exp.experiment_id),
            "creation_time": exp.creation_time, "last_update_time": exp.last_update_time,
            "lifecycle_stage": exp.lifecycle_stage.value}.get(key)


def create_experiment(ctx: Ctx, a: Args) -> Any:
    """Create an experiment; its id comes back as a string (``"0"`` for ``Default``)."""
    exp = ctx.tracking.create_experiment(a.req("name"),
                                         artifact_location=a.text("artifact_location"),
                                         tags=a.pairs("tags"))
    return {"experiment_id": ExperimentIds(ctx.tracking).to_mlflow(exp.experiment_id)}


def get_experiment(ctx: Ctx, a: Args) -> Any:
    ids = ExperimentIds(ctx.tracking)
    exp = ctx.tracking.get_experiment(ids.to_shipyard(a.req("experiment_id"), create=True))
    return {"experiment": cv.experiment(exp, ids)}


def get_experiment_by_name(ctx: Ctx, a: Args) -> Any:
    exp = ctx.tracking.get_experiment_by_name(a.req("experiment_name"))
    return {"experiment": cv.experiment(exp, ExperimentIds(ctx.tracking))}


def search_experiments(ctx: Ctx, a: Args) -> Any:
    ids = ExperimentIds(ctx.tracking)
    clauses = flt.parse(a.text("filter"))
    found = [e for e in ctx.tracking.list_experiments(_view(a.text("view_type")))
             if flt.matches(e, clauses, _exp_value)]
    found = flt.sort(found, a.strings("order_by"), _exp_value,
                     ["creation_time DESC", "experiment_id ASC"])
    chunk, token = flt.page(found, a.integer("max_results"), a.text("page_token"))
    out: dict[str, Any] = {"experiments": [cv.experiment(e, ids) for e in chunk]}
    if token:
        out["next_page_token"] = token
    return out


def update_experiment(ctx: Ctx, a: Args) -> Any:
    """Rename an experiment (MLflow's only experiment update)."""
    ids = ExperimentIds(ctx.tracking)
    eid = ids.to_shipyard(a.req("experiment_id"))
    if a.has("new_name"):
        ctx.tracking.rename_experiment(eid, a.req("new_name"))
    return {}


def _set_stage(ctx: Ctx, a: Args, deleted: bool) -> Any:
    ids = ExperimentIds(ctx.tracking)
    exp = ctx.tracking.get_experiment(ids.to_shipyard(a.req("experiment_id")))
    if (exp.lifecycle_stage.value == "deleted") != deleted:  # idempotent, as in MLflow
        if deleted:
            ctx.tracking.delete_experiment(exp.experiment_id)
        else:
            ctx.tracking.restore_experiment(exp.experiment_id)
    return {}


def delete_experiment(ctx: Ctx, a: Args) -> Any:
    return _set_stage(ctx, a, True)


def restore_experiment(ctx: Ctx, a: Args) -> Any:
    return _set_stage(ctx, a, False)


def set_experiment_tag(ctx: Ctx, a: Args) -> Any:
    ids = ExperimentIds(ctx.tracking)
    ctx.tracking.set_experiment_tag(ids.to_shipyard(a.req("experiment_id")), a.req("key"),
                                    a.text("value", default=""))
    return {}


# -- runs --------------------------------------------------------------------------------------

def model_outputs(tracking: Any, r: Any) -> list[tuple[str, int]]:
    """The logged models whose source run is ``r`` (the runs nested under it that back them)."""
    if cv.is_logged_model(r):
        return []
    children, _ = tracking.search_runs(
        [r.experiment_id], max_results=1000, run_view="active_only",
        filter_string=f"attributes.parent_run_id = '{r.run_id}' "
                      f"AND tags.`{LOGGED_MODEL_TAG}` = 'true'")
    return [(f"m-{c.run_id}", cv.output_step(c)) for c in children]


def run_json(ctx: Ctx, r: Any, ids: ExperimentIds, *, outputs: bool = True) -> dict[str, Any]:
    points = cv.latest_points(ctx.client.db, [r.run_id])[r.run_id]
    return cv.run(r, ids, points, model_outputs(ctx.tracking, r) if outputs else ())


def create_run(ctx: Ctx, a: Args) -> Any:
    ids = ExperimentIds(ctx.tracking)
    tags = a.pairs("tags")
    run_name = a.text("run_name") or tags.get(cv.RUN_NAME_TAG) or None
    tags.pop(cv.RUN_NAME_TAG, None)
    created = ctx.tracking.create_run(
        ids.to_shipyard(a.text("experiment_id") or "0", create=True), run_name=run_name,
        parent_run_id=tags.get(cv.PARENT_TAG) or None, tags=tags,
        start_time=a.integer("start_time"),
        user=ctx.user or a.text("user_id") or tags.get(cv.USER_TAG),
        owner_pid=0, owner_host=f"mlflow-client:{_client_host(ctx)}")
    return {"run": run_json(ctx, ctx.tracking.get_run(created.run_id), ids, outputs=False)}


def _client_host(ctx: Ctx) -> str:
    client = ctx.request.client
    return client.host if client else "unknown"


def get_run(ctx: Ctx, a: Args) -> Any:
    ids = ExperimentIds(ctx.tracking)
    return {"run": run_json(ctx, ctx.tracking.get_run(_run_id(a)), ids)}


def _status(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in _STATUS_NUMBERS:
            raise errors.InvalidInput(f"invalid run status {value!r}", field="status")
        return _STATUS_NUMBERS[value]
    return str(value)


def update_run(ctx: Ctx, a: Args) -> Any:
    run_id = _run_id(a)
    if a.has("run_name"):
        ctx.tracking.set_run_name(run_id, a.req("run_name"))
    if a.has("status"):
        ctx.tracking.end_run(run_id, _status(a.data["status"]), a.integer("end_time"))
    return {"run_info": cv.run_info(ctx.tracking.get_run(run_id),
                                    ExperimentIds(ctx.tracking))}


def _set_run_stage(ctx: Ctx, a: Args, deleted: bool) -> Any:
    r = ctx.tracking.get_run(_run_id(a))
    if (r.lifecycle_stage.value == "deleted") != deleted:  # idempotent, as in MLflow
        if deleted:
            ctx.tracking.delete_run(r.run_id)
        else:
            ctx.tracking.restore_run(r.run_id)
    return {}


def delete_run(ctx: Ctx, a: Args) -> Any:
    return _set_run_stage(ctx, a, True)


def restore_run(ctx: Ctx, a: Args) -> Any:
    return _set_run_stage(ctx, a, False)


def _point(m: dict[str, Any]) -> tuple[str, float, int, int]:
    key = m.get("key")
    if not isinstance(key, str) or not key:
        raise errors.InvalidInput("Missing value for required parameter 'key'", field="key")
    if m.get("value") is None:
        raise errors.InvalidInput(f"metric {key!r} has no value", field="value")
    if m.get("timestamp") is None:
        raise errors.InvalidInput(f"metric {key!r} has no timestamp", field="timestamp")
    return (key, as_float(m["value"], "value"), as_int(m.get("step") or 0, "step"),
            as_int(m["timestamp"], "timestamp"))


def _log(ctx: Ctx, run_id: str, metrics: list[dict[str, Any]], params: dict[str, str],
         tags: dict[str, str]) -> None:
    """Write one batch; metrics that name a logged model go to the run behind that model."""
    if cv.RUN_NAME_TAG in tags:
        ctx.tracking.set_run_name(run_id, tags.pop(cv.RUN_NAME_TAG))
    by_model: dict[str, list[tuple[str, float, int, int]]] = {}
    own = []
    for m in metrics:
        if m.get("model_id"):
            by_model.setdefault(run_of_model_id(m["model_id"]), []).append(_point(m))
        else:
            own.append(_point(m))
    ctx.tracking.log_batch(run_id, metrics=own, params=params, tags=tags)
    for model_run, points in by_model.items():
        ctx.tracking.log_batch(model_run, metrics=points)


def log_metric(ctx: Ctx, a: Args) -> Any:
    _log(ctx, _run_id(a), [a.data], {}, {})
    return {}


def log_param(ctx: Ctx, a: Args) -> Any:
    _log(ctx, _run_id(a), [], {a.req("key"): a.text("value", default="") or ""}, {})
    return {}


def set_tag(ctx: Ctx, a: Args) -> Any:
    _log(ctx, _run_id(a), [], {}, {a.req("key"): a.text("value", default="") or ""})
    return {}


def delete_tag(ctx: Ctx, a: Args) -> Any:
    key = a.req("key")
    if key != cv.RUN_NAME_TAG:  # the run name is an attribute in Shipyard; it stays
        ctx.tracking.delete_tag(_run_id(a), key)
    return {}


def log_batch(ctx: Ctx, a: Args) -> Any:
    _log(ctx, _run_id(a), a.objects("metrics"), a.pairs("params"), a.pairs("tags"))
    return {}


def log_inputs(ctx: Ctx, a: Args) -> Any:
    """Dataset inputs (name, digest, source, schema, profile, context); model inputs ignored."""
    run_id = _run_id(a)
    for item in a.objects("datasets"):
        ctx.tracking.log_input(run_id, **cv.dataset_kwargs(item))
    return {}


def log_outputs(ctx: Ctx, a: Args) -> Any:
    """Record the step at which the run output each logged model."""
    run_id = _run_id(a)
    ctx.tracking.get_run(run_id)
    for item in a.objects("models"):
        model_run = run_of_model_id(item.get("model_id"))
        step = as_int(item.get("step") or 0, "step")
        ctx.tracking.log_batch(model_run, tags={OUTPUT_STEP_TAG: str(step)})
    return {}


def get_metric_history(ctx: Ctx, a: Args) -> Any:
    run_id = _run_id(a)
    history = ctx.tracking.get_metric_history(run_id, a.req("metric_key"))
    chunk, token = history, None
    if a.has("max_results") or a.has("page_token"):
        chunk, token = flt.page(history, a.integer("max_results", default=25000),
                                a.text("page_token"), limit=25000)
    out: dict[str, Any] = {"metrics": [
        {"key": m.key, "value": num(m.value), "timestamp": m.timestamp, "step": m.step,
         "run_id": run_id} for m in chunk]}
    if token:
        out["next_page_token"] = token
    return out


def rewrite_keys(text: str) -> str:
    """MLflow's ``tags.mlflow.runName`` / ``tags.mlflow.parentRunId`` are run attributes here."""
    return _PARENT_KEY.sub("attributes.parent_run_id",
                           _RUN_NAME_KEY.sub("attributes.run_name", text))


def hide_logged_models(filter_string: str | None) -> str:
    hidden = f"tags.`{LOGGED_MODEL_TAG}` IS NULL"
    text = rewrite_keys(filter_string or "").strip()
    return f"{text} AND {hidden}" if text else hidden


def search_runs(ctx: Ctx, a: Args) -> Any:
    """Shipyard's SQL search (MLflow's filter language); runs behind logged models are hidden."""
    ids = ExperimentIds(ctx.tracking)
    experiment_ids = []
    for value in a.strings("experiment_ids"):
        try:
            experiment_ids.append(ids.to_shipyard(value))
        except errors.NotFound:  # "0" before anything created the Default experiment
            continue
    if not experiment_ids:
        return {"runs": []}
    found, token = ctx.tracking.search_runs(
        experiment_ids, filter_string=hide_logged_models(a.text("filter")),
        order_by=[rewrite_keys(o) for o in a.strings("order_by")],
        max_results=a.integer("max_results", default=1000),
        page_token=a.text("page_token"), run_view=_view(a.text("run_view_type")))
    points = cv.latest_points(ctx.client.db, [r.run_id for r in found])
    out: dict[str, Any] = {"runs": [cv.run(r, ids, points[r.run_id]) for r in found]}
    if token:
        out["next_page_token"] = token
    return out


#: (verb, path under /api/2.0/mlflow, handler)
ROUTES = [
    ("POST", "/experiments/create", create_experiment),
    ("GET", "/experiments/get", get_experiment),
    ("GET", "/experiments/get-by-name", get_experiment_by_name),
    ("POST", "/experiments/search", search_experiments),
    ("GET", "/experiments/search", search_experiments),
    ("POST", "/experiments/update", update_experiment),
    ("POST", "/experiments/delete", delete_experiment),
    ("POST", "/experiments/restore", restore_experiment),
    ("POST", "/experiments/set-experiment-tag", set_experiment_tag),
    ("POST", "/runs/create", create_run),
    ("GET", "/runs/get", get_run),
    ("POST", "/runs/update", update_run),
    ("POST", "/runs/delete", delete_run),
    ("POST", "/runs/restore", restore_run),
    ("POST", "/runs/log-metric", log_metric),
    ("POST", "/runs/log-parameter", log_param),
    ("POST", "/runs/set-tag", set_tag),
    ("POST", "/runs/delete-tag", delete_tag),
    ("POST", "/runs/log-batch", log_batch),
    ("POST", "/runs/log-inputs", log_inputs),
    ("POST", "/runs/outputs", log_outputs),
    ("GET", "/metrics/get-history", get_metric_history),
    ("POST", "/runs/search", search_runs),
]
