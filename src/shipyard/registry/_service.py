"""The registry service: registered models, immutable versions, aliases with history.

Registration never copies model bytes: a version points at a model folder that a run logged
(content-addressed artifacts) and records the model's digest. Every load recomputes it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from shipyard import errors
from shipyard.models import MANIFEST, LoadedModel, Manifest, load_model_dir, save_model
from shipyard.models import manifest_digest as _manifest_digest
from shipyard.store import add_edge, edges_of, now_ms, record_event, tables
from shipyard.tracking import TrackingService
from shipyard.tracking import _validation as tv

from ._entities import AliasChange, ModelInfo, ModelVersion, RegisteredModel, VersionStatus
from ._store import RegistryStore
from ._uri import ModelRef, check_alias, check_model_name, parse_model_uri

__all__ = ["RegistryService", "AliasPolicy", "register_alias_policy", "clear_alias_policies"]

#: Called before an alias moves; raise PermissionDenied (or any ShipyardError) to block it.
AliasPolicy = Callable[["RegistryService", str, str, int | None, int | None], None]
_POLICIES: list[AliasPolicy] = []

GIT_COMMIT_TAG = "shipyard.git.commit"
GIT_DIRTY_TAG = "shipyard.git.dirty"


def register_alias_policy(policy: AliasPolicy) -> None:
    """Add a check that runs before every alias change (governance uses this)."""
    _POLICIES.append(policy)


def clear_alias_policies() -> None:
    _POLICIES.clear()


class RegistryService:
    """Registered models, versions, aliases; model logging and loading."""

    def __init__(self, tracking: TrackingService, cache_dir: Path) -> None:
        self.tracking = tracking
        self.db = tracking.db
        self.actor = tracking.actor
        self.cache_dir = cache_dir
        self.store = RegistryStore()

    def _audit(self, conn: Any, action: str, object_id: str,
               details: dict[str, Any] | None = None) -> None:
        record_event(conn, actor=self.actor, action=action, object_type="model",
                     object_id=object_id, details=details)

    # -- logging and loading -----------------------------------------------------------------

    def log_model(self, run_id: str, model: Any, artifact_path: str = "model", *,
                  flavor: str | None = None, input_example: Any = None,
                  signature: Any = None, registered_model_name: str | None = None,
                  metadata: dict[str, Any] | None = None) -> ModelInfo:
        """Save ``model`` as an artifact folder of ``run_id``; optionally register it."""
        path = tv.check_artifact_path(artifact_path)
        if registered_model_name is not None:
            check_model_name(registered_model_name)
        self.tracking.get_run(run_id)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "model"
            manifest, digest = save_model(model, folder, flavor=flavor,
                                          input_example=input_example, signature=signature,
                                          metadata=metadata)
            for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                rel = file.relative_to(folder).as_posix()
                self.tracking.log_artifact_file(run_id, file, f"{path}/{rel}")
        info = ModelInfo(run_id=run_id, artifact_path=path, model_uri=f"runs:/{run_id}/{path}",
                         digest=digest, flavor=manifest.flavor,
                         signature=manifest.signature.model_dump() if manifest.signature
                         else None)
        if registered_model_name is not None:
            version = self.register(info.model_uri, registered_model_name)
            info = info.model_copy(update={"registered_version": version})
        return info

    def load_model(self, uri: str) -> LoadedModel:
        """Load a model by URI; the digest is checked against the registered one."""
        ref = parse_model_uri(uri)
        if ref.kind == "run":
            assert ref.run_id and ref.path
            return self._load_run_model(ref.run_id, ref.path, None)
        version = self.resolve(uri)
        if version.status is VersionStatus.FAILED:
            raise errors.Conflict(f"{version.uri} failed registration and cannot be loaded")
        if version.flavor == "mlflow":
            raise errors.InvalidInput(
                f"{version.uri} was logged by the MLflow client in MLflow's format: load it "
                "with mlflow.pyfunc.load_model", field="uri")
        run_ref = parse_model_uri(version.source)
        assert run_ref.run_id and run_ref.path
        return self._load_run_model(run_ref.run_id, run_ref.path, version.digest)

    def _load_run_model(self, run_id: str, path: str, expected: str | None) -> LoadedModel:
        if expected is not None and (self.cache_dir / expected / MANIFEST).is_file():
            # Already downloaded: load_model_dir re-hashes every file against the digest,
            # so the store's copy of the manifest need not be fetched again.
            return load_model_dir(self.cache_dir / expected, expected)
        manifest, digest = self._read_manifest(run_id, path)
        if expected is not None and digest != expected:
            raise errors.IntegrityError(
                f"the model at runs:/{run_id}/{path} has digest {digest}, but {expected} was "
                "registered: the artifact was modified after registration; refusing to load")
        local = self.cache_dir / digest
        if not (local / MANIFEST).is_file():
            self._download(run_id, path, local)
        return load_model_dir(local, digest)

    def _read_manifest(self, run_id: str, path: str) -> tuple[Manifest, str]:
        try:
            raw = self.tracking.read_artifact(run_id, f"{path}/{MANIFEST}")
        except errors.NotFound:
            raise errors.NotFound(f"runs:/{run_id}/{path} is not a logged model "
                                  f"(no {MANIFEST})") from None
        manifest = Manifest.model_validate_json(raw)
        return manifest, _manifest_digest(manifest)

    def _download(self, run_id: str, path: str, local: Path) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.cache_dir, prefix=".dl-"))
        try:
            self.tracking.download_artifacts(run_id, path, staging)
            if local.exists():
                shutil.rmtree(local)
            os.replace(staging / path, local)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # -- registered models -------------------------------------------------------------------

    def create_model(self, name: str, *, description: str | None = None,
                     owner: str | None = None, tags: dict[str, Any] | None = None,
                     ) -> RegisteredModel:
        check_model_name(name)
        clean = {tv.check_key("tag", k): tv.check_tag_value(k, v) for k, v in
                 (tags or {}).items()}
        with self.db.write() as conn:
            if self.store.model_exists(conn, name):
                raise errors.AlreadyExists(f"registered model {name!r} already exists",
                                           field="name")
            self.store.insert_model(conn, name, description, owner or self.actor, now_ms())
            self.store.set_model_tags(conn, name, clean)
            self._audit(conn, "model.create", name, {"owner": owner or self.actor})
        return self.get_model(name)

    def get_model(self, name: str) -> RegisteredModel:
        with self.db.read() as conn:
            found = self.store.get_models(conn, tables.registered_models.c.name == name)
        if not found:
            raise errors.NotFound(f"registered model {name!r} does not exist")
        return found[0]

    def search_models(self, *, name_like: str | None = None,
                      tags: dict[str, str] | None = None) -> list[RegisteredModel]:
        """Registered models whose name matches the SQL LIKE pattern and that carry ``tags``."""
        RM, RMT = tables.registered_models, tables.registered_model_tags
        where: sa.ColumnElement[bool] = sa.true()
        if name_like:
            where = sa.and_(where, RM.c.name.like(name_like))
        for key, value in (tags or {}).items():
            where = sa.and_(where, sa.exists().where(RMT.c.name == RM.c.name, RMT.c.key == key,
                                                     RMT.c.value == value))
        with self.db.read() as conn:
            return self.store.get_models(conn, where)

    def update_model(self, name: str, *, description: str | None = None,
                     owner: str | None = None, tags: dict[str, Any] | None = None) -> None:
        with self.db.write() as conn:
            if not self.store.model_exists(conn, name):
                raise errors.NotFound(f"registered model {name!r} does not exist")
            values = {k: v for k, v in (("description", description), ("owner", owner))
                      if v is not None}
            self.store.update_model(conn, name, now_ms(), **values)
            self.store.set_model_tags(conn, name, {k: str(v) for k, v in (tags or {}).items()})
            self._audit(conn, "model.update", name, {**values, "tags": sorted(tags or {})})

    # -- versions ----------------------------------------------------------------------------

    def register(self, source_uri: str, name: str, *, description: str | None = None,
                 tags: dict[str, Any] | None = None,
                 feature_refs: list[str] | None = None) -> ModelVersion:
        """Register the model logged at ``runs:/<run_id>/<path>`` as the next version of ``name``.

        The model's files are checked against its manifest (they must all be stored objects)
        before the version is committed; the registered model is created if missing.
        """
        check_model_name(name)
        ref = parse_model_uri(source_uri)
        if ref.kind != "run":
            raise errors.InvalidInput("register takes a runs:/<run_id>/<path> URI",
                                      field="source")
        assert ref.run_id and ref.path
        manifest, digest = self._verify_logged(ref)
        run = self.tracking.get_run(ref.run_id)
        now = now_ms()
        with self.db.write() as conn:
            if feature_refs is None:  # the feature view versions the run trained on
                feature_refs = [f"{e['src_type']}:{e['src_id']}"
                                for e in edges_of(conn, ("run", ref.run_id))
                                if e["dst_type"] == "run" and e["dst_id"] == ref.run_id
                                and e["src_type"] in ("feature_view", "on_demand_view")]
            if not self.store.model_exists(conn, name, lock=True):
                if self.store.insert_model_if_absent(conn, name, self.actor, now):
                    self._audit(conn, "model.create", name, {"owner": self.actor})
                self.store.model_exists(conn, name, lock=True)  # now the row exists: lock it
            version = self.store.next_version(conn, name)
            self.store.insert_version(conn, {
                "name": name, "version": version, "status": VersionStatus.READY.value,
                "source": f"runs:/{ref.run_id}/{ref.path}", "run_id": ref.run_id,
                "digest": digest, "flavor": manifest.flavor,
                "signature_json": manifest.signature.model_dump_json()
                if manifest.signature else None,
                "environment_json": json.dumps(manifest.environment),
                "metrics_json": json.dumps(run.metrics),
                "code_commit": run.tags.get(GIT_COMMIT_TAG),
                "code_dirty": _bool_tag(run.tags.get(GIT_DIRTY_TAG)),
                "feature_refs_json": json.dumps(feature_refs) if feature_refs else None,
                "description": description, "creator": self.actor, "creation_time": now,
                "last_update_time": now})
            self.store.set_version_tags(conn, name, version,
                                        {k: str(v) for k, v in (tags or {}).items()})
            node = ("model_version", f"{name}/{version}")
            add_edge(conn, ("run", ref.run_id), "produced", node)
            self._audit(conn, "model.register", f"{name}/{version}",
                        {"source": source_uri, "digest": digest})
            return self.store.get_version(conn, name, version)

    def _verify_logged(self, ref: ModelRef) -> tuple[Manifest, str]:
        """Every file the manifest names is a stored artifact with that exact digest."""
        assert ref.run_id and ref.path
        manifest, digest = self._read_manifest(ref.run_id, ref.path)
        stored = {a.path[len(ref.path) + 1:]: a.digest
                  for a in self.tracking.list_artifacts(ref.run_id, ref.path)}
        for rel, want in manifest.files.items():
            if stored.get(rel) != want:
                raise errors.IntegrityError(
                    f"runs:/{ref.run_id}/{ref.path}: file {rel} is missing or differs from "
                    "the model's manifest; log the model again")
            if not self.tracking.artifacts.exists(want):
                raise errors.IntegrityError(f"the object of model file {rel} ({want}) is "
                                            "missing from the artifact store")
        return manifest, digest

    def get_version(self, name: str, version: int) -> ModelVersion:
        with self.db.read() as conn:
            return self.store.get_version(conn, name, int(version))

    def resolve(self, uri: str) -> ModelVersion:
        """The version a ``models:/`` URI names (by number, ``latest`` or ``@alias``)."""
        ref = parse_model_uri(uri)
        if ref.kind == "run":
            raise errors.InvalidInput("resolve takes a models:/ URI", field="uri")
        assert ref.name
        with self.db.read() as conn:
            if ref.kind == "version":
                assert ref.version is not None
                return self.store.get_version(conn, ref.name, ref.version)
            if ref.kind == "latest":
                MV = tables.model_versions
                number = conn.execute(sa.select(sa.func.max(MV.c.version)).where(
                    MV.c.name == ref.name,
                    MV.c.status == VersionStatus.READY.value)).scalar()
                if number is None:
                    raise errors.NotFound(f"model {ref.name!r} has no ready version")
                return self.store.get_version(conn, ref.name, number)
            assert ref.alias
            number = self.store.alias_version(conn, ref.name, ref.alias)
            if number is None:
                raise errors.NotFound(f"model {ref.name!r} has no alias {ref.alias!r}")
            return self.store.get_version(conn, ref.name, number)

    def search_versions(self, *, name: str | None = None, run_id: str | None = None,
                        alias: str | None = None, status: str | None = None,
                        flavor: str | None = None) -> list[ModelVersion]:
        MV, AL = tables.model_versions, tables.model_aliases
        where: sa.ColumnElement[bool] = sa.true()
        for column, value in ((MV.c.name, name), (MV.c.run_id, run_id),
                              (MV.c.status, status), (MV.c.flavor, flavor)):
            if value is not None:
                where = sa.and_(where, column == value)
        if alias is not None:
            where = sa.and_(where, sa.exists().where(AL.c.name == MV.c.name,
                                                     AL.c.version == MV.c.version,
                                                     AL.c.alias == alias))
        with self.db.read() as conn:
            return self.store.get_versions(conn, where)

    def set_version_status(self, name: str, version: int, status: VersionStatus | str) -> None:
        try:
            st = VersionStatus(status)
        except ValueError:
            raise errors.InvalidInput(f"invalid status {status!r}: use "
                                      f"{', '.join(s.value for s in VersionStatus)}",
                                      field="status") from None
        with self.db.write() as conn:
            current = self.store.get_version(conn, name, version)
            if st is VersionStatus.ARCHIVED and current.aliases:
                raise errors.Conflict(f"{current.uri} is aliased as "
                                      f"{', '.join(current.aliases)}; move the aliases first")
            self.store.update_version(conn, name, version, status=st.value,
                                      last_update_time=now_ms())
            self._audit(conn, "model.set_status", f"{name}/{version}",
                        {"from": current.status.value, "to": st.value})

    def archive_version(self, name: str, version: int) -> None:
        self.set_version_status(name, version, VersionStatus.ARCHIVED)

    def delete_version(self, name: str, version: int) -> None:
        """Delete a version's registry entry; refused while an alias points at it."""
        with self.db.write() as conn:
            current = self.store.get_version(conn, name, version)
            if current.aliases:
                raise errors.Conflict(f"cannot delete {current.uri}: alias "
                                      f"{', '.join(current.aliases)} points to it")
            self.store.delete_version(conn, name, version)
            self._audit(conn, "model.delete_version", f"{name}/{version}",
                        {"digest": current.digest})

    def set_version_tag(self, name: str, version: int, key: str, value: Any) -> None:
        tv.check_key("tag", key)
        with self.db.write() as conn:
            self.store.get_version(conn, name, version)
            self.store.set_version_tags(conn, name, version, {key: tv.check_tag_value(key,
                                                                                      value)})
            self._audit(conn, "model.set_version_tag", f"{name}/{version}", {"key": key})

    # -- aliases -----------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int, *,
                  reason: str | None = None) -> AliasChange:
        """Point ``alias`` at ``version`` (moving it if set); policies may refuse."""
        check_alias(alias)
        with self.db.write() as conn:
            return self.set_alias_in(conn, name, alias, version, reason=reason)

    def set_alias_in(self, conn: Any, name: str, alias: str, version: int, *,
                     reason: str | None = None) -> AliasChange:
        """:meth:`set_alias` inside the caller's write transaction ``conn``, so that another
        capability's change (a deployment's promote) and the alias move commit together.
        Not a route: it takes a connection."""
        check_alias(alias)
        target = self.store.get_version(conn, name, int(version))
        if target.status is not VersionStatus.READY:
            raise errors.Conflict(f"{target.uri} is {target.status.value}; only ready "
                                  "versions can take an alias")
        previous = self.store.alias_version(conn, name, alias)
        for policy in _POLICIES:
            policy(self, name, alias, previous, target.version)
        self.store.put_alias(conn, name, alias, target.version)
        return self._record_alias(conn, name, alias, previous, target.version, reason)

    def delete_alias(self, name: str, alias: str, *, reason: str | None = None) -> AliasChange:
        check_alias(alias)
        with self.db.write() as conn:
            previous = self.store.alias_version(conn, name, alias)
            if previous is None:
                raise errors.NotFound(f"model {name!r} has no alias {alias!r}")
            for policy in _POLICIES:
                policy(self, name, alias, previous, None)
            self.store.remove_alias(conn, name, alias)
            return self._record_alias(conn, name, alias, previous, None, reason)

    def _record_alias(self, conn: Any, name: str, alias: str, previous: int | None,
                      new: int | None, reason: str | None) -> AliasChange:
        change = AliasChange(name=name, alias=alias, from_version=previous, to_version=new,
                             actor=self.actor, timestamp=now_ms(), reason=reason)
        self.store.record_alias_change(conn, change)
        self._audit(conn, "model.alias", name, {"alias": alias, "from": previous, "to": new})
        return change

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasChange]:
        with self.db.read() as conn:
            if not self.store.model_exists(conn, name):
                raise errors.NotFound(f"registered model {name!r} does not exist")
            return self.store.alias_history(conn, name, alias)

    def alias_at(self, name: str, alias: str, when_ms: int) -> int | None:
        """The version ``alias`` pointed to at ``when_ms`` (None: not set then)."""
        with self.db.read() as conn:
            return self.store.alias_at(conn, name, alias, when_ms)

    # -- lineage -----------------------------------------------------------------------------

    def lineage(self, uri: str) -> dict[str, Any]:
        """The graph so far: version → run → params/metrics → datasets → code commit."""
        version = self.resolve(uri)
        out: dict[str, Any] = {"model_version": version.model_dump(mode="json")}
        if version.run_id:
            run = self.tracking.get_run(version.run_id)
            out["run"] = {
                "run_id": run.run_id, "run_name": run.run_name,
                "experiment_id": run.experiment_id, "status": run.status.value,
                "params": run.params, "metrics": run.metrics,
                "parent_run_id": run.parent_run_id,
                "datasets": [d.model_dump(mode="json", by_alias=True) for d in run.inputs],
            }
        out["features"] = version.feature_refs
        out["code"] = {"commit": version.code_commit, "dirty": version.code_dirty}
        out["aliases"] = version.aliases
        return out


def _bool_tag(value: str | None) -> bool | None:
    return None if value is None else value.lower() in ("1", "true", "yes")
