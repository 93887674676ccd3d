"""sy.autolog() against real scikit-learn estimators."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import shipyard as sy
from shipyard.autolog import autolog, disable_autolog


@pytest.fixture
def autologging() -> Iterator[None]:
    autolog()
    yield
    disable_autolog()


def test_fit_without_active_run_logs_one_run_with_params_metrics_and_model(
        autologging: None, client: sy.Client) -> None:
    X, y = make_classification(n_samples=300, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5)).fit(X, y)

    runs = sy.search_runs(output_format="list")
    assert len(runs) == 1  # the pipeline's inner fits are not separate runs
    run = runs[0]
    assert run.status.value == "FINISHED"
    assert run.params["logisticregression__C"] == "0.5"
    assert run.metrics["training_accuracy"] == pytest.approx(accuracy_score(y, model.predict(X)))
    assert 0.5 < run.metrics["training_roc_auc"] <= 1.0
    restored = pickle.loads(client.read_artifact(run.run_id, "model/model.pkl"))
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))


def test_fit_inside_active_run_logs_to_that_run(autologging: None) -> None:
    X, y = make_regression(n_samples=200, n_features=4, noise=0.1, random_state=1)
    with sy.start_run(experiment="auto", run_name="mine") as run:
        model = LinearRegression().fit(X, y)
    stored = sy.get_run(run.run_id)
    assert stored.run_name == "mine"
    assert stored.metrics["training_r2"] == pytest.approx(r2_score(y, model.predict(X)))
    assert stored.tags["estimator_class"].endswith("LinearRegression")


def test_failed_fit_marks_the_run_failed(autologging: None) -> None:
    with pytest.raises(ValueError):
        LogisticRegression().fit(np.zeros((4, 2)), np.zeros(4))  # one class only
    runs = sy.search_runs(output_format="list")
    assert [r.status.value for r in runs] == ["FAILED"]


def test_disable_restores_plain_fit() -> None:
    autolog()
    disable_autolog()
    assert not hasattr(LogisticRegression.fit, "__shipyard_autolog__")
    X, y = make_classification(n_samples=50, random_state=0)
    LogisticRegression().fit(X, y)
    assert sy.search_runs(output_format="list") == []
