"""LightGBM: scikit-learn API models (LGBMClassifier, LGBMRegressor, LGBMRanker) and Boosters.

The booster is saved as LightGBM's text model (``model.txt``, never pickled); the manifest
keeps what the scikit-learn wrapper adds on top (the classes and whether the objective was a
custom callable). Loading gives a ``lightgbm.Booster``; :func:`predict` and
:func:`predict_proba` reproduce the wrapper's ``predict``/``predict_proba`` from it exactly
(probabilities → labels by argmax, binary probabilities stacked as ``[1 - p, p]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipyard import errors

from . import require

NAME = "lightgbm"
PACKAGES = ("lightgbm",)
EXTRA = "lightgbm"
_FILE = "model.txt"


def _lgb() -> Any:
    return require("lightgbm", EXTRA)


def matches(model: Any) -> bool:
    lgb = _lgb()
    return isinstance(model, lgb.LGBMModel | lgb.Booster)


def save(model: Any, path: Path) -> dict[str, Any]:
    lgb = _lgb()
    cls = type(model)
    options: dict[str, Any] = {"file": _FILE, "class": f"{cls.__module__}:{cls.__qualname__}"}
    if isinstance(model, lgb.Booster):
        booster = model
        options["kind"] = "booster"
    elif isinstance(model, lgb.LGBMModel):
        try:
            booster = model.booster_
        except Exception as exc:  # noqa: BLE001 - LGBMNotFittedError, or a broken wrapper
            raise errors.InvalidInput(f"the {cls.__qualname__} is not fitted: {exc}",
                                      field="model") from exc
        options["custom_objective"] = callable(getattr(model, "_objective", None))
        if isinstance(model, lgb.LGBMClassifier):
            classes = model.classes_
            options.update(kind="classifier", n_classes=int(model.n_classes_),
                           classes=classes.tolist(), classes_dtype=classes.dtype.str
                           if classes.dtype.kind != "O" else "object")
        else:
            options["kind"] = "ranker" if isinstance(model, lgb.LGBMRanker) else "regressor"
    else:
        raise errors.InvalidInput(
            f"the lightgbm flavor saves LGBMModel estimators and Boosters, not "
            f"{cls.__qualname__}", field="model")
    # num_iteration=None: the best iteration when early stopping found one, as predict uses
    booster.save_model(str(path / _FILE))
    return options


def load(path: Path, options: dict[str, Any]) -> Any:
    lgb = _lgb()
    return lgb.Booster(model_file=str(path / options["file"]))


def _classes(options: dict[str, Any]) -> Any:
    import numpy as np

    return np.asarray(options["classes"], dtype=np.dtype(options["classes_dtype"]))


def _proba(native: Any, data: Any, options: dict[str, Any]) -> Any:
    import numpy as np

    result = native.predict(data)
    if options.get("custom_objective") or options["n_classes"] > 2:
        return result
    return np.vstack((1.0 - result, result)).transpose()


def predict(native: Any, data: Any, options: dict[str, Any]) -> Any:
    import numpy as np

    if options.get("kind") != "classifier":
        return native.predict(data)
    result = _proba(native, data, options)
    if options.get("custom_objective"):
        return result  # raw scores: the wrapper cannot map them to labels either
    return _classes(options)[np.argmax(result, axis=1)]


def has_proba(native: Any, options: dict[str, Any]) -> bool:
    return options.get("kind") == "classifier"


def predict_proba(native: Any, data: Any, options: dict[str, Any]) -> Any:
    return _proba(native, data, options)
