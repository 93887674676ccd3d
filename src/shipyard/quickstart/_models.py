"""The quickstart's candidate models, their evaluation, learning curves and explanations.

Each :class:`Candidate` builds a small scikit-learn model and fits it in ``stages`` steps,
calling ``advance()`` after each so a progress bar can follow. Fitting returns the model and
its validation curve (metrics per step, e.g. AUC against the number of trees).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from ._data import CATEGORICAL_FEATURES, NUMERIC_FEATURES

__all__ = ["Candidate", "Fitted", "candidates", "evaluate", "feature_importance", "roc_points",
           "roc_figure", "single_openmp_thread"]

#: (step, {metric: value}) points of a validation curve.
Curve = list[tuple[int, dict[str, float]]]


@dataclass
class Fitted:
    """A fitted model and its validation curve."""

    model: Any
    curve: Curve = field(default_factory=list)


@dataclass(frozen=True)
class Candidate:
    """One model family to try: its logged params and how to fit it in ``stages`` steps."""

    name: str
    params: dict[str, Any]
    stages: int
    fit: Callable[[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series, Callable[[], None]],
                  Fitted]


def candidates(seed: int) -> list[Candidate]:
    """The three candidates: logistic regression, random forest, histogram gradient boosting."""
    return [_logistic(seed), _forest(seed), _boosting(seed)]


def _logistic(seed: int) -> Candidate:
    params = {"C": 1.0, "max_iter": 1000}

    def fit(X: pd.DataFrame, y: pd.Series, Xv: pd.DataFrame, yv: pd.Series,
            advance: Callable[[], None]) -> Fitted:
        prep = ColumnTransformer([("num", StandardScaler(), NUMERIC_FEATURES),
                                  ("cat", OneHotEncoder(handle_unknown="ignore"),
                                   CATEGORICAL_FEATURES)])
        model = Pipeline([("prep", prep), ("clf", LogisticRegression(random_state=seed,
                                                                     **params))])
        model.fit(X, y)
        advance()
        return Fitted(model)

    return Candidate("logistic_regression", {"model": "LogisticRegression", "scaling": "standard",
                                             "encoding": "one-hot", **params}, 1, fit)


def _forest(seed: int) -> Candidate:
    params = {"max_depth": 8, "min_samples_leaf": 5}
    steps = (30, 60, 90, 120, 150)

    def fit(X: pd.DataFrame, y: pd.Series, Xv: pd.DataFrame, yv: pd.Series,
            advance: Callable[[], None]) -> Fitted:
        encode = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
        prep = ColumnTransformer([("cat", encode, CATEGORICAL_FEATURES)],
                                 remainder="passthrough")
        forest = RandomForestClassifier(warm_start=True, n_jobs=2, random_state=seed, **params)
        model = Pipeline([("prep", prep), ("clf", forest)])
        curve: Curve = []
        for n_trees in steps:  # warm start: each fit adds trees to the forest
            model.set_params(clf__n_estimators=n_trees).fit(X, y)
            proba = model.predict_proba(Xv)[:, 1]
            curve.append((n_trees, {"valid_roc_auc": float(roc_auc_score(yv, proba))}))
            advance()
        return Fitted(model, curve)

    return Candidate("random_forest", {"model": "RandomForestClassifier",
                                       "n_estimators": steps[-1], "encoding": "ordinal",
                                       **params}, len(steps), fit)


def _boosting(seed: int) -> Candidate:
    params = {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 8,
              "min_samples_leaf": 40, "l2_regularization": 1.0}
    every = 10

    def fit(X: pd.DataFrame, y: pd.Series, Xv: pd.DataFrame, yv: pd.Series,
            advance: Callable[[], None]) -> Fitted:
        model = HistGradientBoostingClassifier(categorical_features="from_dtype",
                                               early_stopping=False, random_state=seed,
                                               **params)
        with single_openmp_thread():
            model.fit(X, y)
            advance()
            curve: Curve = []
            for i, proba in enumerate(model.staged_predict_proba(Xv), start=1):
                if i % every == 0:
                    p = proba[:, 1]
                    curve.append((i, {"valid_roc_auc": float(roc_auc_score(yv, p)),
                                      "valid_log_loss": float(log_loss(yv, p, labels=[0, 1]))}))
        advance()
        return Fitted(model, curve)

    return Candidate("hist_gradient_boosting",
                     {"model": "HistGradientBoostingClassifier", "encoding": "native", **params},
                     2, fit)


def single_openmp_thread() -> Any:
    """A context in which OpenMP uses one thread: on data this small, thread start-up and
    contention cost more than they save (gradient boosting fits ~5x faster on 2 cores)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def evaluate(y_true: pd.Series, proba: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """roc_auc, accuracy, f1, precision, recall (at ``threshold``) and log_loss."""
    pred = (proba >= threshold).astype(int)
    return {
        "roc_auc": float(roc_auc_score(y_true, proba)),
        "accuracy": float(accuracy_score(y_true, pred)),
        "f1": float(f1_score(y_true, pred, zero_division=0)),
        "precision": float(precision_score(y_true, pred, zero_division=0)),
        "recall": float(recall_score(y_true, pred, zero_division=0)),
        "log_loss": float(log_loss(y_true, proba, labels=[0, 1])),
    }


def feature_importance(model: Any, X: pd.DataFrame, y: pd.Series, seed: int) -> pd.DataFrame:
    """Permutation importance (drop in validation ROC AUC) per input column, largest first.

    The same method for every model family, so the tables compare across candidates.
    """
    sample = X.sample(n=min(len(X), 1000), random_state=seed)
    with single_openmp_thread():
        result = permutation_importance(model, sample, y.loc[sample.index], scoring="roc_auc",
                                        n_repeats=3, random_state=seed)
    table = pd.DataFrame({"feature": list(X.columns),
                          "importance_mean": result.importances_mean,
                          "importance_std": result.importances_std})
    return table.sort_values("importance_mean", ascending=False).reset_index(drop=True)


def roc_points(y_true: pd.Series, proba: np.ndarray) -> pd.DataFrame:
    """The ROC curve as a table: false/true positive rate at each threshold."""
    fpr, tpr, thresholds = roc_curve(y_true, proba)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr,
                         "threshold": np.minimum(thresholds, 1.0)})


def roc_figure(points: pd.DataFrame, auc: float, title: str) -> Any:
    """A matplotlib figure of the ROC curve, or None when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    ax.plot(points["fpr"], points["tpr"], label=f"ROC AUC = {auc:.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right")
    return fig
