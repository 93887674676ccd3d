"""Handing a scikit-learn model a plain array instead of the enforced DataFrame.

A scikit-learn estimator fitted on a DataFrame checks, on every call, that the frame it is
given has the column names it was fitted with, then converts the frame to an array. For one
row of the serving benchmark's 100-tree GradientBoostingClassifier that is ~0.48 ms of a
~0.69 ms ``predict``: the model itself takes ~0.21 ms. When the enforced frame is already
in the model's column order, the check can only pass, so the server may skip it and give
the estimator the frame's values directly.

:class:`ArrayInput` decides that once per served model, on the first input it sees:

* only for the ``sklearn`` flavor, and only for estimators (or Pipelines of them) that
  scikit-learn itself ships, outside ``sklearn.compose`` (a ColumnTransformer picks columns
  by name) and ``FunctionTransformer`` (user code that may use the frame);
* only when the estimator's ``feature_names_in_`` (if any) are the frame's columns, in
  order, and the frame's values form one numeric array;
* and only after the model, given both, answered exactly the same (``predict`` and, where
  it has one, ``predict_proba``). Anything else, or any error on the array, keeps the frame.

scikit-learn warns ("X does not have valid feature names") when an estimator fitted with
names gets an array; before each such call the server makes sure that a warnings filter
for that message, from scikit-learn's modules only, comes first (a ``catch_warnings`` block
elsewhere, pytest's for one, may have restored the filters without it, or put another in
front of it).
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

__all__ = ["ArrayInput"]

_NAMES_WARNING = "X does not have valid feature names"
_filter_lock = threading.Lock()
_filter_entry: list[Any] = [None]  # the filter tuple this module put in warnings.filters


class ArrayInput:
    """Per served model: whether (and how) to give the flavor an array for a frame."""

    __slots__ = ("_native", "_eligible", "_decided", "_lock")

    def __init__(self, flavor: str, native: Any) -> None:
        self._native = native
        self._eligible = flavor == "sklearn" and _shipped_estimator(native)
        #: None until the first frame decides; then True (arrays) or False (frames)
        self._decided: bool | None = None if self._eligible else False
        self._lock = threading.Lock()

    @property
    def decided(self) -> bool | None:
        return self._decided

    def convert(self, model_input: Any, predict: Any, predict_proba: Any | None) -> Any:
        """The input to give the flavor for ``model_input`` (an enforced frame or anything
        else). ``predict`` / ``predict_proba`` call the flavor; they are used once, to
        compare the model's answers for the frame and for the array."""
        if self._decided is False:
            return model_input
        array = _numeric_values(model_input, self._native)
        if array is None:
            return model_input
        if self._decided is None:
            with self._lock:
                if self._decided is None:
                    self._decided = _same_answers(model_input, array, predict, predict_proba)
            if not self._decided:
                return model_input
        _quiet_names_warning()
        return array


def _shipped_estimator(native: Any) -> bool:
    """Whether ``native`` is a scikit-learn estimator that uses a frame only for its column
    names (a Pipeline: every step)."""
    try:
        from sklearn.pipeline import Pipeline
    except ImportError:  # pragma: no cover - the sklearn flavor implies sklearn
        return False
    if isinstance(native, Pipeline):
        steps = [s for _, s in native.steps if s is not None and s != "passthrough"]
        return bool(steps) and all(_shipped_estimator(s) for s in steps)
    cls = type(native)
    module = cls.__module__
    return (module.startswith("sklearn.") and not module.startswith("sklearn.compose")
            and cls.__name__ != "FunctionTransformer")


def _numeric_values(frame: Any, native: Any) -> Any | None:
    """``frame``'s values as one numeric 2-D array when its columns are the estimator's
    fitted names in order (or it was fitted without names); else None."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        return None
    fitted = getattr(native, "feature_names_in_", None)
    if fitted is not None and (len(fitted) != frame.shape[1]
                               or list(fitted) != list(frame.columns)):
        return None
    # as scikit-learn would convert the frame itself (same values, same memory order: a
    # C-ordered copy can round differently in BLAS)
    array = frame.to_numpy()
    if array.dtype.kind not in "biuf" or array.ndim != 2:
        return None
    return array


def _same_answers(frame: Any, array: Any, predict: Any, predict_proba: Any | None) -> bool:
    import numpy as np

    _quiet_names_warning()
    expected = np.asarray(predict(frame))
    try:
        got = np.asarray(predict(array))
        if got.shape != expected.shape or not np.array_equal(got, expected,
                                                             equal_nan=got.dtype.kind == "f"):
            return False
        if predict_proba is not None:
            want = np.asarray(predict_proba(frame))
            have = np.asarray(predict_proba(array))
            if have.shape != want.shape or not np.array_equal(have, want, equal_nan=True):
                return False
    except Exception:  # noqa: BLE001 - the model needs the frame: keep giving it one
        return False
    return True


def _quiet_names_warning() -> None:
    entry = _filter_entry[0]
    if entry is not None and warnings.filters and warnings.filters[0] is entry:
        return  # still first: no filter added since takes precedence over it
    with _filter_lock:
        warnings.filterwarnings("ignore", message=_NAMES_WARNING, category=UserWarning,
                                module=r"sklearn\.")
        _filter_entry[0] = warnings.filters[0]
