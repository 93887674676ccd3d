"""Model flavors: one small module per library, all behind the :class:`Flavor` protocol.

A flavor module is imported only when a model of its kind is saved or loaded, so a missing
optional library is an error only for that flavor (``MissingDependency`` naming the extra).
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from shipyard import errors

__all__ = ["Flavor", "FLAVORS", "get_flavor", "flavor_for"]


class Flavor(Protocol):
    """What every flavor module provides."""

    NAME: str
    #: pip distributions recorded in the environment (the flavor's library and friends)
    PACKAGES: tuple[str, ...]
    #: the pip extra that installs them
    EXTRA: str

    def matches(self, model: Any) -> bool: ...
    def save(self, model: Any, path: Any) -> dict[str, Any]: ...
    def load(self, path: Any, options: dict[str, Any]) -> Any: ...
    def predict(self, native: Any, data: Any, options: dict[str, Any]) -> Any: ...
    def predict_proba(self, native: Any, data: Any, options: dict[str, Any]) -> Any: ...
    def has_proba(self, native: Any, options: dict[str, Any]) -> bool: ...


#: name → module; detection tries them in this order (pyfunc last: anything with predict).
FLAVORS: dict[str, str] = {
    "sklearn": "shipyard.models.flavors.sklearn",
    "xgboost": "shipyard.models.flavors.xgboost",
    "lightgbm": "shipyard.models.flavors.lightgbm",
    "pytorch": "shipyard.models.flavors.pytorch",
    "onnx": "shipyard.models.flavors.onnx",
    "pyfunc": "shipyard.models.flavors.pyfunc",
}

# The top-level module of a model's class tells which flavor to try first, without imports.
_ROOTS = {"sklearn": "sklearn", "xgboost": "xgboost", "lightgbm": "lightgbm",
          "torch": "pytorch", "onnx": "onnx"}


def get_flavor(name: str) -> Flavor:
    module = FLAVORS.get(name)
    if module is None:
        raise errors.InvalidInput(f"unknown model flavor {name!r}; known: {', '.join(FLAVORS)}",
                                  field="flavor")
    return importlib.import_module(module)  # a module with the Flavor functions


def flavor_for(model: Any) -> Flavor:
    """The flavor that can save ``model`` (by its class's library, then by duck typing)."""
    # Nearest class first: an XGBClassifier is also a scikit-learn BaseEstimator, but its own
    # library's flavor (native format) must win over pickling it as a scikit-learn model.
    tried: set[str] = set()
    for cls in type(model).__mro__:
        name = _ROOTS.get(cls.__module__.split(".")[0])
        if name is None or name in tried:
            continue
        tried.add(name)
        flavor = get_flavor(name)
        if flavor.matches(model):
            return flavor
    pyfunc = get_flavor("pyfunc")
    if pyfunc.matches(model):
        return pyfunc
    raise errors.InvalidInput(
        f"cannot log a {type(model).__module__}.{type(model).__qualname__}: it is not a "
        "scikit-learn, XGBoost, LightGBM, PyTorch or ONNX model and has no predict method",
        field="model")


def require(module: str, extra: str) -> Any:
    """Import an optional library or raise MissingDependency naming the pip extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # not installed, or installed but broken (a missing shared lib)
        found = isinstance(exc, ModuleNotFoundError) and exc.name in (module, None)
        why = "which is not installed" if found else f"which cannot be imported ({exc})"
        raise errors.MissingDependency(
            f"this model needs {module!r}, {why}: "
            f"pip install 'shipyard-mlops[{extra}]'") from exc
