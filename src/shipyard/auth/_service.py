"""Users, API tokens and roles.

Roles are ordered: ``viewer`` (read) < ``editor`` (write experiments, runs, models) <
``approver`` (governance decisions) < ``admin`` (users, tokens, settings). A token is
``sy_<id>_<secret>``; only its SHA-256 is stored, and it is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import secrets
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from shipyard import errors
from shipyard.store import Database, now_ms, record_event, tables

__all__ = ["Role", "User", "ApiToken", "NewToken", "AuthService", "role_allows"]

U, T = tables.users, tables.api_tokens


class Role(StrEnum):
    VIEWER = "viewer"
    EDITOR = "editor"
    APPROVER = "approver"
    ADMIN = "admin"


_RANK = {Role.VIEWER: 1, Role.EDITOR: 2, Role.APPROVER: 3, Role.ADMIN: 4}


def role_allows(have: Role | str, need: Role | str) -> bool:
    """Whether a user with role ``have`` may do what needs ``need``."""
    return _RANK[Role(have)] >= _RANK[Role(need)]


class User(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    role: Role
    disabled: bool = False
    creation_time: int
    creator: str | None = None


class ApiToken(BaseModel):
    model_config = ConfigDict(frozen=True)
    token_id: str
    user_name: str
    description: str | None = None
    creation_time: int
    expires_time: int | None = None
    revoked: bool = False
    last_used_time: int | None = None


class NewToken(BaseModel):
    """A just-created token: ``token`` is the secret, shown this once."""

    model_config = ConfigDict(frozen=True)
    token_id: str
    user_name: str
    token: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 128 or any(
            c in name for c in " \t\n/:"):
        raise errors.InvalidInput(f"invalid user name {name!r}: 1-128 characters, no spaces, "
                                  "'/' or ':'", field="name")
    return name


def _role(role: Any) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise errors.InvalidInput(f"invalid role {role!r}: use one of "
                                  f"{', '.join(r.value for r in Role)}", field="role") from None


class AuthService:
    """Users and tokens in the metadata database; every change is audited."""

    def __init__(self, db: Database, actor: str) -> None:
        self.db = db
        self.actor = actor

    def _audit(self, conn: Any, action: str, object_id: str, details: dict[str, Any]) -> None:
        record_event(conn, actor=self.actor, action=action, object_type="user",
                     object_id=object_id, details=details)

    def create_user(self, name: str, role: str = "viewer") -> User:
        _check_name(name)
        checked = _role(role)
        with self.db.write() as conn:
            if conn.execute(sa.select(U.c.name).where(U.c.name == name)).first():
                raise errors.AlreadyExists(f"user {name!r} already exists", field="name")
            conn.execute(U.insert().values(name=name, role=checked.value, disabled=False,
                                           creation_time=now_ms(), creator=self.actor))
            self._audit(conn, "user.create", name, {"role": checked.value})
        return self.get_user(name)

    def get_user(self, name: str) -> User:
        with self.db.read() as conn:
            row = conn.execute(sa.select(U).where(U.c.name == name)).first()
        if row is None:
            raise errors.NotFound(f"user {name!r} does not exist")
        return User.model_validate(row._mapping)

    def list_users(self) -> list[User]:
        with self.db.read() as conn:
            return [User.model_validate(r._mapping)
                    for r in conn.execute(sa.select(U).order_by(U.c.name))]

    def set_role(self, name: str, role: str) -> User:
        checked = _role(role)
        with self.db.write() as conn:
            if not conn.execute(U.update().where(U.c.name == name)
                                .values(role=checked.value)).rowcount:
                raise errors.NotFound(f"user {name!r} does not exist")
            self._audit(conn, "user.set_role", name, {"role": checked.value})
        return self.get_user(name)

    def disable_user(self, name: str) -> User:
        """Disable a user: their tokens stop working at once."""
        with self.db.write() as conn:
            if not conn.execute(U.update().where(U.c.name == name)
                                .values(disabled=True)).rowcount:
                raise errors.NotFound(f"user {name!r} does not exist")
            self._audit(conn, "user.disable", name, {})
        return self.get_user(name)

    def create_token(self, user_name: str, description: str | None = None,
                     expires_in_days: float | None = None) -> NewToken:
        if expires_in_days is not None and not -36_500 <= expires_in_days <= 36_500:
            raise errors.InvalidInput("expires_in_days must be within ±36500 days",
                                      field="expires_in_days")
        token_id = secrets.token_hex(6)
        token = f"sy_{token_id}_{secrets.token_urlsafe(32)}"
        now = now_ms()
        expires = None if expires_in_days is None else now + int(expires_in_days * 86_400_000)
        with self.db.write() as conn:
            user = conn.execute(sa.select(U).where(U.c.name == user_name)).first()
            if user is None:
                raise errors.NotFound(f"user {user_name!r} does not exist")
            conn.execute(T.insert().values(token_id=token_id, user_name=user_name,
                                           token_hash=_hash(token), description=description,
                                           creation_time=now, expires_time=expires,
                                           revoked=False))
            self._audit(conn, "token.create", user_name, {"token_id": token_id})
        return NewToken(token_id=token_id, user_name=user_name, token=token)

    def list_tokens(self, user_name: str | None = None) -> list[ApiToken]:
        q = sa.select(T).order_by(T.c.creation_time)
        if user_name:
            q = q.where(T.c.user_name == user_name)
        with self.db.read() as conn:
            return [ApiToken.model_validate(r._mapping) for r in conn.execute(q)]

    def revoke_token(self, token_id: str) -> None:
        with self.db.write() as conn:
            row = conn.execute(sa.select(T.c.user_name).where(T.c.token_id == token_id)).first()
            if row is None:
                raise errors.NotFound(f"token {token_id!r} does not exist")
            conn.execute(T.update().where(T.c.token_id == token_id).values(revoked=True))
            self._audit(conn, "token.revoke", row.user_name, {"token_id": token_id})

    def authenticate(self, token: str) -> User:
        """The user a bearer token belongs to; PermissionDenied when it is not valid now."""
        if not token or not token.startswith("sy_"):
            raise errors.PermissionDenied("invalid API token")
        now = now_ms()
        with self.db.read() as conn:
            row = conn.execute(sa.select(T, U.c.role, U.c.disabled, U.c.creation_time.label(
                "user_created"), U.c.creator).join(U, U.c.name == T.c.user_name)
                .where(T.c.token_hash == _hash(token))).first()
        if row is None or row.revoked:
            raise errors.PermissionDenied("invalid or revoked API token")
        if row.expires_time is not None and row.expires_time < now:
            raise errors.PermissionDenied("the API token has expired")
        if row.disabled:
            raise errors.PermissionDenied(f"user {row.user_name!r} is disabled")
        return User(name=row.user_name, role=Role(row.role), disabled=False,
                    creation_time=row.user_created, creator=row.creator)
