"""Every flavor: save → load → the same predictions, pinned environment, and the registry path.

Each case builds a tiny model of its library (skipped when the library is not installed),
and the same case runs through ``save_model``/``load_model_dir`` and through
``run.log_model`` → ``sy.load_model("models:/m/1")``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import shipyard as sy
from shipyard import errors
from shipyard.models import flavor_for, load_model_dir, save_model

RNG_SEED = 7


@dataclass
class Case:
    model: Any
    X: Any
    flavor: str
    dist: str | None  # the distribution the environment must pin (None: nothing beyond core)
    expected: Any
    expected_proba: Any = None
    atol: float = 0.0
    rtol: float = 1e-12
    extra: dict[str, Any] = field(default_factory=dict)


def _frame(n: int = 60, *, category: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(RNG_SEED)
    data: dict[str, Any] = {"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                            "x3": rng.uniform(size=n)}
    if category:
        data["color"] = pd.Categorical(rng.choice(["red", "green", "blue"], n))
    return pd.DataFrame(data)


def _binary(X: pd.DataFrame) -> np.ndarray:
    return (X["x1"] + X["x2"] > 0).to_numpy().astype(int)


def _three(X: pd.DataFrame) -> np.ndarray:
    return np.digitize(X["x1"] + X["x3"], [-0.3, 0.8])


# -- scikit-learn --------------------------------------------------------------------------------

def sklearn_estimator() -> Case:
    from sklearn.linear_model import LogisticRegression

    X = _frame()
    model = LogisticRegression().fit(X, _three(X))
    return Case(model, X, "sklearn", "scikit-learn", model.predict(X), model.predict_proba(X))


def sklearn_pipeline() -> Case:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(RNG_SEED)
    n = 50
    X = pd.DataFrame({"age": rng.integers(18, 80, n), "income": rng.normal(50, 10, n),
                      "city": rng.choice(["paris", "lyon", "nice"], n),
                      "member": rng.random(n) > 0.5})
    y = X["income"] * 0.1 + X["age"] * 0.05 + (X["city"] == "lyon") * 2.0
    model = Pipeline([
        ("prep", ColumnTransformer([
            ("num", StandardScaler(), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "member"]),
        ])),
        ("rf", RandomForestRegressor(n_estimators=5, max_depth=3, random_state=0)),
    ]).fit(X, y)
    return Case(model, X, "sklearn", "scikit-learn", model.predict(X))


# -- XGBoost -----------------------------------------------------------------------------------

def xgboost_classifier() -> Case:
    xgb = pytest.importorskip("xgboost")
    X = _frame(category=True)
    model = xgb.XGBClassifier(n_estimators=4, max_depth=2, enable_categorical=True,
                              tree_method="hist", n_jobs=1).fit(X, _three(X))
    return Case(model, X, "xgboost", "xgboost", model.predict(X), model.predict_proba(X))


def xgboost_regressor() -> Case:
    xgb = pytest.importorskip("xgboost")
    X = _frame()
    model = xgb.XGBRegressor(n_estimators=4, max_depth=2, n_jobs=1).fit(X, X["x1"] * 2)
    return Case(model, X, "xgboost", "xgboost", model.predict(X))


def xgboost_ranker() -> Case:
    xgb = pytest.importorskip("xgboost")
    X = _frame()
    qid = np.repeat(np.arange(3), 20)
    model = xgb.XGBRanker(n_estimators=3, max_depth=2, n_jobs=1).fit(X, _three(X), qid=qid)
    return Case(model, X, "xgboost", "xgboost", model.predict(X),
                extra={"class": "xgboost.sklearn:XGBRanker"})


def xgboost_booster() -> Case:
    xgb = pytest.importorskip("xgboost")
    X = _frame()
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                        xgb.DMatrix(X, label=_binary(X)), num_boost_round=3)
    return Case(booster, X, "xgboost", "xgboost", booster.predict(xgb.DMatrix(X)))


def xgboost_booster_ndarray() -> Case:
    xgb = pytest.importorskip("xgboost")
    X = _frame()
    booster = xgb.train({"objective": "reg:squarederror", "max_depth": 2, "nthread": 1},
                        xgb.DMatrix(X, label=X["x2"]), num_boost_round=3)
    arr = X.to_numpy()
    return Case(booster, arr, "xgboost", "xgboost", booster.predict(xgb.DMatrix(X)))


# -- LightGBM ------------------------------------------------------------------------------------

_LGB = {"n_estimators": 4, "num_leaves": 4, "min_child_samples": 5, "verbose": -1,
        "n_jobs": 1}


def lightgbm_binary() -> Case:
    lgb = pytest.importorskip("lightgbm")
    X = _frame()
    labels = np.where(_binary(X) == 1, "churn", "stay")
    model = lgb.LGBMClassifier(**_LGB).fit(X, labels)
    return Case(model, X, "lightgbm", "lightgbm", model.predict(X), model.predict_proba(X))


def lightgbm_multiclass() -> Case:
    lgb = pytest.importorskip("lightgbm")
    X = _frame(category=True)
    model = lgb.LGBMClassifier(**_LGB).fit(X, _three(X) * 10 + 1)
    return Case(model, X, "lightgbm", "lightgbm", model.predict(X), model.predict_proba(X))


def lightgbm_regressor() -> Case:
    lgb = pytest.importorskip("lightgbm")
    X = _frame()
    model = lgb.LGBMRegressor(**_LGB).fit(X, X["x1"] - X["x3"])
    return Case(model, X, "lightgbm", "lightgbm", model.predict(X))


def lightgbm_booster() -> Case:
    lgb = pytest.importorskip("lightgbm")
    X = _frame()
    booster = lgb.train({"objective": "binary", "num_leaves": 4, "verbose": -1,
                         "num_threads": 1, "min_data_in_leaf": 5},
                        lgb.Dataset(X, label=_binary(X)), num_boost_round=3)
    return Case(booster, X, "lightgbm", "lightgbm", booster.predict(X))


# -- PyTorch -----------------------------------------------------------------------------------

def _torch_case(cls_name: str) -> Case:
    torch = pytest.importorskip("torch")
    from tests.models import torch_modules

    torch.manual_seed(0)
    model = getattr(torch_modules, cls_name)()
    X = np.random.default_rng(RNG_SEED).normal(size=(16, 4)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(X)).numpy()
    fmt = "torchscript" if cls_name == "ScriptableNet" else "state_dict"
    return Case(model, X, "pytorch", "torch", expected, extra={"format": fmt})


def pytorch_scripted() -> Case:
    return _torch_case("ScriptableNet")


def pytorch_state_dict() -> Case:
    return _torch_case("UnscriptableNet")


# -- ONNX ----------------------------------------------------------------------------------------

def onnx_skl2onnx() -> Case:
    pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LogisticRegression

    X = _frame().astype(np.float32)
    sk = LogisticRegression().fit(X, _three(X))
    onx = skl2onnx.to_onnx(sk, X.to_numpy()[:1], options={"zipmap": False})
    return Case(onx, X, "onnx", "onnxruntime", sk.predict(X), sk.predict_proba(X),
                atol=1e-5, rtol=1e-5)


def onnx_zipmap_per_column() -> Case:
    """Per-column inputs (one per DataFrame column, string included) and ZipMap output."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(RNG_SEED)
    X = pd.DataFrame({"amount": rng.normal(size=40).astype(np.float32),
                      "shop": rng.choice(["a", "b", "c"], 40)})
    y = ((X["amount"] > 0) | (X["shop"] == "a")).astype(int)
    sk = Pipeline([("prep", ColumnTransformer([("n", StandardScaler(), ["amount"]),
                                               ("c", OneHotEncoder(), ["shop"])])),
                   ("lr", LogisticRegression())]).fit(X, y)
    onx = convert_sklearn(sk, initial_types=[("amount", FloatTensorType([None, 1])),
                                             ("shop", StringTensorType([None, 1]))])
    return Case(onx, X, "onnx", "onnxruntime", sk.predict(X), sk.predict_proba(X),
                atol=1e-5, rtol=1e-5)


# -- pyfunc --------------------------------------------------------------------------------------

class ThresholdModel:
    """A plain Python model: predict and predict_proba, no library."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        return (data["x1"].to_numpy() > self.threshold).astype(int)

    def predict_proba(self, data: pd.DataFrame) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-(data["x1"].to_numpy() - self.threshold)))
        return np.column_stack([1 - p, p])


def score_function(data: pd.DataFrame) -> np.ndarray:
    return data["x1"].to_numpy() * 2.0 + data["x2"].to_numpy()


def pyfunc_class() -> Case:
    X = _frame()
    model = ThresholdModel(0.1)
    return Case(model, X, "pyfunc", None, model.predict(X), model.predict_proba(X))


def pyfunc_function() -> Case:
    X = _frame()
    return Case(score_function, X, "pyfunc", None, score_function(X))


CASES: dict[str, Callable[[], Case]] = {f.__name__: f for f in (
    sklearn_estimator, sklearn_pipeline,
    xgboost_classifier, xgboost_regressor, xgboost_ranker, xgboost_booster, xgboost_booster_ndarray,
    lightgbm_binary, lightgbm_multiclass, lightgbm_regressor, lightgbm_booster,
    pytorch_scripted, pytorch_state_dict,
    onnx_skl2onnx, onnx_zipmap_per_column,
    pyfunc_class, pyfunc_function,
)}


@functools.cache
def _built(name: str) -> Case:
    """Each case's model is trained once per worker (the tests only read it)."""
    return CASES[name]()


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return _built(request.param)


def _check_predictions(loaded: Any, case: Case) -> None:
    got = loaded.predict(case.X)
    expected = np.asarray(case.expected)
    if expected.dtype.kind in "fc":
        np.testing.assert_allclose(got, expected, rtol=case.rtol, atol=case.atol)
    else:
        np.testing.assert_array_equal(got, expected)
    assert loaded.manifest.has_predict_proba == (case.expected_proba is not None)
    if case.expected_proba is not None:
        np.testing.assert_allclose(loaded.predict_proba(case.X), case.expected_proba,
                                   rtol=case.rtol, atol=case.atol)
    else:
        with pytest.raises(errors.InvalidInput, match="no predict_proba"):
            loaded.predict_proba(case.X)


def test_save_load_predicts_like_the_original(case: Case, tmp_path: Path) -> None:
    detected = flavor_for(case.model)
    assert case.flavor == detected.NAME
    manifest, digest = save_model(case.model, tmp_path / "model", input_example=case.X)
    assert manifest.flavor == case.flavor
    for key, value in case.extra.items():
        assert manifest.flavor_options[key] == value
    assert manifest.signature is not None

    loaded = load_model_dir(tmp_path / "model", digest)
    assert loaded.flavor == case.flavor and loaded.digest == digest
    _check_predictions(loaded, case)

    pins = manifest.environment["requirements"]
    assert f"numpy=={metadata.version('numpy')}" in pins
    if case.dist is not None:
        assert f"{case.dist}=={metadata.version(case.dist)}" in pins


def test_log_register_and_load_through_the_registry(case: Case, client: sy.Client) -> None:
    with sy.start_run("flavors", client=client) as run:
        info = run.log_model(case.model, input_example=case.X, registered_model_name="m")
    assert info.flavor == case.flavor
    assert info.registered_version is not None and info.registered_version.version == 1

    loaded = sy.load_model("models:/m/1", client=client)
    assert loaded.digest == info.digest
    _check_predictions(loaded, case)


# -- flavor-specific behaviour -------------------------------------------------------------------

def test_loaded_native_objects_are_the_library_types(tmp_path: Path) -> None:
    xgb = pytest.importorskip("xgboost")
    lgb = pytest.importorskip("lightgbm")
    cases = {"xgb": _built("xgboost_classifier"), "booster": _built("xgboost_booster"),
             "lgb": _built("lightgbm_multiclass")}
    natives = {}
    for name, c in cases.items():
        _, digest = save_model(c.model, tmp_path / name)
        natives[name] = load_model_dir(tmp_path / name, digest).native
    assert type(natives["xgb"]) is xgb.XGBClassifier
    assert type(natives["booster"]) is xgb.Booster
    assert isinstance(natives["lgb"], lgb.Booster)
    assert not any((tmp_path / n / "model.pkl").exists() for n in cases)  # native formats


def test_lightgbm_classifier_keeps_label_dtype(tmp_path: Path) -> None:
    c = _built("lightgbm_binary")
    _, digest = save_model(c.model, tmp_path / "m")
    got = load_model_dir(tmp_path / "m", digest).predict(c.X)
    assert got.dtype == c.expected.dtype and set(got) <= {"churn", "stay"}


def test_pytorch_accepts_dataframes_and_float64(tmp_path: Path) -> None:
    c = _built("pytorch_scripted")
    _, digest = save_model(c.model, tmp_path / "m")  # no signature: the flavor converts
    loaded = load_model_dir(tmp_path / "m", digest)
    np.testing.assert_allclose(loaded.predict(c.X.astype(np.float64)), c.expected, rtol=1e-6)
    np.testing.assert_allclose(loaded.predict(pd.DataFrame(c.X)), c.expected, rtol=1e-6)


def test_pytorch_unscriptable_module_without_init_kwargs_is_refused_clearly(
        tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from tests.models.torch_modules import NeedsArgsNet

    with pytest.raises(errors.InvalidInput) as info:
        save_model(NeedsArgsNet(3), tmp_path / "m")
    message = str(info.value)
    assert "torch.jit.script" in message and "_shipyard_init_kwargs" in message
    assert not (tmp_path / "m").exists()


def test_pytorch_local_class_is_refused_clearly(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")

    class Local(torch.nn.Module):
        def forward(self, x: torch.Tensor, **options: object) -> torch.Tensor:
            return x

    with pytest.raises(errors.InvalidInput, match="importable"):
        save_model(Local(), tmp_path / "m")


def test_unsupported_object_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidInput, match="no predict method"):
        save_model(object(), tmp_path / "m")


def test_explicit_flavor_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("xgboost")
    with pytest.raises(errors.InvalidInput, match="xgboost flavor"):
        save_model(ThresholdModel(0.0), tmp_path / "m", flavor="xgboost")
