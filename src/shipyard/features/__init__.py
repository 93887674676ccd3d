"""Feature store: definitions, point-in-time offline store, online stores, serving.

Public API so far: the definitions (:class:`Entity`, :class:`FeatureView`,
:class:`OnDemandFeatureView`, :class:`FeatureService`, sources, :class:`ValueType`),
:func:`parse_feature_ref`, feature repositories (:func:`load_repo`, :class:`Repo`) and the
feature registry (:class:`FeatureRegistry`: ``plan``/``apply``/``get``/``versions``), the
facade :class:`FeatureStore` (training data, materialization, push, online reads), online
stores (:func:`open_online_store`) and expectations. Nothing here imports pandas or DuckDB
at import time.
"""

from typing import Any

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
from ._store import FeatureSelection, FeatureStore, OnlineFeatures

__all__ = [
    "Change",
    "Expectation",
    "ExpectationsFailed",
    "DataFrameSource",
    "Entity",
    "Feature",
    "FeatureObject",
    "FeatureRegistry",
    "FeatureSelection",
    "FeatureService",
    "FeatureStore",
    "FeatureView",
    "FileSource",
    "Kind",
    "OnDemandFeatureView",
    "OnlineFeatures",
    "OnlineRecord",
    "OnlineStore",
    "Plan",
    "PlanItem",
    "PostgresSource",
    "Repo",
    "RequestField",
    "Source",
    "ValueType",
    "diff_specs",
    "load_repo",
    "open_online_store",
    "parse_feature_ref",
]

# pandas/pyarrow-backed names load on first use, so loading a repository stays light.
_LAZY = {"Expectation": "_expectations", "ExpectationsFailed": "_expectations",
         "OnlineRecord": "_online", "OnlineStore": "_online", "open_online_store": "_online"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shipyard.features' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"shipyard.features.{module}"), name)
    globals()[name] = value
    return value
