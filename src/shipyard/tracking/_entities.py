"""Tracking domain objects: plain pydantic models that the SDK, CLI and API share."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "RunStatus",
    "LifecycleStage",
    "Experiment",
    "Metric",
    "DatasetInput",
    "ArtifactInfo",
    "Run",
]


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)


class LifecycleStage(StrEnum):
    ACTIVE = "active"
    DELETED = "deleted"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, use_enum_values=False)


class Experiment(_Model):
    experiment_id: str
    name: str
    artifact_location: str | None = None
    lifecycle_stage: LifecycleStage = LifecycleStage.ACTIVE
    creation_time: int
    last_update_time: int
    tags: dict[str, str] = Field(default_factory=dict)


class Metric(_Model):
    key: str
    value: float
    step: int = 0
    timestamp: int

    @classmethod
    def from_row(cls, row: Any) -> Metric:
        value = math.nan if row.is_nan else row.value
        return cls(key=row.key, value=value, step=row.step, timestamp=row.timestamp)


class DatasetInput(_Model):
    dataset_id: str
    name: str
    digest: str
    source: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    num_rows: int | None = None
    context: str = "training"

    model_config = ConfigDict(frozen=True, populate_by_name=True)


class ArtifactInfo(_Model):
    path: str
    digest: str
    size: int
    creation_time: int


class Run(_Model):
    run_id: str
    experiment_id: str
    run_name: str | None = None
    status: RunStatus
    start_time: int
    end_time: int | None = None
    lifecycle_stage: LifecycleStage = LifecycleStage.ACTIVE
    parent_run_id: str | None = None
    user_id: str | None = None
    params: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    inputs: list[DatasetInput] = Field(default_factory=list)

    @property
    def duration_ms(self) -> int | None:
        return None if self.end_time is None else self.end_time - self.start_time

    def flat(self) -> dict[str, Any]:
        """One row for a table: attributes, then ``params.x``, ``metrics.x``, ``tags.x``."""
        row: dict[str, Any] = {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "run_name": self.run_name,
            "status": self.status.value,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "parent_run_id": self.parent_run_id,
            "user_id": self.user_id,
        }
        row.update({f"params.{k}": v for k, v in self.params.items()})
        row.update({f"metrics.{k}": v for k, v in self.metrics.items()})
        row.update({f"tags.{k}": v for k, v in self.tags.items()})
        return row
