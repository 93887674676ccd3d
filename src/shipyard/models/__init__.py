"""Model packaging: flavors, signatures, environments and the self-describing model folder.

Public API: :func:`save_model` / :func:`load_model_dir` (a folder with
``shipyard-model.json``), :class:`LoadedModel` (``predict`` / ``predict_proba`` for every
flavor), :class:`Signature` and :func:`infer_signature`, :func:`capture_environment`.
Adding a flavor = one module in ``flavors/`` with the :class:`~.flavors.Flavor` functions,
listed in ``flavors.FLAVORS``; copy ``flavors/sklearn.py``.
"""

from ._environment import capture_environment
from ._format import (
    MANIFEST,
    LoadedModel,
    Manifest,
    load_model_dir,
    manifest_digest,
    save_model,
    verify_dir,
)
from ._signature import ColumnSpec, Signature, TensorSpec, infer_signature
from .flavors import FLAVORS, flavor_for, get_flavor

__all__ = [
    "FLAVORS",
    "MANIFEST",
    "ColumnSpec",
    "LoadedModel",
    "Manifest",
    "Signature",
    "TensorSpec",
    "capture_environment",
    "flavor_for",
    "get_flavor",
    "infer_signature",
    "load_model_dir",
    "manifest_digest",
    "save_model",
    "verify_dir",
]
