"""The server hands scikit-learn models a plain array when that cannot change the answer."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, VotingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from shipyard.serving._arrays import ArrayInput, _same_answers


def _data(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"age": rng.integers(18, 80, n).astype(np.int64),
                      "income": rng.normal(50.0, 10.0, n),
                      "debt": rng.normal(20.0, 5.0, n)})
    y = (X["income"] - X["debt"] + rng.normal(0, 5, n) > 30).astype(int).to_numpy()
    return X, y


def _convert(model: Any, frame: pd.DataFrame) -> tuple[ArrayInput, Any]:
    arrays = ArrayInput("sklearn", model)
    proba = getattr(model, "predict_proba", None)
    return arrays, arrays.convert(frame, model.predict, proba)


@pytest.mark.parametrize("model", [
    LogisticRegression(max_iter=500),
    GradientBoostingClassifier(n_estimators=20, random_state=0),
    make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
], ids=["logistic", "gbc", "pipeline"])
def test_shipped_estimators_get_the_frames_values(model: Any) -> None:
    X, y = _data()
    model.fit(X, y)
    frame = X.iloc[:40]
    arrays, given = _convert(model, frame)
    assert arrays.decided is True
    assert isinstance(given, np.ndarray) and given.shape == (40, 3)
    np.testing.assert_array_equal(given, frame.to_numpy(dtype=np.float64))
    # same answers, and scikit-learn's "no feature names" warning is not shown
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = arrays.convert(frame, model.predict, model.predict_proba)
        np.testing.assert_array_equal(model.predict(again), model.predict(frame))
        np.testing.assert_array_equal(model.predict_proba(again), model.predict_proba(frame))
    assert not [w for w in caught if "feature names" in str(w.message)]


def test_models_that_select_columns_by_name_keep_the_frame() -> None:
    X, y = _data()
    by_name = Pipeline([("cols", ColumnTransformer([("num", StandardScaler(),
                                                     ["income", "debt"])])),
                        ("clf", LogisticRegression())]).fit(X, y)
    user_code = make_pipeline(FunctionTransformer(lambda d: d[["income", "debt"]]),
                              LogisticRegression()).fit(X, y)
    for model in (by_name, user_code):
        arrays, given = _convert(model, X.head(5))
        assert given is not None and isinstance(given, pd.DataFrame)
        assert arrays.decided is False


def test_estimators_wrapping_user_code_keep_the_frame_and_plain_wrappers_do_not() -> None:
    X, y = _data()
    reorder = make_pipeline(FunctionTransformer(lambda d: d[["debt", "income", "age"]]),
                            LinearRegression())
    search = GridSearchCV(reorder, {"linearregression__fit_intercept": [True, False]},
                          cv=2).fit(X, y)
    arrays, given = _convert(search, X.head(3))
    assert isinstance(given, pd.DataFrame) and arrays.decided is False
    plain = GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.5, 1.0]}, cv=2).fit(X, y)
    voting = VotingClassifier([("lr", LogisticRegression(max_iter=500)),
                               ("gb", GradientBoostingClassifier(n_estimators=5))]).fit(X, y)
    for model in (plain, voting):
        arrays, given = _convert(model, X.head(3))
        assert isinstance(given, np.ndarray) and arrays.decided is True


def test_the_check_also_compares_rows_other_than_the_first_input() -> None:
    """A model that moves columns around for arrays agrees on a warm-up row of zeros; the
    check's pseudo-random rows catch it."""
    zeros = pd.DataFrame(np.zeros((1, 2)), columns=["a", "b"])

    def swapped(data: Any) -> np.ndarray:
        if isinstance(data, pd.DataFrame):
            return data["a"].to_numpy() - data["b"].to_numpy()
        return np.asarray(data)[:, 1] - np.asarray(data)[:, 0]

    assert _same_answers(zeros, zeros.to_numpy(), swapped, None) is False


def test_a_model_that_keeps_its_frame_installs_no_warnings_filter() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})

    def by_type(data: Any) -> np.ndarray:
        if isinstance(data, pd.DataFrame):
            return np.zeros(len(data))
        warnings.warn("X does not have valid feature names, but M was fitted with feature "
                      "names", UserWarning, stacklevel=1)  # as scikit-learn does
        return np.ones(len(data))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = list(warnings.filters)
        assert _same_answers(frame, frame.to_numpy(), by_type, None) is False
        assert warnings.filters == before
    assert caught == []  # silenced while the check ran


def test_models_not_shipped_by_sklearn_and_other_flavors_keep_the_frame() -> None:
    class Own(LogisticRegression):  # defined here: its module is not scikit-learn's
        pass

    X, y = _data()
    own = Own().fit(X, y)
    assert isinstance(_convert(own, X.head(3))[1], pd.DataFrame)
    model = LogisticRegression().fit(X, y)
    xgb_like = ArrayInput("xgboost", model)
    assert isinstance(xgb_like.convert(X.head(3), model.predict, None), pd.DataFrame)


def test_columns_out_of_the_fitted_order_or_not_numeric_keep_the_frame() -> None:
    X, y = _data()
    model = LogisticRegression().fit(X, y)
    arrays = ArrayInput("sklearn", model)
    reordered = X[["debt", "age", "income"]].head(3)
    assert arrays.convert(reordered, model.predict, None) is reordered
    assert arrays.decided is None  # nothing was compared: the next input decides
    text = X.head(3).astype({"age": str})
    assert arrays.convert(text, model.predict, None) is text
    assert arrays.convert(X.head(3).to_numpy(), model.predict, None) is not None


def test_different_or_failing_answers_on_arrays_keep_the_frame() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    array = frame.to_numpy()

    def by_type(data: Any) -> np.ndarray:
        return np.zeros(len(data)) if isinstance(data, pd.DataFrame) else np.ones(len(data))

    def frames_only(data: Any) -> np.ndarray:
        return np.asarray(data["a"])

    def same(data: Any) -> np.ndarray:
        return np.asarray(data, dtype=float).sum(axis=1)

    def proba_by_type(data: Any) -> np.ndarray:
        p = 0.25 if isinstance(data, pd.DataFrame) else 0.5
        return np.full((len(data), 2), p)

    assert _same_answers(frame, array, by_type, None) is False
    assert _same_answers(frame, array, frames_only, None) is False
    assert _same_answers(frame, array, same, None) is True
    assert _same_answers(frame, array, same, proba_by_type) is False


def test_served_model_answers_as_the_model_does(credit: Any, model_home: Any) -> None:
    """Through the server's model: the decision is taken on the first request, and the
    answers equal the model's own on the DataFrame, for one row and for many."""
    from shipyard.serving import ServedModel

    served = ServedModel.load(f"{credit.name}/1", model_home)
    for rows in (credit.X.head(1), credit.X.head(57)):
        result = served.predict(rows)
        np.testing.assert_array_equal(result.predictions, credit.model.predict(rows))
        np.testing.assert_allclose(result.probabilities, credit.model.predict_proba(rows))
    assert served._arrays.decided is True
