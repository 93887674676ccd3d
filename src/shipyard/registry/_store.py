"""SQL for the registry: save and load only."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard import errors
from shipyard.store import insert_ignore, tables, upsert

from ._entities import AliasChange, ModelVersion, RegisteredModel, VersionStatus

__all__ = ["RegistryStore"]

RM, RMT = tables.registered_models, tables.registered_model_tags
MV, MVT = tables.model_versions, tables.model_version_tags
AL, AH = tables.model_aliases, tables.alias_history


# Built once: resolving an alias is a hot path (servers, loaders), and building the SQL
# expression each call cost more than running it.
_N: sa.BindParameter[str] = sa.bindparam("n")
_V: sa.BindParameter[int] = sa.bindparam("v")
_A: sa.BindParameter[str] = sa.bindparam("a")
_VERSION_Q = sa.select(MV).where(MV.c.name == _N, MV.c.version == _V)
_VERSION_TAGS_Q = sa.select(MVT.c.key, MVT.c.value).where(MVT.c.name == _N, MVT.c.version == _V)
_VERSION_ALIASES_Q = sa.select(AL.c.alias).where(AL.c.name == _N, AL.c.version == _V)
_ALIAS_Q = sa.select(AL.c.version).where(AL.c.name == _N, AL.c.alias == _A)


class RegistryStore:
    """Stateless SQL on the caller's connection."""

    # -- registered models -------------------------------------------------------------------

    @staticmethod
    def insert_model(conn: Connection, name: str, description: str | None, owner: str | None,
                     now: int) -> None:
        conn.execute(RM.insert().values(name=name, description=description, owner=owner,
                                        creation_time=now, last_update_time=now))

    @staticmethod
    def insert_model_if_absent(conn: Connection, name: str, owner: str | None,
                               now: int) -> bool:
        """Create model ``name`` unless it exists (True: created). Two PostgreSQL
        transactions registering a new name at once both get here; ON CONFLICT makes the
        second wait for the first and do nothing, instead of failing on the unique key."""
        stmt = insert_ignore(conn, RM, ["name"])
        result = conn.execute(stmt, {"name": name, "description": None, "owner": owner,
                                     "creation_time": now, "last_update_time": now})
        return bool(result.rowcount)

    @staticmethod
    def model_exists(conn: Connection, name: str, *, lock: bool = False) -> bool:
        q = sa.select(RM.c.name).where(RM.c.name == name)
        if lock and conn.dialect.name == "postgresql":
            q = q.with_for_update()
        return conn.execute(q).first() is not None

    @staticmethod
    def update_model(conn: Connection, name: str, now: int, **values: Any) -> None:
        conn.execute(RM.update().where(RM.c.name == name).values(last_update_time=now, **values))

    @staticmethod
    def set_model_tags(conn: Connection, name: str, tags: dict[str, str]) -> None:
        if tags:
            conn.execute(upsert(conn, RMT, ["name", "key"], ["value"]),
                         [{"name": name, "key": k, "value": v} for k, v in tags.items()])

    def get_models(self, conn: Connection, where: Any = None) -> list[RegisteredModel]:
        q = sa.select(RM).order_by(RM.c.name)
        if where is not None:
            q = q.where(where)
        rows = conn.execute(q).all()
        names = [r.name for r in rows]
        if not names:
            return []
        tags: dict[str, dict[str, str]] = {n: {} for n in names}
        for t in conn.execute(sa.select(RMT).where(RMT.c.name.in_(names))):
            tags[t.name][t.key] = t.value
        aliases: dict[str, dict[str, int]] = {n: {} for n in names}
        for a in conn.execute(sa.select(AL).where(AL.c.name.in_(names))):
            aliases[a.name][a.alias] = a.version
        latest = dict(conn.execute(sa.select(MV.c.name, sa.func.max(MV.c.version))
                                   .where(MV.c.name.in_(names)).group_by(MV.c.name)).all())
        return [RegisteredModel(name=r.name, description=r.description, owner=r.owner,
                                creation_time=r.creation_time,
                                last_update_time=r.last_update_time, tags=tags[r.name],
                                aliases=aliases[r.name], latest_version=latest.get(r.name))
                for r in rows]

    # -- versions ----------------------------------------------------------------------------

    @staticmethod
    def next_version(conn: Connection, name: str) -> int:
        current = conn.execute(sa.select(sa.func.max(MV.c.version))
                               .where(MV.c.name == name)).scalar()
        return int(current or 0) + 1

    @staticmethod
    def insert_version(conn: Connection, values: dict[str, Any]) -> None:
        conn.execute(MV.insert().values(**values))

    @staticmethod
    def update_version(conn: Connection, name: str, version: int, **values: Any) -> int:
        return conn.execute(MV.update().where(MV.c.name == name, MV.c.version == version)
                            .values(**values)).rowcount

    @staticmethod
    def set_version_tags(conn: Connection, name: str, version: int,
                         tags: dict[str, str]) -> None:
        if tags:
            conn.execute(upsert(conn, MVT, ["name", "version", "key"], ["value"]),
                         [{"name": name, "version": version, "key": k, "value": v}
                          for k, v in tags.items()])

    @staticmethod
    def delete_version(conn: Connection, name: str, version: int) -> None:
        conn.execute(MVT.delete().where(MVT.c.name == name, MVT.c.version == version))
        conn.execute(MV.delete().where(MV.c.name == name, MV.c.version == version))

    def get_versions(self, conn: Connection, where: Any) -> list[ModelVersion]:
        rows = conn.execute(sa.select(MV).where(where)
                            .order_by(MV.c.name, MV.c.version)).all()
        if not rows:
            return []
        keys = {(r.name, r.version) for r in rows}
        names = list({r.name for r in rows})
        tags: dict[tuple[str, int], dict[str, str]] = {k: {} for k in keys}
        for t in conn.execute(sa.select(MVT).where(MVT.c.name.in_(names))):
            if (t.name, t.version) in tags:
                tags[(t.name, t.version)][t.key] = t.value
        aliases: dict[tuple[str, int], list[str]] = {k: [] for k in keys}
        for a in conn.execute(sa.select(AL).where(AL.c.name.in_(names)).order_by(AL.c.alias)):
            if (a.name, a.version) in aliases:
                aliases[(a.name, a.version)].append(a.alias)
        return [_version(r, tags[(r.name, r.version)], aliases[(r.name, r.version)])
                for r in rows]

    def get_version(self, conn: Connection, name: str, version: int) -> ModelVersion:
        """One version, reading only its own tags and aliases (the hot path of resolve)."""
        params = {"n": name, "v": version}
        row = conn.execute(_VERSION_Q, params).first()
        if row is None:
            raise errors.NotFound(f"model {name!r} has no version {version}")
        tags = dict(conn.execute(_VERSION_TAGS_Q, params).all())
        aliases = sorted(conn.execute(_VERSION_ALIASES_Q, params).scalars())
        return _version(row, tags, aliases)

    # -- aliases -----------------------------------------------------------------------------

    @staticmethod
    def alias_version(conn: Connection, name: str, alias: str) -> int | None:
        return conn.execute(_ALIAS_Q, {"n": name, "a": alias}).scalar()

    @staticmethod
    def aliases_of(conn: Connection, name: str, version: int) -> list[str]:
        return list(conn.execute(sa.select(AL.c.alias).where(
            AL.c.name == name, AL.c.version == version)).scalars())

    @staticmethod
    def put_alias(conn: Connection, name: str, alias: str, version: int) -> None:
        conn.execute(upsert(conn, AL, ["name", "alias"], ["version"]),
                     {"name": name, "alias": alias, "version": version})

    @staticmethod
    def remove_alias(conn: Connection, name: str, alias: str) -> None:
        conn.execute(AL.delete().where(AL.c.name == name, AL.c.alias == alias))

    @staticmethod
    def record_alias_change(conn: Connection, change: AliasChange) -> None:
        conn.execute(AH.insert().values(**change.model_dump()))

    @staticmethod
    def alias_history(conn: Connection, name: str, alias: str | None) -> list[AliasChange]:
        q = sa.select(AH).where(AH.c.name == name)
        if alias is not None:
            q = q.where(AH.c.alias == alias)
        return [AliasChange(name=r.name, alias=r.alias, from_version=r.from_version,
                            to_version=r.to_version, actor=r.actor, timestamp=r.timestamp,
                            reason=r.reason)
                for r in conn.execute(q.order_by(AH.c.timestamp, AH.c.id))]

    @staticmethod
    def alias_at(conn: Connection, name: str, alias: str, when_ms: int) -> int | None:
        row = conn.execute(sa.select(AH.c.to_version).where(
            AH.c.name == name, AH.c.alias == alias, AH.c.timestamp <= when_ms)
            .order_by(AH.c.timestamp.desc(), AH.c.id.desc()).limit(1)).first()
        return None if row is None else row.to_version


def _version(r: Any, tags: dict[str, str], aliases: list[str]) -> ModelVersion:
    return ModelVersion(
        name=r.name, version=r.version, status=VersionStatus(r.status), source=r.source,
        run_id=r.run_id, digest=r.digest, flavor=r.flavor,
        signature=json.loads(r.signature_json) if r.signature_json else None,
        environment=json.loads(r.environment_json) if r.environment_json else {},
        metrics=json.loads(r.metrics_json) if r.metrics_json else {},
        code_commit=r.code_commit, code_dirty=r.code_dirty,
        feature_refs=json.loads(r.feature_refs_json) if r.feature_refs_json else [],
        description=r.description, creator=r.creator, creation_time=r.creation_time,
        last_update_time=r.last_update_time, tags=tags, aliases=aliases)
