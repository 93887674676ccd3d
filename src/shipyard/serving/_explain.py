"""Explanations on request: per-prediction SHAP values and reason codes, computed online.

Only explainers that are exact and fast enough to run inside a request are offered:

* tree models (scikit-learn trees, forests and gradient boosting, XGBoost, LightGBM) get
  ``shap.TreeExplainer`` with the path-dependent algorithm: no background data, well under a
  millisecond a row for a 100-tree ensemble;
* linear models (scikit-learn ``linear_model``) get their exact SHAP values, ``coef * (x -
  mean)`` with the mean of the model's stored input example (what ``shap.LinearExplainer``
  computes with an independent masker), without importing shap at all.

A scikit-learn ``Pipeline`` is explained at its last step, the earlier steps being its
input transform; the values are summed back onto the model's input columns where the
transform says which column each of its outputs came from (scalers, a ``ColumnTransformer``
of scalers / one-hot encoders / passthrough). Everything else would need a model-agnostic
explainer (Kernel or Permutation SHAP): seconds per row, so it is refused with a 400.

The explained output is the model's own score for the explained class: the predicted class
of a classifier (its log-odds for binary boosted trees and logistic regression, its
probability for scikit-learn forests and trees, its raw per-class margin for multi-class
boosting and multinomial models), the prediction of a regressor. ``base_value + sum(shap
values) == that score`` for every row (SHAP's additivity; the tests check it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shipyard import errors

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ModelExplainer", "build_explainer", "TOP_REASONS"]

#: How many reason codes each explanation lists.
TOP_REASONS = 3
_TREE_FLAVORS = ("sklearn", "xgboost", "lightgbm")
_AGNOSTIC = ("a model-agnostic explainer (Kernel or Permutation SHAP) would be needed, which "
             "takes seconds per row and is refused online; explain it offline with shap")


def _refuse(why: str) -> errors.InvalidInput:
    return errors.InvalidInput(f"explanations are not available for this model: {why}",
                               field="explain")


class ModelExplainer:
    """Explains the predictions of one loaded model; built once, used by the predict thread.

    ``compute(X)`` returns SHAP values ``(n, k)`` or ``(n, k, classes)`` and the base value(s)
    for the transformed input ``X``; ``groups`` maps the reported features to columns of
    ``X`` (None: one reported feature per column).
    """

    def __init__(self, *, kind: str, output: str, compute: Callable[[Any], tuple[Any, Any]],
                 transform: Any | None, classes: list[Any] | None, classifier: bool,
                 feature_names: list[str] | None, groups: list[list[int]] | None) -> None:
        self.kind = kind
        self.output = output
        self.compute = compute
        self.transform = transform
        self.classes = classes
        self.classifier = classifier
        self.feature_names = feature_names
        self.groups = groups
        self._class_index = {c: i for i, c in enumerate(classes or [])}

    def explain(self, model_input: Any, predictions: np.ndarray) -> list[dict[str, Any]]:
        """One explanation per row of ``model_input`` (already signature-checked)."""
        import numpy as np

        X = _dense(self.transform.transform(model_input)) if self.transform is not None \
            else model_input
        values, base = self.compute(X)
        values = np.asarray(values, dtype=np.float64)
        base = np.atleast_1d(np.asarray(base, dtype=np.float64)).reshape(-1)
        n = len(predictions)
        index = self._explained_class(predictions)
        if values.ndim == 3:  # one output per class: take the explained class's
            rows = np.arange(n)
            values = values[rows, :, index]
            base = base[index]
        else:
            base = np.full(n, base[0])
            if self.classifier and len(self._class_index) == 2:
                negate = index == 0  # one log-odds output: class 0's is its negation
                values = np.where(negate[:, None], -values, values)
                base = np.where(negate, -base, base)
        names, shown, raw = self._features(model_input, X, values)
        return [self._row(i, names, shown[i], raw, base[i], predictions, index)
                for i in range(n)]

    def _explained_class(self, predictions: np.ndarray) -> np.ndarray:
        import numpy as np

        if not self.classifier or not self._class_index:
            return np.zeros(len(predictions), dtype=np.intp)
        lookup = self._class_index
        return np.fromiter((lookup.get(p.item() if hasattr(p, "item") else p, 0)
                            for p in predictions), dtype=np.intp, count=len(predictions))

    def _features(self, model_input: Any, X: Any,
                  values: np.ndarray) -> tuple[list[str], np.ndarray, Any]:
        """(feature names, their SHAP values, the table their values are read from)."""
        import numpy as np

        columns = [str(c) for c in model_input.columns] if hasattr(model_input, "columns") \
            else None
        if self.transform is None:
            return columns or [f"x{j}" for j in range(values.shape[1])], values, model_input
        if self.groups is not None and columns is not None:
            grouped = np.stack([values[:, g].sum(axis=1) for g in self.groups], axis=1)
            return columns, grouped, model_input
        names = self.feature_names if self.feature_names is not None and len(
            self.feature_names) == values.shape[1] else [f"x{j}" for j in
                                                         range(values.shape[1])]
        return names, values, X

    def _row(self, i: int, names: list[str], shap_row: np.ndarray, table: Any,
             base: float, predictions: np.ndarray, index: np.ndarray) -> dict[str, Any]:
        contributions = {name: float(v) for name, v in zip(names, shap_row, strict=True)}
        if self.classifier:  # what pushed toward the predicted class, strongest first
            ranked = sorted((j for j, v in enumerate(shap_row) if v > 0),
                            key=lambda j: -shap_row[j])
        else:  # what moved the prediction most, either way
            ranked = sorted(range(len(names)), key=lambda j: -abs(shap_row[j]))
        reasons = [{"feature": names[j], "value": _plain(_cell(table, i, j)),
                    "contribution": float(shap_row[j])} for j in ranked[:TOP_REASONS]]
        out: dict[str, Any] = {"output": self.output, "base_value": float(base),
                               "shap_values": contributions, "reason_codes": reasons}
        if self.classifier and self.classes:
            out["class"] = _plain(self.classes[int(index[i])])
        return out


# -- building ----------------------------------------------------------------------------------


def build_explainer(native: Any, flavor: str, options: dict[str, Any],
                    example: Any | None = None) -> ModelExplainer:
    """The explainer for a loaded model, or InvalidInput (400) saying why there is none.

    ``example`` (the stored input example, signature-checked) is the background of linear
    models; tree models need none.
    """
    if flavor not in _TREE_FLAVORS:
        raise _refuse(f"it is a {flavor} model, not a tree or linear model; {_AGNOSTIC}")
    estimator, transform = _split_pipeline(native)
    classes = _classes(estimator, options)
    classifier = classes is not None or getattr(estimator, "_estimator_type", "") == \
        "classifier"
    names, groups = _transformed_features(transform, example)
    if _is_linear(estimator):
        kind = "linear"
        background = None
        if example is not None:
            background = _dense(transform.transform(example)) if transform is not None \
                else example
        output, compute = _linear(estimator, background, classifier)
    else:
        kind = "tree"
        compute = _tree(_tree_explainer(estimator))
        output = ("probability" if _forest_like(estimator) else "log_odds" if classes
                  is not None and len(classes) == 2 else "margin") if classifier else "raw"
    return ModelExplainer(kind=kind, output=output, compute=compute, transform=transform,
                          classes=classes, classifier=classifier, feature_names=names,
                          groups=groups)


def _tree(explainer: Any) -> Callable[[Any], tuple[Any, Any]]:
    def compute(X: Any) -> tuple[Any, Any]:
        return explainer.shap_values(X, check_additivity=False), explainer.expected_value

    return compute


def _split_pipeline(native: Any) -> tuple[Any, Any | None]:
    """(the estimator, the transform before it) of a scikit-learn Pipeline; (native, None)."""
    steps = getattr(native, "steps", None)
    if not isinstance(steps, list) or not hasattr(native, "named_steps"):
        return native, None
    last = steps[-1][1]
    if last is None or last == "passthrough":
        raise _refuse("the pipeline ends without an estimator")
    return last, (native[:-1] if len(steps) > 1 else None)


def _classes(estimator: Any, options: dict[str, Any]) -> list[Any] | None:
    found = getattr(estimator, "classes_", None)
    if found is None:
        found = options.get("classes")  # LightGBM classifiers load as Boosters
    if found is None:
        return None
    return [c.item() if hasattr(c, "item") else c for c in found]


def _is_linear(estimator: Any) -> bool:
    module = type(estimator).__module__
    return (module.startswith(("sklearn.linear_model", "sklearn.svm._classes"))
            and hasattr(estimator, "coef_") and hasattr(estimator, "intercept_"))


def _forest_like(estimator: Any) -> bool:
    """scikit-learn trees and forests explain each class's probability, not a margin."""
    module = type(estimator).__module__
    return module.startswith(("sklearn.ensemble._forest", "sklearn.tree"))


def _linear(estimator: Any, background: Any | None,
            classifier: bool) -> tuple[str, Callable[[Any], tuple[Any, Any]]]:
    import numpy as np

    coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64))
    if not classifier and coef.shape[0] > 1:
        raise _refuse(f"it is a linear model with {coef.shape[0]} outputs; only single-output "
                      "regressors are explained")
    mean = np.zeros(coef.shape[1]) if background is None else np.asarray(
        background, dtype=np.float64).mean(axis=0)
    base = intercept + coef @ mean  # the score of the average (example) input

    def compute(X: Any) -> tuple[Any, Any]:
        centered = np.asarray(X, dtype=np.float64) - mean
        if coef.shape[0] == 1:
            return centered * coef[0], base
        return centered[:, :, None] * coef.T[None, :, :], base

    if not classifier:
        return "raw", compute
    return ("log_odds" if coef.shape[0] == 1 else "margin"), compute


def _tree_explainer(estimator: Any) -> Any:
    try:
        import shap
    except ImportError as exc:
        raise errors.MissingDependency("explanations of tree models need shap: pip install "
                                       "'shipyard-mlops[explain]'") from exc
    try:
        return shap.TreeExplainer(estimator, feature_perturbation="tree_path_dependent")
    except Exception as exc:  # noqa: BLE001 - shap's InvalidModelError and friends
        message = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        if "not yet supported" in message or "Model type" in message:
            raise _refuse(f"{type(estimator).__qualname__} is neither a tree nor a linear "
                          f"model; {_AGNOSTIC}") from None
        raise _refuse(f"shap's TreeExplainer cannot explain this "
                      f"{type(estimator).__qualname__}: {message}") from None


# -- transformed features --------------------------------------------------------------------


def _transformed_features(transform: Any | None,
                          example: Any | None) -> tuple[list[str] | None, list[list[int]] | None]:
    """The transform's output names, and which outputs belong to each input column."""
    if transform is None:
        return None, None
    names = None
    try:
        names = [str(n) for n in transform.get_feature_names_out()]
    except Exception:  # noqa: BLE001 - a step without feature names: positions then
        names = None
    source = _source_columns(transform)
    n_inputs = getattr(transform, "n_features_in_", None)
    if source is None or n_inputs is None or (names is not None and len(names) != len(source)):
        return names, None
    groups: list[list[int]] = [[] for _ in range(int(n_inputs))]
    for out, col in enumerate(source):
        groups[col].append(out)
    return names, groups


def _source_columns(transform: Any) -> list[int] | None:
    """For each output of ``transform``, the input column it comes from (None: unknown)."""
    steps = [s for _, s in transform.steps] if hasattr(transform, "steps") else [transform]
    source: list[int] | None = None
    for step in steps:
        if step is None or step == "passthrough":
            continue
        mapping = _step_sources(step)
        if mapping is None:
            return None
        if source is not None:
            if max(mapping, default=-1) >= len(source):
                return None
            mapping = [source[m] for m in mapping]
        source = mapping
    return source


def _step_sources(step: Any) -> list[int] | None:
    n_in = getattr(step, "n_features_in_", None)
    if n_in is None:
        return None
    if hasattr(step, "transformers_") and hasattr(step, "output_indices_"):
        return _column_transformer_sources(step)
    n_out = _n_outputs(step)
    if n_out == n_in:
        return list(range(n_in))
    return _one_hot_sources(step, list(range(n_in)), n_out)


def _n_outputs(step: Any) -> int | None:
    try:
        return len(step.get_feature_names_out())
    except Exception:  # noqa: BLE001 - unfitted, or no names: unknown
        return None


def _column_transformer_sources(ct: Any) -> list[int] | None:
    import numpy as np

    names_in = [str(n) for n in getattr(ct, "feature_names_in_", [])]
    total = sum(s.stop - s.start for s in ct.output_indices_.values())
    source: list[int | None] = [None] * total
    for name, trans, columns in ct.transformers_:
        out = ct.output_indices_.get(name)
        if out is None or out.stop == out.start:
            continue
        cols = _column_indices(columns, names_in, int(ct.n_features_in_), np)
        if cols is None:
            return None
        width = out.stop - out.start
        if width == len(cols):
            mapped: list[int] | None = cols
        elif len(cols) == 1:
            mapped = cols * width
        else:
            last = trans.steps[-1][1] if hasattr(trans, "steps") else trans
            mapped = _one_hot_sources(last, cols, width)
        if mapped is None:
            return None
        source[out.start:out.stop] = mapped
    return None if any(s is None for s in source) else source  # type: ignore[return-value]


def _column_indices(columns: Any, names: list[str], n: int, np: Any) -> list[int] | None:
    if isinstance(columns, str | int) and not isinstance(columns, bool):
        columns = [columns]
    if isinstance(columns, slice):
        return list(range(n))[columns]
    values = list(np.asarray(columns).tolist()) if not isinstance(columns, list) else columns
    if values and all(isinstance(v, bool) for v in values):
        return [i for i, keep in enumerate(values) if keep]
    found: list[int] = []
    for v in values:
        if isinstance(v, str) and v in names:
            found.append(names.index(v))
        elif isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n:
            found.append(v)
        else:
            return None
    return found


def _one_hot_sources(step: Any, cols: list[int], width: int | None) -> list[int] | None:
    categories = getattr(step, "categories_", None)
    if categories is None or len(categories) != len(cols):
        return None
    drops = getattr(step, "drop_idx_", None)
    mapped: list[int] = []
    for j, (col, cats) in enumerate(zip(cols, categories, strict=True)):
        dropped = drops is not None and drops[j] is not None
        mapped.extend([col] * (len(cats) - int(dropped)))
    return mapped if len(mapped) == width else None


# -- values ----------------------------------------------------------------------------------


def _dense(X: Any) -> Any:
    return X.toarray() if hasattr(X, "toarray") else X


def _cell(table: Any, i: int, j: int) -> Any:
    if hasattr(table, "iat"):
        return table.iat[i, j]
    return table[i, j]


def _plain(value: Any) -> Any:
    """A JSON-friendly Python value (NaN and NaT become None)."""
    if hasattr(value, "item") and not hasattr(value, "isoformat"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "isoformat"):
        return None if str(value) == "NaT" else value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value
