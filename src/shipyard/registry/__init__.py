"""Model registry: registered models, immutable versions, aliases with history, lineage.

Public API: :class:`RegistryService` (``log_model``, ``load_model``, ``register``,
``resolve``, ``set_alias``, ``alias_history``, ``alias_at``, ``lineage`` …), the models
:class:`RegisteredModel`, :class:`ModelVersion`, :class:`AliasChange`, :class:`ModelInfo`,
:class:`VersionStatus`, URIs (:func:`parse_model_uri`), the alias policy hook
(:func:`register_alias_policy`) deployment packaging
(:func:`package_model`, :class:`PackageOptions`) and :func:`lineage_tree` for terminals.
"""

from ._entities import AliasChange, ModelInfo, ModelVersion, RegisteredModel, VersionStatus
from ._packaging import PackageOptions, package_model
from ._render import lineage_tree
from ._service import (
    AliasPolicy,
    RegistryService,
    clear_alias_policies,
    register_alias_policy,
)
from ._uri import ModelRef, check_alias, check_model_name, parse_model_uri

__all__ = [
    "AliasChange",
    "AliasPolicy",
    "ModelInfo",
    "ModelRef",
    "ModelVersion",
    "PackageOptions",
    "RegisteredModel",
    "RegistryService",
    "VersionStatus",
    "check_alias",
    "check_model_name",
    "clear_alias_policies",
    "lineage_tree",
    "package_model",
    "parse_model_uri",
    "register_alias_policy",
]
