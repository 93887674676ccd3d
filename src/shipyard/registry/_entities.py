"""Registry domain objects."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["VersionStatus", "RegisteredModel", "ModelVersion", "AliasChange", "ModelInfo"]


class VersionStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"
    ARCHIVED = "archived"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class RegisteredModel(_Model):
    name: str
    description: str | None = None
    owner: str | None = None
    creation_time: int
    last_update_time: int
    tags: dict[str, str] = Field(default_factory=dict)
    aliases: dict[str, int] = Field(default_factory=dict)
    latest_version: int | None = None


class ModelVersion(_Model):
    name: str
    version: int
    status: VersionStatus
    source: str
    run_id: str | None = None
    digest: str
    flavor: str
    signature: dict[str, Any] | None = None
    environment: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    code_commit: str | None = None
    code_dirty: bool | None = None
    feature_refs: list[str] = Field(default_factory=list)
    description: str | None = None
    creator: str | None = None
    creation_time: int
    last_update_time: int
    tags: dict[str, str] = Field(default_factory=dict)
    aliases: list[str] = Field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class AliasChange(_Model):
    """One move of an alias; ``to_version`` None means the alias was deleted."""

    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    timestamp: int
    reason: str | None = None


class ModelInfo(_Model):
    """What ``log_model`` returns: where the model is and what it is."""

    run_id: str
    artifact_path: str
    model_uri: str
    digest: str
    flavor: str
    signature: dict[str, Any] | None = None
    registered_version: ModelVersion | None = None
