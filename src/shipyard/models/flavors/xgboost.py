"""XGBoost: scikit-learn API models (XGBClassifier, XGBRegressor, XGBRanker, …) and Boosters.

Saved in XGBoost's own binary JSON format (``model.ubj``), never pickled: the file loads in
any later XGBoost. The manifest records the class, which is rebuilt with ``cls()`` and
``load_model``; the sklearn wrappers keep their parameters and classes in the file itself.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from shipyard import errors

from . import require

NAME = "xgboost"
PACKAGES = ("xgboost",)
EXTRA = "xgboost"
_FILE = "model.ubj"


def _xgb() -> Any:
    return require("xgboost", EXTRA)


def matches(model: Any) -> bool:
    xgb = _xgb()
    return isinstance(model, xgb.XGBModel | xgb.Booster)


def save(model: Any, path: Path) -> dict[str, Any]:
    xgb = _xgb()
    if not isinstance(model, xgb.XGBModel | xgb.Booster):
        raise errors.InvalidInput(
            f"the xgboost flavor saves XGBModel estimators and Boosters, not "
            f"{type(model).__qualname__}", field="model")
    if isinstance(model, xgb.XGBModel):
        try:
            model.get_booster()
        except xgb.core.XGBoostError as exc:  # NotFittedError derives from it in some versions
            raise errors.InvalidInput(f"the {type(model).__qualname__} is not fitted: {exc}",
                                      field="model") from exc
    model.save_model(str(path / _FILE))
    cls = type(model)
    return {"file": _FILE, "class": f"{cls.__module__}:{cls.__qualname__}",
            "kind": "booster" if isinstance(model, xgb.Booster) else "sklearn"}


def _resolve_class(ref: str, xgb: Any) -> Any:
    module, _, qualname = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise errors.MissingDependency(
            f"the model's class {ref} cannot be imported ({exc}); install the code that "
            f"defines it, or pip install 'shipyard-mlops[{EXTRA}]'") from exc
    if not (isinstance(obj, type) and issubclass(obj, xgb.XGBModel | xgb.Booster)):
        raise errors.IntegrityError(f"{ref} is not an XGBoost model class")
    return obj


def load(path: Path, options: dict[str, Any]) -> Any:
    xgb = _xgb()
    cls = _resolve_class(options["class"], xgb)
    model = cls()
    model.load_model(str(path / options["file"]))
    return model


def _dmatrix(xgb: Any, booster: Any, data: Any) -> Any:
    import numpy as np

    if isinstance(data, np.ndarray):
        names = booster.feature_names
        if names is not None and (data.ndim != 2 or len(names) != data.shape[1]):
            names = None  # let XGBoost report the shape mismatch itself
        return xgb.DMatrix(data, feature_names=names, feature_types=booster.feature_types
                           if names is not None else None)
    return xgb.DMatrix(data, enable_categorical=True)


def predict(native: Any, data: Any, options: dict[str, Any]) -> Any:
    xgb = _xgb()
    if isinstance(native, xgb.Booster):
        return native.predict(_dmatrix(xgb, native, data))
    return native.predict(data)


def has_proba(native: Any, options: dict[str, Any]) -> bool:
    return callable(getattr(native, "predict_proba", None))


def predict_proba(native: Any, data: Any, options: dict[str, Any]) -> Any:
    return native.predict_proba(data)
