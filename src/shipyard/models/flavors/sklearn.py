"""scikit-learn estimators and pipelines, pickled (protocol 5)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from . import require

NAME = "sklearn"
PACKAGES = ("scikit-learn", "scipy", "joblib")
EXTRA = "sklearn"
_FILE = "model.pkl"


def matches(model: Any) -> bool:
    return hasattr(model, "fit") and hasattr(model, "get_params") and (
        hasattr(model, "predict") or hasattr(model, "transform"))


def save(model: Any, path: Path) -> dict[str, Any]:
    with open(path / _FILE, "wb") as fh:
        pickle.dump(model, fh, protocol=5)
    return {"file": _FILE, "class": f"{type(model).__module__}.{type(model).__qualname__}"}


def load(path: Path, options: dict[str, Any]) -> Any:
    require("sklearn", EXTRA)
    with open(path / options["file"], "rb") as fh:
        return pickle.load(fh)  # noqa: S301 - digest-verified artifact of our own registry


def predict(native: Any, data: Any, options: dict[str, Any]) -> Any:
    if hasattr(native, "predict"):
        return native.predict(data)
    return native.transform(data)


def has_proba(native: Any, options: dict[str, Any]) -> bool:
    return hasattr(native, "predict_proba")


def predict_proba(native: Any, data: Any, options: dict[str, Any]) -> Any:
    return native.predict_proba(data)
