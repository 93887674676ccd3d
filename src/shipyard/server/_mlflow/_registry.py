"""MLflow's model registry routes over Shipyard's RegistryService.

Every Shipyard version is visible to MLflow (Shipyard-format ones too, with their
``runs:/`` source); MLflow-format folders register with flavor ``mlflow`` (see
``_register``). Stages are MLflow's deprecated predecessor of aliases: a version is in
stage ``Archived`` when Shipyard archived it, else ``None``.
"""

from __future__ import annotations

import json
from typing import Any

from shipyard import errors
from shipyard.registry import VersionStatus, parse_model_uri

from . import _convert as cv
from . import _filter as flt
from ._http import Args, Ctx, as_int, not_implemented
from ._ids import (
    MODEL_DIR,
    MODEL_VERSIONS_TAG,
    ExperimentIds,
    artifact_uri,
    model_id_of,
    parse_artifact_path,
)
from ._models import model_run
from ._register import MLFLOW_FLAVOR, register_folder, set_version_description

__all__ = ["ROUTES"]

_STATUS = {"pending": "PENDING_REGISTRATION", "ready": "READY", "archived": "READY",
           "failed": "FAILED_REGISTRATION"}


class _Sources:
    """The runs behind a batch of versions' sources, fetched once."""

    def __init__(self, ctx: Ctx, versions: list[Any]) -> None:
        self.ids = ExperimentIds(ctx.tracking)
        run_ids = {self.split(v.source)[0] for v in versions}
        self.runs = {r.run_id: r for r in ctx.tracking.get_runs(sorted(run_ids - {""}))}

    @staticmethod
    def split(source: str) -> tuple[str, str]:
        if not source.startswith("runs:/"):
            return "", ""
        run_id, _, path = source[len("runs:/"):].strip("/").partition("/")
        return run_id, path

    def model_id(self, v: Any) -> str | None:
        run_id, path = self.split(v.source)
        r = self.runs.get(run_id)
        return model_id_of(run_id) if r is not None and cv.is_logged_model(r) \
            and path == MODEL_DIR else None

    def download_uri(self, v: Any) -> str:
        run_id, path = self.split(v.source)
        r = self.runs.get(run_id)
        if r is None:
            raise errors.NotFound(f"the source run of {v.uri} does not exist")
        return artifact_uri(self.ids.to_mlflow(r.experiment_id), run_id, path)

    def version(self, v: Any) -> dict[str, Any]:
        model_id = self.model_id(v)
        source = v.source
        if model_id:
            source = f"models:/{model_id}"
        elif v.flavor == MLFLOW_FLAVOR and self.split(v.source)[0] in self.runs:
            source = self.download_uri(v)
        out = {"name": v.name, "version": str(v.version), "creation_timestamp": v.creation_time,
               "last_updated_timestamp": v.last_update_time, "user_id": v.creator or "",
               "current_stage": "Archived" if v.status is VersionStatus.ARCHIVED else "None",
               "source": source, "status": _STATUS[v.status.value], "tags": cv.kv(v.tags),
               "run_link": "", "aliases": list(v.aliases)}
        optional = {"description": v.description, "run_id": v.run_id, "model_id": model_id}
        out.update({k: val for k, val in optional.items() if val})
        return out

    def model(self, m: Any, latest: Any | None) -> dict[str, Any]:
        return {"name": m.name, "creation_timestamp": m.creation_time,
                "last_updated_timestamp": m.last_update_time, "user_id": m.owner or "",
                **({"description": m.description} if m.description else {}),
                "latest_versions": [self.version(latest)] if latest is not None else [],
                "tags": cv.kv(m.tags),
                "aliases": [{"alias": k, "version": str(v)} for k, v in m.aliases.items()]}


def _latest(versions: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in versions:
        if v.name not in out or v.version > out[v.name].version:
            out[v.name] = v
    return out


def _version_arg(a: Args) -> int:
    return as_int(a.req("version"), "version")


# -- registered models -------------------------------------------------------------------------

def create_registered_model(ctx: Ctx, a: Args) -> Any:
    m = ctx.registry.create_model(a.req("name"), description=a.text("description"),
                                  tags=a.pairs("tags"))
    return {"registered_model": _Sources(ctx, []).model(m, None)}


def get_registered_model(ctx: Ctx, a: Args) -> Any:
    m = ctx.registry.get_model(a.req("name"))
    versions = ctx.registry.search_versions(name=m.name)
    latest = _latest(versions).get(m.name)
    return {"registered_model": _Sources(ctx, [latest] if latest else []).model(m, latest)}


def _model_value(m: Any, entity: str, key: str) -> Any:
    if entity == "tag":
        return m.tags.get(key)
    if entity != "attribute":
        return None
    return {"name": m.name, "creation_timestamp": m.creation_time,
            "last_updated_timestamp": m.last_update_time, "description": m.description,
            "user_id": m.owner}.get(key)


def search_registered_models(ctx: Ctx, a: Args) -> Any:
    clauses = flt.parse(a.text("filter"))
    found = [m for m in ctx.registry.search_models() if flt.matches(m, clauses, _model_value)]
    found = flt.sort(found, a.strings("order_by"), _model_value, ["name ASC"])
    chunk, token = flt.page(found, a.integer("max_results", default=100), a.text("page_token"))
    latest = _latest(ctx.registry.search_versions()) if chunk else {}
    sources = _Sources(ctx, [latest[m.name] for m in chunk if m.name in latest])
    out: dict[str, Any] = {"registered_models": [sources.model(m, latest.get(m.name))
                                                 for m in chunk]}
    if token:
        out["next_page_token"] = token
    return out


def update_registered_model(ctx: Ctx, a: Args) -> Any:
    name = a.req("name")
    if a.has("description"):
        ctx.registry.update_model(name, description=a.req("description"))
    return get_registered_model(ctx, Args({"name": name}))


def set_registered_model_tag(ctx: Ctx, a: Args) -> Any:
    ctx.registry.update_model(a.req("name"), tags={a.req("key"): a.text("value") or ""})
    return {}


def get_latest_versions(ctx: Ctx, a: Args) -> Any:
    """The newest version per stage: ``None`` (not archived) and ``Archived``."""
    ctx.registry.get_model(a.req("name"))
    stages = {s.lower() for s in a.strings("stages")} or {"none", "archived"}
    newest: dict[str, Any] = {}
    for v in ctx.registry.search_versions(name=a.req("name")):
        stage = "archived" if v.status is VersionStatus.ARCHIVED else "none"
        if stage in stages and (stage not in newest or v.version > newest[stage].version):
            newest[stage] = v
    chosen = sorted(newest.values(), key=lambda v: v.version)
    sources = _Sources(ctx, chosen)
    return {"model_versions": [sources.version(v) for v in chosen]}


# -- versions ----------------------------------------------------------------------------------

def _resolve_source(ctx: Ctx, a: Args) -> tuple[str, str, str, str | None]:
    """(run holding the files, folder, run for lineage, logged model id) of a version source."""
    source = a.req("source")
    model_id = a.text("model_id")
    if not model_id and source.startswith("models:/m-") and "/" not in source[8:].strip("/"):
        model_id = source[len("models:/"):].strip("/")
    if model_id:
        r = model_run(ctx, model_id)
        return r.run_id, MODEL_DIR, r.parent_run_id or r.run_id, model_id_of(r.run_id)
    if source.startswith("mlflow-artifacts:"):
        rest = source[len("mlflow-artifacts:"):]
        if rest.startswith("//"):  # mlflow-artifacts://host:port/<path>
            rest = rest[2:].partition("/")[2]
        _, run_id, path = parse_artifact_path(rest.lstrip("/"))
    elif source.startswith("runs:/"):
        ref = parse_model_uri(source)
        assert ref.run_id and ref.path
        run_id, path = ref.run_id, ref.path
    elif source.startswith("models:/"):
        version = ctx.registry.resolve(source)
        run_id, path = _Sources.split(version.source)
    else:
        raise errors.InvalidInput(
            f"unsupported model source {source!r}: use models:/<model_id>, runs:/<run_id>/<path>"
            ", models:/<name>/<version> or an mlflow-artifacts:/ URI of this server",
            field="source")
    if not path:
        raise errors.InvalidInput(f"model source {source!r} must name a folder of the run's "
                                  "artifacts, not the artifact root", field="source")
    r = ctx.tracking.get_run(run_id)
    if cv.is_logged_model(r) and path == MODEL_DIR:
        return run_id, path, r.parent_run_id or run_id, model_id_of(run_id)
    return run_id, path, a.text("run_id") or run_id, None


def create_model_version(ctx: Ctx, a: Args) -> Any:
    run_id, path, lineage, model_id = _resolve_source(ctx, a)
    version = register_folder(ctx.registry, name=a.req("name"), run_id=run_id, path=path,
                              lineage_run_id=lineage, description=a.text("description"),
                              tags=a.pairs("tags"), source=a.req("source"))
    if model_id:  # MLflow lists a logged model's registrations in this tag
        backing = ctx.tracking.get_run(run_id)
        try:
            known = json.loads(backing.tags.get(MODEL_VERSIONS_TAG) or "[]")
        except ValueError:
            known = []
        known = [*known, {"name": version.name, "version": str(version.version)}] \
            if isinstance(known, list) else []
        ctx.tracking.set_tag(run_id, MODEL_VERSIONS_TAG, json.dumps(known))
    return {"model_version": _Sources(ctx, [version]).version(version)}


def get_model_version(ctx: Ctx, a: Args) -> Any:
    v = ctx.registry.get_version(a.req("name"), _version_arg(a))
    return {"model_version": _Sources(ctx, [v]).version(v)}


def update_model_version(ctx: Ctx, a: Args) -> Any:
    name, number = a.req("name"), _version_arg(a)
    if a.has("description"):
        set_version_description(ctx.registry, name, number, a.req("description"))
    return get_model_version(ctx, Args({"name": name, "version": number}))


def delete_model_version(ctx: Ctx, a: Args) -> Any:
    ctx.registry.delete_version(a.req("name"), _version_arg(a))
    return {}


def _version_value(v: Any, entity: str, key: str) -> Any:
    if entity == "tag":
        return v.tags.get(key)
    if entity != "attribute":
        return None
    return {"name": v.name, "version_number": v.version, "version": v.version,
            "run_id": v.run_id, "source_path": v.source, "source": v.source,
            "creation_timestamp": v.creation_time, "last_updated_timestamp": v.last_update_time,
            "current_stage": "Archived" if v.status is VersionStatus.ARCHIVED else "None",
            "status": _STATUS[v.status.value], "user_id": v.creator,
            "model_id": f"m-{_Sources.split(v.source)[0]}"
            if _Sources.split(v.source)[1] == MODEL_DIR else None}.get(key)


def search_model_versions(ctx: Ctx, a: Args) -> Any:
    clauses = flt.parse(a.text("filter"))
    found = [v for v in ctx.registry.search_versions() if flt.matches(v, clauses, _version_value)]
    found = flt.sort(found, a.strings("order_by"), _version_value,
                     ["name ASC", "version_number DESC"])
    chunk, token = flt.page(found, a.integer("max_results", default=10000),
                            a.text("page_token"), limit=200000)
    sources = _Sources(ctx, chunk)
    out: dict[str, Any] = {"model_versions": [sources.version(v) for v in chunk]}
    if token:
        out["next_page_token"] = token
    return out


def set_model_version_tag(ctx: Ctx, a: Args) -> Any:
    ctx.registry.set_version_tag(a.req("name"), _version_arg(a), a.req("key"),
                                 a.text("value") or "")
    return {}


def transition_stage(ctx: Ctx, a: Args) -> Any:
    """Only ``Archived`` and ``None`` exist here; other stages are aliases in Shipyard."""
    name, number, stage = a.req("name"), _version_arg(a), a.req("stage").lower()
    if stage == "archived":
        ctx.registry.archive_version(name, number)
    elif stage == "none":
        if ctx.registry.get_version(name, number).status is VersionStatus.ARCHIVED:
            ctx.registry.set_version_status(name, number, VersionStatus.READY)
    else:
        raise errors.InvalidInput(f"stage {a.req('stage')!r} is not supported: Shipyard uses "
                                  "aliases (set_registered_model_alias) instead of stages",
                                  field="stage")
    return get_model_version(ctx, Args({"name": name, "version": number}))


def get_download_uri(ctx: Ctx, a: Args) -> Any:
    v = ctx.registry.get_version(a.req("name"), _version_arg(a))
    return {"artifact_uri": _Sources(ctx, [v]).download_uri(v)}


def set_alias(ctx: Ctx, a: Args) -> Any:
    ctx.registry.set_alias(a.req("name"), a.req("alias"), _version_arg(a))
    return {}


def delete_alias(ctx: Ctx, a: Args) -> Any:
    ctx.registry.delete_alias(a.req("name"), a.req("alias"))
    return {}


def get_by_alias(ctx: Ctx, a: Args) -> Any:
    name, alias = a.req("name"), a.req("alias")
    ctx.registry.get_model(name)
    v = ctx.registry.resolve(f"models:/{name}@{alias}")
    return {"model_version": _Sources(ctx, [v]).version(v)}


def _unsupported(what: str) -> Any:
    def handler(ctx: Ctx, a: Args) -> Any:
        raise not_implemented(what)

    handler.__name__ = "unsupported_" + what.replace(" ", "_")
    return handler


ROUTES = [
    ("POST", "/registered-models/create", create_registered_model),
    ("GET", "/registered-models/get", get_registered_model),
    ("GET", "/registered-models/search", search_registered_models),
    ("POST", "/registered-models/search", search_registered_models),
    ("PATCH", "/registered-models/update", update_registered_model),
    ("POST", "/registered-models/set-tag", set_registered_model_tag),
    ("POST", "/registered-models/get-latest-versions", get_latest_versions),
    ("GET", "/registered-models/get-latest-versions", get_latest_versions),
    ("POST", "/registered-models/alias", set_alias),
    ("DELETE", "/registered-models/alias", delete_alias),
    ("GET", "/registered-models/alias", get_by_alias),
    ("POST", "/registered-models/rename", _unsupported("renaming a registered model")),
    ("DELETE", "/registered-models/delete", _unsupported("deleting a registered model")),
    ("DELETE", "/registered-models/delete-tag", _unsupported("deleting a registered model tag")),
    ("POST", "/model-versions/create", create_model_version),
    ("GET", "/model-versions/get", get_model_version),
    ("PATCH", "/model-versions/update", update_model_version),
    ("DELETE", "/model-versions/delete", delete_model_version),
    ("GET", "/model-versions/search", search_model_versions),
    ("POST", "/model-versions/search", search_model_versions),
    ("POST", "/model-versions/set-tag", set_model_version_tag),
    ("DELETE", "/model-versions/delete-tag", _unsupported("deleting a model version tag")),
    ("POST", "/model-versions/transition-stage", transition_stage),
    ("GET", "/model-versions/get-download-uri", get_download_uri),
]
