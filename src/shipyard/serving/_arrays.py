"""Handing a scikit-learn model a plain array instead of the enforced DataFrame.

A scikit-learn estimator fitted on a DataFrame checks, on every call, that the frame it is
given has the column names it was fitted with, then converts the frame to an array. For one
row of the serving benchmark's 100-tree GradientBoostingClassifier that is ~0.48 ms of a
~0.69 ms ``predict``: the model itself takes ~0.21 ms. When the enforced frame is already
in the model's column order, the check can only pass, so the server may skip it and give
the estimator the frame's values directly.

:class:`ArrayInput` decides that once per served model, on the first input it sees:

* only for the ``sklearn`` flavor, and only for estimators that scikit-learn itself ships,
  outside ``sklearn.compose`` (a ColumnTransformer picks columns by name) and
  ``FunctionTransformer`` (user code that may use the frame), and only when every
  estimator they wrap (Pipeline steps, a search's or an ensemble's estimators) is one too;
* only when the estimator's ``feature_names_in_`` (if any) are the frame's columns, in
  order, and the frame's values form one numeric array;
* and only after the model, given both, answered exactly the same (``predict`` and, where
  it has one, ``predict_proba``), on the first input and on a few rows of pseudo-random
  values. Anything else, or any error on the array, keeps the frame.

scikit-learn warns ("X does not have valid feature names") when an estimator fitted with
names gets an array. Once a model takes arrays, before each such call the server makes
sure that a warnings filter for that message, from scikit-learn's modules only, comes
first (a ``catch_warnings`` block elsewhere, pytest's for one, may have restored the
filters without it, or put another in front of it); the check itself silences it only
while it runs, so a model that keeps its frame installs nothing.
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
    names: a class scikit-learn ships (not a subclass of one defined elsewhere), not one
    that picks columns by name or runs user code, and every estimator it wraps (a
    Pipeline's steps, a search's or an ensemble's estimators, ...) such an estimator too."""
    cls = type(native)
    module = cls.__module__
    if not module.startswith("sklearn.") or module.startswith("sklearn.compose") \
            or cls.__name__ == "FunctionTransformer":
        return False
    try:
        params = native.get_params(deep=False)
    except Exception:  # noqa: BLE001 - not a well-behaved estimator: keep the frame
        return False
    return all(_shipped_estimator(inner) for value in params.values()
               for inner in _estimators_in(value))


def _estimators_in(value: Any) -> list[Any]:
    """The estimators a parameter holds: itself, or those in a list of them or of
    ``(name, estimator)`` pairs ("drop" and "passthrough" are not estimators)."""
    if isinstance(value, list | tuple):
        return [e for item in value for e in _estimators_in(item)]
    if hasattr(value, "get_params") and (hasattr(value, "fit") or hasattr(value, "predict")):
        return [value]
    return []


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
    """Whether the model answers the same, bit for bit, for the frame and for its values;
    and for a few rows of pseudo-random values of the same columns too (the first frame
    may be a warm-up row of zeros, on which a model that moves columns around would
    still agree)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(20261130)
    noise: Any = rng.standard_normal((8, frame.shape[1])) * 10
    if array.dtype.kind == "b":
        noise = noise > 0
    synthetic = pd.DataFrame(noise.astype(array.dtype), columns=frame.columns)
    for candidate in (frame, synthetic):
        values = candidate.to_numpy()
        if not _agree(candidate, values, predict, predict_proba):
            return False
    return True


def _agree(frame: Any, array: Any, predict: Any, predict_proba: Any | None) -> bool:
    import numpy as np

    expected = np.asarray(predict(frame))
    want = np.asarray(predict_proba(frame)) if predict_proba is not None else None
    try:
        with warnings.catch_warnings():  # only while checking: the array has no names
            warnings.filterwarnings("ignore", message=_NAMES_WARNING, category=UserWarning)
            got = np.asarray(predict(array))
            have = None if predict_proba is None else np.asarray(predict_proba(array))
    except Exception:  # noqa: BLE001 - the model needs the frame: keep giving it one
        return False
    if got.shape != expected.shape or not np.array_equal(
            got, expected, equal_nan=got.dtype.kind == "f" and expected.dtype.kind == "f"):
        return False
    return want is None or (have is not None and have.shape == want.shape
                            and np.array_equal(have, want, equal_nan=True))


def _quiet_names_warning() -> None:
    entry = _filter_entry[0]
    if entry is not None and warnings.filters and warnings.filters[0] is entry:
        return  # still first: no filter added since takes precedence over it
    with _filter_lock:
        warnings.filterwarnings("ignore", message=_NAMES_WARNING, category=UserWarning,
                                module=r"sklearn\.")
        _filter_entry[0] = warnings.filters[0]
