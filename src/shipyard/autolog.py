"""``sy.autolog()``: record scikit-learn ``fit`` calls without changing the training code.

Each outermost ``fit`` of a scikit-learn estimator (a Pipeline's inner fits are not logged
separately) logs the estimator's parameters, training metrics computed on the fitted data,
and the fitted model as a pickled artifact under ``model/``. With no active run, a run is
started for the fit and ended after it.
"""

from __future__ import annotations

import functools
import pickle
import threading
from typing import Any

from shipyard import errors, fluent

__all__ = ["autolog", "disable_autolog"]

_state = threading.local()
_patched: dict[type, Any] = {}
_MAX_PARAM = 500


def autolog(*, log_models: bool = True, log_training_metrics: bool = True,
            experiment: str | None = None) -> None:
    """Patch every scikit-learn estimator's ``fit`` to log to the active (or a new) run."""
    try:
        from sklearn.utils import all_estimators
    except ModuleNotFoundError as exc:
        raise errors.MissingDependency("autolog needs scikit-learn: pip install scikit-learn") \
            from exc
    options = {"log_models": log_models, "log_training_metrics": log_training_metrics,
               "experiment": experiment}
    for _name, cls in all_estimators():
        original = cls.__dict__.get("fit")
        if original is None or cls in _patched:
            continue
        _patched[cls] = original
        setattr(cls, "fit", _wrap(original, options))  # noqa: B010


def disable_autolog() -> None:
    """Restore the original ``fit`` methods."""
    for cls, original in _patched.items():
        setattr(cls, "fit", original)  # noqa: B010
    _patched.clear()


def _wrap(original: Any, options: dict[str, Any]) -> Any:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_state, "depth", 0) > 0:
            return original(self, *args, **kwargs)
        _state.depth = 1
        try:
            return _logged_fit(original, options, self, *args, **kwargs)
        finally:
            _state.depth = 0

    fit.__shipyard_autolog__ = True  # type: ignore[attr-defined]
    return fit


def _logged_fit(original: Any, options: dict[str, Any], estimator: Any, *args: Any,
                **kwargs: Any) -> Any:
    X = args[0] if args else kwargs.get("X")
    y = args[1] if len(args) > 1 else kwargs.get("y")
    run = fluent.active_run()
    own_run = run is None
    if run is None:
        run = fluent.start_run(options["experiment"],
                               run_name=f"{type(estimator).__name__}-autolog")
    try:
        result = original(estimator, *args, **kwargs)
        run.log_params(_params_of(estimator))
        run.set_tags({"estimator_class": f"{type(estimator).__module__}."
                                         f"{type(estimator).__qualname__}",
                      "autolog": "sklearn"})
        if options["log_training_metrics"] and X is not None and y is not None:
            run.log_metrics(_training_metrics(estimator, X, y, kwargs.get("sample_weight")))
        if options["log_models"]:
            run._service.log_artifact_bytes(run.run_id, pickle.dumps(estimator),
                                            "model/model.pkl")
        return result
    except BaseException:
        if own_run:
            run.end("FAILED")
        raise
    finally:
        if own_run:
            run.end()


def _params_of(estimator: Any) -> dict[str, str]:
    out = {}
    for key, value in estimator.get_params(deep=True).items():
        text = repr(value) if hasattr(value, "get_params") else str(value)
        out[key] = text[:_MAX_PARAM]
    return out


def _training_metrics(estimator: Any, X: Any, y: Any, sample_weight: Any) -> dict[str, float]:
    from sklearn import metrics
    from sklearn.base import is_classifier, is_regressor

    out: dict[str, float] = {}
    try:
        pred = estimator.predict(X)
    except Exception:  # noqa: BLE001 - transformers and clusterers have no predict
        return out
    if is_classifier(estimator):
        avg = "binary" if len(set(getattr(estimator, "classes_", []))) == 2 else "weighted"
        out["training_accuracy"] = metrics.accuracy_score(y, pred, sample_weight=sample_weight)
        out["training_precision"] = metrics.precision_score(
            y, pred, average=avg, sample_weight=sample_weight, zero_division=0)
        out["training_recall"] = metrics.recall_score(
            y, pred, average=avg, sample_weight=sample_weight, zero_division=0)
        out["training_f1"] = metrics.f1_score(y, pred, average=avg, sample_weight=sample_weight,
                                              zero_division=0)
        if hasattr(estimator, "predict_proba"):
            proba = estimator.predict_proba(X)
            out["training_log_loss"] = metrics.log_loss(y, proba, sample_weight=sample_weight,
                                                        labels=estimator.classes_)
            if proba.shape[1] == 2:
                out["training_roc_auc"] = metrics.roc_auc_score(y, proba[:, 1],
                                                                sample_weight=sample_weight)
    elif is_regressor(estimator):
        mse = metrics.mean_squared_error(y, pred, sample_weight=sample_weight)
        out["training_mse"] = mse
        out["training_rmse"] = mse ** 0.5
        out["training_mae"] = metrics.mean_absolute_error(y, pred, sample_weight=sample_weight)
        out["training_r2"] = metrics.r2_score(y, pred, sample_weight=sample_weight)
    return {k: float(val) for k, val in out.items()}
