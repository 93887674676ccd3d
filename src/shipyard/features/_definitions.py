"""Feature store definitions: entities, sources, feature views, on-demand views, services.

These are the objects a feature repository declares in Python. They are plain pydantic
models, so the registry stores them as JSON and ``plan`` can diff them field by field.
A feature is referenced as ``"view:feature"`` (or ``"view"`` for all of a view's features).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from shipyard import errors

__all__ = [
    "ValueType",
    "Entity",
    "Feature",
    "FileSource",
    "PostgresSource",
    "DataFrameSource",
    "Source",
    "FeatureView",
    "OnDemandFeatureView",
    "FeatureService",
    "RequestField",
    "parse_feature_ref",
]


class ValueType(StrEnum):
    """The value types a feature or join key can have."""

    INT32 = "int32"
    INT64 = "int64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"
    BOOL = "bool"
    TIMESTAMP = "timestamp"
    BYTES = "bytes"


_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class _Def(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def spec(self) -> dict[str, Any]:
        """The JSON form stored by the registry and diffed by ``plan``."""
        return self.model_dump(mode="json", exclude_none=True)


class Entity(_Def):
    """A thing features describe, identified by its join key(s) (``customer_id``)."""

    name: str = Field(pattern=_NAME)
    join_keys: list[str] = Field(default_factory=list)
    value_type: ValueType = ValueType.INT64
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = Field(default_factory=dict)

    def model_post_init(self, __context: Any) -> None:
        if not self.join_keys:
            object.__setattr__(self, "join_keys", [self.name])


class Feature(_Def):
    """One column of a feature view."""

    name: str = Field(pattern=_NAME)
    dtype: ValueType
    description: str = ""


class FileSource(_Def):
    """Parquet: one file or a folder of files (local or ``s3://``)."""

    kind: Literal["file"] = "file"
    path: str
    timestamp_field: str = "event_timestamp"
    created_timestamp_field: str | None = None


class PostgresSource(_Def):
    """A SQL query on PostgreSQL (``url`` defaults to the metadata database's)."""

    kind: Literal["postgres"] = "postgres"
    query: str
    url: str | None = None
    timestamp_field: str = "event_timestamp"
    created_timestamp_field: str | None = None


class DataFrameSource(_Def):
    """An in-memory pandas/Arrow frame; ``apply`` writes it to Parquet under the home."""

    kind: Literal["dataframe"] = "dataframe"
    name: str = Field(pattern=_NAME)
    timestamp_field: str = "event_timestamp"
    created_timestamp_field: str | None = None
    _frame: Any = PrivateAttr(default=None)

    @classmethod
    def of(cls, name: str, frame: Any, **kwargs: Any) -> DataFrameSource:
        src = cls(name=name, **kwargs)
        src._frame = frame
        return src

    @property
    def frame(self) -> Any:
        return self._frame


Source = Annotated[FileSource | PostgresSource | DataFrameSource, Field(discriminator="kind")]


class FeatureView(_Def):
    """Features of one or more entities, read from a source with event timestamps."""

    name: str = Field(pattern=_NAME)
    entities: list[str]
    schema_: list[Feature] = Field(alias="schema")
    source: Source
    ttl: timedelta | None = None
    online: bool = True
    owner: str = ""
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("entities")
    @classmethod
    def _some_entities(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("a feature view needs at least one entity")
        return value

    @property
    def features(self) -> list[str]:
        return [f.name for f in self.schema_]

    def spec(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


class RequestField(_Def):
    """A value the caller passes at request time (e.g. ``loan_amount``)."""

    name: str = Field(pattern=_NAME)
    dtype: ValueType


class OnDemandFeatureView(_Def):
    """Features computed by a Python function from other features and request data.

    The same function runs in training (over the historical frame) and in serving (over the
    online values), so the two cannot disagree. ``function`` takes a pandas DataFrame whose
    columns are the input features (by name) and request fields, and returns a DataFrame
    with the output features.
    """

    name: str = Field(pattern=_NAME)
    inputs: list[str] = Field(description="feature references this view reads")
    request_schema: list[RequestField] = Field(default_factory=list)
    schema_: list[Feature] = Field(alias="schema")
    function_name: str = ""
    function_source: str = ""
    owner: str = ""
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    _function: Callable[[Any], Any] | None = PrivateAttr(default=None)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @classmethod
    def of(cls, function: Callable[[Any], Any], **kwargs: Any) -> OnDemandFeatureView:
        """Build the view from its function (its source is kept for plan diffs)."""
        try:
            source = inspect.getsource(function)
        except (OSError, TypeError):
            source = ""
        view = cls(function_name=f"{function.__module__}.{function.__qualname__}",
                   function_source=source, **kwargs)
        view._function = function
        return view

    @property
    def function(self) -> Callable[[Any], Any]:
        if self._function is None:
            raise errors.Conflict(f"on-demand view {self.name!r} was loaded from the registry "
                                  "without its function: load the feature repository")
        return self._function

    @property
    def features(self) -> list[str]:
        return [f.name for f in self.schema_]

    def spec(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


class FeatureService(_Def):
    """A named bundle of features that a model consumes."""

    name: str = Field(pattern=_NAME)
    features: list[str]
    owner: str = ""
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)


def parse_feature_ref(ref: str) -> tuple[str, str | None]:
    """``"view:feature"`` → (view, feature); ``"view"`` → (view, None)."""
    if not isinstance(ref, str) or not ref or ref.count(":") > 1:
        raise errors.InvalidInput(f"invalid feature reference {ref!r}: use 'view:feature' or "
                                  "'view'", field="features")
    view, _, feature = ref.partition(":")
    if not view or (_ and not feature):
        raise errors.InvalidInput(f"invalid feature reference {ref!r}: use 'view:feature' or "
                                  "'view'", field="features")
    return view, feature or None
