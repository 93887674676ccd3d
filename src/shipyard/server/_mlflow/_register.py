"""Registering an MLflow-format model folder as a Shipyard model version.

Shipyard's ``RegistryService.register`` takes a Shipyard model folder (with
``shipyard-model.json``). An MLflow model folder (with ``MLmodel``) is registered here: a
READY version with flavor ``mlflow`` whose digest is the SHA-256 of one line
``<file sha256>  <path>\\n`` per file of the folder, sorted by path (what
``find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs sha256sum | sha256sum`` prints in
the folder). It is written like ``register`` writes: one transaction with the registered
model (created when missing), the version, its tags, the lineage edge from the run and the
audit events. A folder with ``shipyard-model.json`` goes to ``RegistryService.register``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from shipyard import errors
from shipyard.registry import VersionStatus, check_model_name
from shipyard.store import add_edge, now_ms, record_event

__all__ = ["MLFLOW_FLAVOR", "MLMODEL", "register_folder", "folder_digest",
           "set_version_description"]

MLFLOW_FLAVOR = "mlflow"
MLMODEL = "MLmodel"
SHIPYARD_MANIFEST = "shipyard-model.json"
_GIT_COMMIT_TAGS = ("shipyard.git.commit", "mlflow.source.git.commit")


def folder_digest(files: dict[str, str]) -> str:
    """The digest of a folder given ``{relative path: file sha256}``."""
    text = "".join(f"{files[rel]}  {rel}\n" for rel in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


def _clean_tags(tags: dict[str, str]) -> dict[str, str]:
    for key, value in tags.items():
        if not key or len(key) > 250:
            raise errors.InvalidInput(f"invalid tag key {key[:40]!r}: 1-250 characters",
                                      field="tags")
        if len(value) > 8000:
            raise errors.InvalidInput(f"tag {key!r} value is over 8000 characters",
                                      field="tags")
    return tags


def _mlmodel(tracking: Any, run_id: str, path: str) -> dict[str, Any]:
    import yaml

    raw = tracking.read_artifact(run_id, f"{path}/{MLMODEL}")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise errors.InvalidInput(f"runs:/{run_id}/{path}/{MLMODEL} is not valid YAML: {exc}",
                                  field="source") from None
    if not isinstance(data, dict):
        raise errors.InvalidInput(f"runs:/{run_id}/{path}/{MLMODEL} is not an MLflow model "
                                  "description", field="source")
    return data


def register_folder(registry: Any, *, name: str, run_id: str, path: str, lineage_run_id: str,
                    description: str | None = None, tags: dict[str, str] | None = None,
                    source: str | None = None) -> Any:
    """Register the model folder ``runs:/<run_id>/<path>`` as the next version of ``name``.

    ``lineage_run_id`` is the run the version is attributed to (the training run of an MLflow
    logged model, whose files live in the run nested under it).
    """
    check_model_name(name)
    tags = _clean_tags(dict(tags or {}))
    tracking = registry.tracking
    infos = tracking.list_artifacts(run_id, path)
    files = {i.path[len(path) + 1:]: i.digest for i in infos if i.path != path}
    if SHIPYARD_MANIFEST in files:
        return registry.register(f"runs:/{run_id}/{path}", name, description=description,
                                 tags=tags)
    if MLMODEL not in files:
        raise errors.InvalidInput(
            f"runs:/{run_id}/{path} is not a model folder: it has neither {MLMODEL} (MLflow) "
            f"nor {SHIPYARD_MANIFEST} (Shipyard)", field="source")
    for rel, digest in files.items():
        if not tracking.artifacts.exists(digest):
            raise errors.IntegrityError(f"the object of model file {rel} ({digest}) is missing "
                                        "from the artifact store")
    digest = folder_digest(files)
    mlmodel = _mlmodel(tracking, run_id, path)
    lineage = tracking.get_run(lineage_run_id)
    flavors = mlmodel.get("flavors") if isinstance(mlmodel.get("flavors"), dict) else {}
    pyfunc = flavors.get("python_function") if isinstance(flavors, dict) else None
    environment = {"format": MLFLOW_FLAVOR, "mlflow_version": mlmodel.get("mlflow_version"),
                   "flavors": sorted(flavors or {}),
                   "python": pyfunc.get("python_version") if isinstance(pyfunc, dict)
                   else None}
    if mlmodel.get("signature"):
        environment["mlflow_signature"] = mlmodel["signature"]
    commit = next((lineage.tags[t] for t in _GIT_COMMIT_TAGS if t in lineage.tags), None)
    node_source = f"runs:/{run_id}/{path}"
    now = now_ms()
    store = registry.store
    with registry.db.write() as conn:
        if not store.model_exists(conn, name, lock=True):
            store.insert_model(conn, name, None, registry.actor, now)
            record_event(conn, actor=registry.actor, action="model.create", object_type="model",
                         object_id=name, details={"owner": registry.actor})
        version = store.next_version(conn, name)
        store.insert_version(conn, {
            "name": name, "version": version, "status": VersionStatus.READY.value,
            "source": node_source, "run_id": lineage.run_id, "digest": digest,
            "flavor": MLFLOW_FLAVOR,
            "signature_json": None, "environment_json": json.dumps(environment, default=str),
            "metrics_json": json.dumps(lineage.metrics), "code_commit": commit,
            "code_dirty": None, "feature_refs_json": None, "description": description,
            "creator": registry.actor, "creation_time": now, "last_update_time": now})
        store.set_version_tags(conn, name, version, tags)
        add_edge(conn, ("run", lineage.run_id), "produced", ("model_version", f"{name}/{version}"))
        record_event(conn, actor=registry.actor, action="model.register", object_type="model",
                     object_id=f"{name}/{version}",
                     details={"source": source or node_source, "digest": digest,
                              "format": MLFLOW_FLAVOR})
        return store.get_version(conn, name, version)


def set_version_description(registry: Any, name: str, version: int, description: str) -> None:
    """Change a version's description (the registry service has no call for it)."""
    with registry.db.write() as conn:
        registry.store.get_version(conn, name, version)
        registry.store.update_version(conn, name, version, description=description,
                                      last_update_time=now_ms())
        record_event(conn, actor=registry.actor, action="model.update_version",
                     object_type="model", object_id=f"{name}/{version}",
                     details={"description": description[:200]})
