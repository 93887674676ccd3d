"""Fuzz the model server from its own ``/openapi.json``: no request may produce a 5xx, and
every answer must match the document (status, content type, body schema)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from shipyard.serving import ServedModel, ServingConfig, create_app

from .conftest import make_client

_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
           response_schema_conformance]


def _app(served: ServedModel, home: Path) -> Any:
    return create_app(served, ServingConfig(max_body_bytes=64 * 1024, max_wait_ms=0),
                      home=home)


@pytest.fixture
def model_app(served: ServedModel, tmp_path: Path) -> Any:
    return _app(served, tmp_path)


@pytest.fixture(scope="module")
def model_schema(served: ServedModel, tmp_path_factory: pytest.TempPathFactory) -> Any:
    app = _app(served, Path(tmp_path_factory.mktemp("fuzz-serving")))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_input_produces_a_server_error(model_schema: Any) -> None:
    # One hypothesis run per operation, driven here rather than by schemathesis' pytest
    # plugin (its fixture-based parametrization breaks on newer pytest releases).
    operations = [result.ok() for result in model_schema.get_all_operations()]
    assert len(operations) >= 10  # every route of the server is in the document
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        def fuzz(case: Any) -> None:
            case.call_and_validate(checks=_CHECKS)

        fuzz()


def test_the_document_describes_the_served_signature(model_app: Any,
                                                     served: ServedModel) -> None:
    with make_client(model_app) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    assert {"/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}",
            "/v2/models/{name}/versions/{version}/infer", "/v2/models/{name}/infer",
            "/predict", "/feedback", "/health", "/ready", "/metrics"} <= set(doc["paths"])
    record = doc["components"]["schemas"]["Record"]
    assert record["properties"] == {"age": {"type": "integer", "minimum": -(2**63),
                                            "maximum": 2**63 - 1},
                                    "income": {"type": "number"},
                                    "debt": {"type": "number"}}
    assert record["required"] == ["age", "income", "debt"]
    assert record["additionalProperties"] is False
    infer = doc["paths"]["/v2/models/{name}/infer"]["post"]
    assert infer["parameters"][0]["schema"]["enum"] == [served.name]


def test_the_documented_examples_predict(model_app: Any) -> None:
    with make_client(model_app) as client:
        doc = client.get("/openapi.json").json()
        schemas = doc["components"]["schemas"]
        [simple] = schemas["PredictRequest"]["examples"]
        [v2] = schemas["V2InferenceRequest"]["examples"]
        answered = client.post("/predict", content=orjson.dumps(simple))
        inferred = client.post("/v2/models/credit/infer", content=orjson.dumps(v2))
    assert answered.status_code == 200, answered.text
    assert len(answered.json()["predictions"]) == 1
    assert inferred.status_code == 200, inferred.text
    assert [o["name"] for o in inferred.json()["outputs"]] == ["predict", "predict_proba"]


def test_a_nullable_or_categorical_column_is_typed_as_such() -> None:
    from shipyard.models import ColumnSpec
    from shipyard.serving._openapi import _column_schema

    assert _column_schema(ColumnSpec(name="x", type="double", nullable=True)) == {
        "anyOf": [{"type": "number"}, {"type": "null"}]}
    assert _column_schema(ColumnSpec(name="c", type="category", categories=["a", "b"])) \
        == {"enum": ["a", "b"]}


@pytest.mark.parametrize("kind", ["tensor", "categories"])
def test_other_signatures_give_a_valid_document(kind: str, tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from sklearn.tree import DecisionTreeClassifier

    import shipyard as sy

    model: Any
    if kind == "tensor":  # an array model: no columns to type, tensors per the protocol
        X: Any = np.random.default_rng(0).normal(size=(40, 3))
        model = DecisionTreeClassifier().fit(X, np.array(["no", "yes"])[
            (X[:, 0] > 0).astype(int)])
    else:  # a category column: its levels become an enum
        X = pd.DataFrame({"colour": pd.Categorical(["red", "blue", "red", "green"] * 10),
                          "size": np.arange(40.0)})
        model = make_pipeline(make_column_transformer((OneHotEncoder(), ["colour"]),
                                                      remainder="passthrough"),
                              DecisionTreeClassifier()).fit(X, X["size"] > 20)
    name = f"openapi-{kind}"
    with sy.start_run("openapi") as run:
        run.log_model(model, input_example=X[:5], registered_model_name=name)
    served = ServedModel.load(name)
    with make_client(_app(served, tmp_path)) as client:
        response = client.get("/openapi.json")
        assert response.status_code == 200
        doc = response.json()
        schemathesis.openapi.from_dict(doc)  # a well-formed OpenAPI document
        record = doc["components"]["schemas"]["Record"]
        if kind == "tensor":
            assert "properties" not in record
            assert "examples" not in doc["components"]["schemas"]["PredictRequest"]
            return
        assert record["properties"]["colour"] == {"enum": ["blue", "green", "red"]}
        [example] = doc["components"]["schemas"]["PredictRequest"]["examples"]
        answered = client.post("/predict", content=orjson.dumps(example))
        assert answered.status_code == 200, answered.text
