"""Feature store: definitions, point-in-time offline store, online stores, serving.

Public API so far: the definitions (:class:`Entity`, :class:`FeatureView`,
:class:`OnDemandFeatureView`, :class:`FeatureService`, sources, :class:`ValueType`) and
:func:`parse_feature_ref`.
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

__all__ = [
    "DataFrameSource",
    "Entity",
    "Feature",
    "FeatureService",
    "FeatureView",
    "FileSource",
    "OnDemandFeatureView",
    "PostgresSource",
    "RequestField",
    "Source",
    "ValueType",
    "parse_feature_ref",
]
