"""Feature store: definitions, point-in-time offline store, online stores, serving.

Public API so far: the definitions (:class:`Entity`, :class:`FeatureView`,
:class:`OnDemandFeatureView`, :class:`FeatureService`, sources, :class:`ValueType`),
:func:`parse_feature_ref`, feature repositories (:func:`load_repo`, :class:`Repo`) and the
feature registry (:class:`FeatureRegistry`: ``plan``/``apply``/``get``/``versions``).
Nothing here imports pandas or DuckDB at import time.
"""

from ._definitions import (
    DataFrameSource,
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    FileSource,
    OnDemandFeatureView,
    PostgresSource,
    RequestField,
    Source,
    ValueType,
    parse_feature_ref,
)
from ._registry import Change, FeatureObject, FeatureRegistry, Plan, PlanItem, diff_specs
from ._repo import Kind, Repo, load_repo

__all__ = [
    "Change",
    "DataFrameSource",
    "Entity",
    "Feature",
    "FeatureObject",
    "FeatureRegistry",
    "FeatureService",
    "FeatureView",
    "FileSource",
    "Kind",
    "OnDemandFeatureView",
    "Plan",
    "PlanItem",
    "PostgresSource",
    "Repo",
    "RequestField",
    "Source",
    "ValueType",
    "diff_specs",
    "load_repo",
    "parse_feature_ref",
]
