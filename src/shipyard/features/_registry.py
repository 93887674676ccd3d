"""The feature registry: every applied version of every definition, with plan and apply.

Versioning rule: each definition is stored as its ``spec()`` JSON (canonical: sorted keys)
and that JSON's SHA-256. Applying a definition whose digest differs from its latest stored
version writes a new row, ``version + 1``; versions are never changed or deleted, so old
ones stay readable with ``get(kind, name, version)``. Each update is also classified:
*breaking* when data or models built on the old version are affected (a feature removed or
re-typed, entities or join keys changed, the event timestamp field changed, an on-demand
view's inputs, request fields or function changed, a service dropping a feature) — the plan
says why — and *compatible* otherwise (a feature added; description, owner, tags, TTL…).
Definitions in the registry but not in the repository are reported, never deleted.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from shipyard import errors
from shipyard.store import Database, add_edge, now_ms, record_event, tables

from ._definitions import DataFrameSource, FeatureView, FileSource, parse_feature_ref
from ._repo import KIND_CLASSES, Definition, Kind, Repo

__all__ = ["FeatureRegistry", "FeatureObject", "Plan", "PlanItem", "Change", "diff_specs",
           "spec_digest"]

_t = tables.feature_objects


class Change(StrEnum):
    """What ``apply`` does (or did) to one definition."""

    CREATE = "create"
    UPDATE_COMPATIBLE = "update-compatible"
    UPDATE_BREAKING = "update-breaking"
    UNCHANGED = "unchanged"
    NOT_IN_REPO = "not-in-repo"


class FeatureObject(BaseModel):
    """One stored version of a definition."""

    model_config = ConfigDict(frozen=True)

    kind: Kind
    name: str
    version: int
    digest: str
    spec: dict[str, Any]
    creation_time: int
    creator: str | None = None

    def definition(self) -> Definition:
        """The definition model (an on-demand view comes back without its function)."""
        return KIND_CLASSES[self.kind].model_validate(self.spec)


class PlanItem(BaseModel):
    """One definition's change: versions before/after, and why it is breaking if it is."""

    model_config = ConfigDict(frozen=True)

    kind: Kind
    name: str
    change: Change
    from_version: int | None = None
    to_version: int | None = None
    breaking: bool = False
    reasons: list[str] = Field(default_factory=list, description="why it is breaking")
    changes: list[str] = Field(default_factory=list, description="every field change")
    digest: str | None = None
    file: str | None = None

    @property
    def writes(self) -> bool:
        return self.change in (Change.CREATE, Change.UPDATE_COMPATIBLE, Change.UPDATE_BREAKING)


class Plan(BaseModel):
    """What ``apply`` would do (``applied`` False) or did (True), one item per definition."""

    items: list[PlanItem] = Field(default_factory=list)
    applied: bool = False

    def of(self, *changes: Change) -> list[PlanItem]:
        return [i for i in self.items if i.change in changes]

    @property
    def has_changes(self) -> bool:
        return any(i.writes for i in self.items)

    def summary(self) -> str:
        counts = {c: len(self.of(c)) for c in Change}
        updates = counts[Change.UPDATE_COMPATIBLE] + counts[Change.UPDATE_BREAKING]
        verb = ("created", "updated") if self.applied else ("to create", "to update")
        return (f"{counts[Change.CREATE]} {verb[0]}, {updates} {verb[1]} "
                f"({counts[Change.UPDATE_BREAKING]} breaking), "
                f"{counts[Change.UNCHANGED]} unchanged, {counts[Change.NOT_IN_REPO]} not in repo")


def canonical_json(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_digest(spec: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``spec``: equal specs, equal digests."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


@dataclass
class _Staged:
    """A repository definition as it would be stored, plus Parquet files to write first."""

    specs: dict[tuple[Kind, str], dict[str, Any]] = field(default_factory=dict)
    files: dict[tuple[Kind, str], str | None] = field(default_factory=dict)
    frames: dict[Path, bytes] = field(default_factory=dict)


class FeatureRegistry:
    """Plans and applies feature repositories; reads stored definitions and their versions."""

    def __init__(self, db: Database, actor: str, *, home: Path | None = None) -> None:
        self.db = db
        self.actor = actor
        self._home = home

    @property
    def sources_dir(self) -> Path:
        """Where DataFrameSources are written as Parquet (``<home>/features/sources``)."""
        if self._home is None:
            from shipyard.config import get_settings

            self._home = get_settings().home
        return self._home / "features" / "sources"

    # -- plan and apply --------------------------------------------------------------------

    def plan(self, repo: Repo) -> Plan:
        """What :meth:`apply` would write for ``repo``, without writing anything."""
        staged = self._stage(repo)
        with self.db.read() as conn:
            return _diff_plan(staged, _latest(conn))

    def apply(self, repo: Repo) -> Plan:
        """Store every new or changed definition of ``repo`` as a new version, atomically.

        DataFrameSources are written to Parquet first (an interrupted apply leaves at most
        an unreferenced file); then one transaction inserts the versions, a ``feature.apply``
        audit event per written definition and lineage edges to what each one reads.
        """
        staged = self._stage(repo)
        for path, data in staged.frames.items():
            _write_file(path, data)
        try:
            with self.db.write() as conn:
                plan = _diff_plan(staged, _latest(conn))
                self._write(conn, plan, staged)
        except errors.Conflict as exc:
            raise errors.Conflict("the feature registry changed while applying (another "
                                  f"apply at the same time?); run apply again ({exc})") from exc
        return plan.model_copy(update={"applied": True})

    def _write(self, conn: sa.Connection, plan: Plan, staged: _Staged) -> None:
        now = now_ms()
        after = {(i.kind, i.name): i.to_version for i in plan.items}
        for item in plan.items:
            if not item.writes:
                continue
            spec = staged.specs[(item.kind, item.name)]
            conn.execute(_t.insert(), {
                "kind": item.kind.value, "name": item.name, "version": item.to_version,
                "spec_json": canonical_json(spec), "digest": item.digest,
                "creation_time": now, "creator": self.actor})
            node = (item.kind.value, f"{item.name}/{item.to_version}")
            for kind, name in _upstream(item.kind, spec):
                version = after.get((kind, name))
                if version is not None:
                    add_edge(conn, (kind.value, f"{name}/{version}"), "input_of", node)
            record_event(conn, actor=self.actor, action="feature.apply",
                         object_type=item.kind.value, object_id=item.name,
                         details={"version": item.to_version, "change": item.change.value,
                                  "breaking": item.breaking, "reasons": item.reasons,
                                  "digest": item.digest})

    def _stage(self, repo: Repo) -> _Staged:
        staged = _Staged()
        for kind, definition in repo.definitions():
            key = (kind, definition.name)
            if isinstance(definition, FeatureView):
                definition = self._storable_view(definition, repo.path, staged)
            staged.specs[key] = definition.spec()
            staged.files[key] = repo.file_of(kind, definition.name)
        return staged

    def _storable_view(self, view: FeatureView, repo_dir: Path | None,
                       staged: _Staged) -> FeatureView:
        """The view as stored: frames become Parquet files, relative paths absolute."""
        source = view.source
        if isinstance(source, DataFrameSource):
            data = _parquet_bytes(view.name, source)
            digest12 = hashlib.sha256(data).hexdigest()[:12]
            path = self.sources_dir / f"{source.name}-{digest12}.parquet"
            staged.frames[path] = data
            stored = FileSource(path=str(path), timestamp_field=source.timestamp_field,
                                created_timestamp_field=source.created_timestamp_field)
            return view.model_copy(update={"source": stored})
        if (isinstance(source, FileSource) and repo_dir is not None and "://" not in source.path
                and not Path(source.path).expanduser().is_absolute()):
            resolved = str((repo_dir / source.path).resolve())
            return view.model_copy(update={"source": source.model_copy(update={"path": resolved})})
        return view

    # -- reading ---------------------------------------------------------------------------

    def get(self, kind: Kind | str, name: str, version: int | None = None) -> Definition:
        """The latest (or the given) version of a definition, as its model."""
        return self.get_object(kind, name, version).definition()

    def get_object(self, kind: Kind | str, name: str,
                   version: int | None = None) -> FeatureObject:
        """The stored row of the latest (or the given) version, with digest and creator."""
        k = _kind(kind)
        query = sa.select(_t).where(_t.c.kind == k.value, _t.c.name == name)
        query = (query.where(_t.c.version == version) if version is not None
                 else query.order_by(_t.c.version.desc()).limit(1))
        with self.db.read() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            which = f" version {version}" if version is not None else ""
            raise errors.NotFound(f"{k.label} {name!r}{which} is not in the feature registry")
        return _object(row)

    def versions(self, kind: Kind | str, name: str) -> builtins.list[FeatureObject]:
        """Every stored version of a definition, oldest first."""
        k = _kind(kind)
        with self.db.read() as conn:
            rows = conn.execute(sa.select(_t).where(_t.c.kind == k.value, _t.c.name == name)
                                .order_by(_t.c.version)).mappings().all()
        if not rows:
            raise errors.NotFound(f"{k.label} {name!r} is not in the feature registry")
        return [_object(r) for r in rows]

    def history(self, kind: Kind | str, name: str) -> builtins.list[PlanItem]:
        """Each version as a change from the one before (created, compatible or breaking)."""
        found = self.versions(kind, name)
        items = [_item(found[0].kind, name, None, found[0])]
        items += [_item(new.kind, name, old, new) for old, new in zip(found, found[1:],
                                                                        strict=False)]
        return items

    def list(self, kind: Kind | str | None = None) -> builtins.list[FeatureObject]:
        """The latest version of every definition (of one kind), by kind then name."""
        with self.db.read() as conn:
            latest = _latest(conn, _kind(kind) if kind is not None else None)
        order = builtins.list(KIND_CLASSES)
        return sorted(latest.values(), key=lambda o: (order.index(o.kind), o.name))


# -- helpers ---------------------------------------------------------------------------------

def _kind(kind: Kind | str) -> Kind:
    try:
        return Kind(kind)
    except ValueError:
        raise errors.InvalidInput(f"unknown kind {kind!r}: use one of "
                                  f"{', '.join(k.value for k in Kind)}", field="kind") from None


def _object(row: Any) -> FeatureObject:
    return FeatureObject(kind=Kind(row["kind"]), name=row["name"], version=row["version"],
                         digest=row["digest"], spec=json.loads(row["spec_json"]),
                         creation_time=row["creation_time"], creator=row["creator"])


def _latest(conn: sa.Connection, kind: Kind | None = None) -> dict[tuple[Kind, str],
                                                                     FeatureObject]:
    top = (sa.select(_t.c.kind, _t.c.name, sa.func.max(_t.c.version).label("version"))
           .group_by(_t.c.kind, _t.c.name))
    if kind is not None:
        top = top.where(_t.c.kind == kind.value)
    sub = top.subquery()
    query = sa.select(_t).join(sub, sa.and_(_t.c.kind == sub.c.kind, _t.c.name == sub.c.name,
                                            _t.c.version == sub.c.version))
    return {(o.kind, o.name): o
            for o in (_object(r) for r in conn.execute(query).mappings())}


def _diff_plan(staged: _Staged, current: dict[tuple[Kind, str], FeatureObject]) -> Plan:
    items = []
    for (kind, name), spec in staged.specs.items():
        new = FeatureObject(kind=kind, name=name, version=0, digest=spec_digest(spec),
                            spec=spec, creation_time=0)
        item = _item(kind, name, current.get((kind, name)), new)
        items.append(item.model_copy(update={"file": staged.files.get((kind, name))}))
    order = builtins.list(KIND_CLASSES)
    for kind, name in sorted(set(current) - set(staged.specs),
                             key=lambda k: (order.index(k[0]), k[1])):
        old = current[(kind, name)]
        items.append(PlanItem(kind=kind, name=name, change=Change.NOT_IN_REPO,
                              from_version=old.version, digest=old.digest))
    return Plan(items=items)


def _item(kind: Kind, name: str, old: FeatureObject | None, new: FeatureObject) -> PlanItem:
    to_version = new.version or ((old.version if old else 0) + 1)
    if old is None:
        return PlanItem(kind=kind, name=name, change=Change.CREATE, to_version=to_version,
                        digest=new.digest)
    if old.digest == new.digest:
        return PlanItem(kind=kind, name=name, change=Change.UNCHANGED, from_version=old.version,
                        to_version=old.version, digest=old.digest)
    reasons, compatible = diff_specs(kind, old.spec, new.spec)
    change = Change.UPDATE_BREAKING if reasons else Change.UPDATE_COMPATIBLE
    return PlanItem(kind=kind, name=name, change=change, from_version=old.version,
                    to_version=to_version, breaking=bool(reasons), reasons=reasons,
                    changes=reasons + compatible, digest=new.digest)


def _upstream(kind: Kind, spec: dict[str, Any]) -> builtins.list[tuple[Kind, str]]:
    """What a definition reads: a view its entities, a service or on-demand view its views."""
    if kind is Kind.FEATURE_VIEW:
        return [(Kind.ENTITY, e) for e in spec.get("entities", [])]
    if kind is Kind.ENTITY:
        return []
    refs = spec.get("features" if kind is Kind.FEATURE_SERVICE else "inputs", [])
    views = dict.fromkeys(parse_feature_ref(r)[0] for r in refs)
    return [(k, v) for v in views for k in (Kind.FEATURE_VIEW, Kind.ON_DEMAND_VIEW)]


# -- diffing two specs -----------------------------------------------------------------------

def diff_specs(kind: Kind, old: dict[str, Any],
               new: dict[str, Any]) -> tuple[builtins.list[str], builtins.list[str]]:
    """(breaking reasons, compatible changes) between two specs of one definition."""
    breaking: builtins.list[str] = []
    compatible: builtins.list[str] = []
    handled: set[str] = set()

    def whole(key: str, is_breaking: bool) -> None:
        handled.add(key)
        if old.get(key) != new.get(key):
            (breaking if is_breaking else compatible).append(
                f"{key}: {_fmt(old.get(key))} → {_fmt(new.get(key))}")

    if kind in (Kind.FEATURE_VIEW, Kind.ON_DEMAND_VIEW):
        handled.add("schema")
        _diff_fields("feature", old.get("schema", []), new.get("schema", []), breaking,
                     compatible, added_breaks=False)
    if kind is Kind.FEATURE_VIEW:
        whole("entities", True)
        handled.add("source")
        old_src, new_src = old.get("source", {}), new.get("source", {})
        for key in sorted(set(old_src) | set(new_src)):
            if old_src.get(key) != new_src.get(key):
                (breaking if key == "timestamp_field" else compatible).append(
                    f"source.{key}: {_fmt(old_src.get(key))} → {_fmt(new_src.get(key))}")
    elif kind is Kind.ON_DEMAND_VIEW:
        whole("inputs", True)
        handled.update(("request_schema", "function_name", "function_source"))
        _diff_fields("request field", old.get("request_schema", []),
                     new.get("request_schema", []), breaking, compatible, added_breaks=True)
        if old.get("function_name") != new.get("function_name"):
            breaking.append(f"function: {_fmt(old.get('function_name'))} → "
                            f"{_fmt(new.get('function_name'))}")
        elif old.get("function_source") != new.get("function_source"):
            breaking.append("function source changed")
    elif kind is Kind.ENTITY:
        whole("join_keys", True)
        whole("value_type", True)
    elif kind is Kind.FEATURE_SERVICE:
        handled.add("features")
        before, after = old.get("features", []), new.get("features", [])
        breaking += [f"removed feature {r!r}" for r in before if r not in after]
        compatible += [f"added feature {r!r}" for r in after if r not in before]
        if set(before) == set(after) and before != after:
            compatible.append("feature order changed")
    for key in sorted((set(old) | set(new)) - handled):
        whole(key, False)
    return breaking, compatible


def _diff_fields(what: str, old: builtins.list[dict[str, Any]],
                 new: builtins.list[dict[str, Any]], breaking: builtins.list[str],
                 compatible: builtins.list[str], *, added_breaks: bool) -> None:
    before = {f["name"]: f for f in old}
    after = {f["name"]: f for f in new}
    for name, f in before.items():
        if name not in after:
            breaking.append(f"removed {what} {name!r}")
        elif f.get("dtype") != after[name].get("dtype"):
            breaking.append(f"{what} {name!r}: dtype {f.get('dtype')} → "
                            f"{after[name].get('dtype')}")
        elif f != after[name]:
            compatible.append(f"{what} {name!r}: description changed")
    for name in after:
        if name not in before:
            (breaking if added_breaks else compatible).append(f"added {what} {name!r}")
    if [n for n in before if n in after] != [n for n in after if n in before]:
        compatible.append(f"{what} order changed")


def _fmt(value: Any) -> str:
    if value is None:
        return "unset"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


# -- DataFrameSource -> Parquet --------------------------------------------------------------

def _parquet_bytes(view: str, source: DataFrameSource) -> bytes:
    frame = source.frame
    if frame is None:
        raise errors.InvalidInput(f"feature view {view!r}: DataFrameSource {source.name!r} has "
                                  "no frame; build it with DataFrameSource.of(name, frame)",
                                  field="source")
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(
            frame, preserve_index=False)
    except (TypeError, ValueError, pa.ArrowException) as exc:
        raise errors.InvalidInput(f"feature view {view!r}: DataFrameSource {source.name!r} is "
                                  f"not a pandas DataFrame or Arrow table ({exc})",
                                  field="source") from exc
    if source.timestamp_field not in table.column_names:
        raise errors.InvalidInput(f"feature view {view!r}: DataFrameSource {source.name!r} has "
                                  f"no timestamp column {source.timestamp_field!r}",
                                  field="source")
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` at ``path`` atomically (its name holds its digest: skip if present)."""
    if path.is_file() and path.stat().st_size == len(data):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
