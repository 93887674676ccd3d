"""Signatures: inference from DataFrames and arrays, enforcement and its error messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shipyard import errors
from shipyard.models import ColumnSpec, Signature, TensorSpec, infer_signature


def _mixed() -> pd.DataFrame:
    return pd.DataFrame({
        "i32": np.array([1, 2, 3], dtype=np.int32),
        "i64": np.array([1, 2, 3], dtype=np.int64),
        "f32": np.array([0.5, 1.5, 2.5], dtype=np.float32),
        "f64": [0.1, 0.2, 0.3],
        "flag": [True, False, True],
        "name": ["a", "b", "c"],
        "level": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"]),
        "when": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
        "opt_int": pd.array([1, None, 3], dtype="Int64"),
        "opt_float": [1.0, np.nan, 3.0],
        "opt_str": ["x", None, "z"],
        "opt_bool": pd.array([True, None, False], dtype="boolean"),
    })


# -- inference -----------------------------------------------------------------------------------

def test_infers_column_types_nullability_and_levels() -> None:
    sig = infer_signature(_mixed())
    assert sig.columnar
    specs = {s.name: s for s in sig.inputs}  # type: ignore[union-attr]
    assert [s.name for s in sig.inputs] == list(_mixed().columns)  # type: ignore[union-attr]
    assert {n: s.type for n, s in specs.items()} == {
        "i32": "integer", "i64": "long", "f32": "float", "f64": "double", "flag": "boolean",
        "name": "string", "level": "category", "when": "datetime", "opt_int": "long",
        "opt_float": "double", "opt_str": "string", "opt_bool": "boolean"}
    assert {n for n, s in specs.items() if s.nullable} == {
        "opt_int", "opt_float", "opt_str", "opt_bool"}
    assert specs["level"].categories == ["lo", "hi"]
    assert specs["name"].categories is None
    assert sig.outputs is None


def test_infers_outputs_from_model_output() -> None:
    sig = infer_signature(_mixed(), np.array([0.1, 0.9, 0.4]))
    assert sig.outputs == TensorSpec(dtype="float64", shape=[-1])
    sig = infer_signature(_mixed(), pd.DataFrame({"label": ["a", "b", "a"]}))
    assert sig.outputs == [ColumnSpec(name="label", type="string")]


def test_infers_tensor_spec_from_ndarray() -> None:
    sig = infer_signature(np.zeros((5, 3, 2), dtype=np.float32), np.zeros((5, 4)))
    assert not sig.columnar
    assert sig.inputs == TensorSpec(dtype="float32", shape=[-1, 3, 2])
    assert sig.outputs == TensorSpec(dtype="float64", shape=[-1, 4])


def test_infers_from_dict_of_columns_and_records() -> None:
    from_dict = infer_signature({"a": [1, 2], "b": ["x", "y"]})
    from_records = infer_signature([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
    assert from_dict.inputs == from_records.inputs
    assert [(s.name, s.type) for s in from_dict.inputs] == [  # type: ignore[union-attr]
        ("a", "long"), ("b", "string")]


def test_signature_round_trips_through_json() -> None:
    sig = infer_signature(_mixed(), np.array([1, 2, 3]))
    assert Signature.model_validate_json(sig.model_dump_json()) == sig


# -- enforcement: columns ----------------------------------------------------------------------

def test_matching_frame_passes_in_signature_order() -> None:
    frame = _mixed()
    sig = infer_signature(frame)
    out = sig.enforce(frame[list(reversed(frame.columns))])
    assert list(out.columns) == list(frame.columns)
    pd.testing.assert_frame_equal(out, frame)


def test_every_problem_is_reported_in_one_message() -> None:
    sig = infer_signature(pd.DataFrame({"age": [30, 40], "income": [1.0, 2.0],
                                        "city": ["a", "b"], "score": [0.1, 0.2]}))
    bad = pd.DataFrame({"age": ["thirty", "forty"],  # wrong type
                        "score": [0.3, 0.4],
                        "colour": ["red", "blue"], "extra2": [1, 2]})  # extras
    with pytest.raises(errors.InvalidInput) as info:
        sig.enforce(bad)
    message = str(info.value)
    assert "missing columns: income, city" in message
    assert "unexpected columns: colour, extra2" in message
    assert "column 'age' is string, the model expects long" in message
    assert info.value.field == "inputs"


def test_extra_columns_drop_drops_them() -> None:
    sig = infer_signature(pd.DataFrame({"a": [1.0], "b": [2.0]}))
    dropping = sig.model_copy(update={"extra_columns": "drop"})
    out = dropping.enforce(pd.DataFrame({"b": [3.0], "junk": ["x"], "a": [4.0]}))
    assert list(out.columns) == ["a", "b"]
    assert out.iloc[0].tolist() == [4.0, 3.0]
    with pytest.raises(errors.InvalidInput, match="missing columns: b"):
        dropping.enforce(pd.DataFrame({"a": [1.0], "junk": [1]}))


@pytest.mark.parametrize(("values", "expected_dtype"), [
    (np.array([1, 2], dtype=np.int64), "float64"),
    (np.array([1, 2], dtype=np.int32), "float64"),
    (np.array([1.5, 2.5], dtype=np.float32), "float64"),
])
def test_widening_to_double_is_allowed(values: np.ndarray, expected_dtype: str) -> None:
    sig = Signature(inputs=[ColumnSpec(name="x", type="double")])
    out = sig.enforce(pd.DataFrame({"x": values}))
    assert str(out["x"].dtype) == expected_dtype
    assert out["x"].tolist() == pytest.approx(values.tolist())


def test_int_to_float_and_bool_to_int_widen() -> None:
    sig = Signature(inputs=[ColumnSpec(name="f", type="float"), ColumnSpec(name="i", type="long")])
    out = sig.enforce({"f": np.array([1, 2], dtype=np.int32), "i": [True, False]})
    assert str(out["f"].dtype) == "float32" and str(out["i"].dtype) == "int64"


def test_narrowing_is_refused() -> None:
    sig = Signature(inputs=[ColumnSpec(name="n", type="long")])
    with pytest.raises(errors.InvalidInput, match="column 'n' is double, the model expects long"):
        sig.enforce({"n": [1.5, 2.5]})


def test_nulls_are_refused_unless_the_column_was_nullable() -> None:
    sig = infer_signature(pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, np.nan]}))
    assert sig.enforce({"a": [1.0], "b": [np.nan]})["b"].isna().all()
    with pytest.raises(errors.InvalidInput, match="column 'a' has missing values"):
        sig.enforce({"a": [np.nan], "b": [1.0]})


def test_categories_are_restored_and_unseen_levels_reported() -> None:
    sig = infer_signature(pd.DataFrame({"c": pd.Categorical(["lo", "hi"],
                                                            categories=["lo", "hi"])}))
    out = sig.enforce({"c": ["hi", "lo", "hi"]})  # strings become the trained categories
    assert list(out["c"].cat.categories) == ["lo", "hi"]
    assert out["c"].cat.codes.tolist() == [1, 0, 1]
    reordered = pd.Categorical(["hi"], categories=["hi", "lo"])
    assert sig.enforce({"c": reordered})["c"].cat.codes.tolist() == [1]
    with pytest.raises(errors.InvalidInput, match="not among its categories: 'mid'"):
        sig.enforce({"c": ["lo", "mid"]})


def test_dict_of_columns_and_list_of_records_are_accepted() -> None:
    sig = infer_signature(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    from_dict = sig.enforce({"b": ["z"], "a": [3]})
    from_scalars = sig.enforce({"a": 3, "b": "z"})
    from_records = sig.enforce([{"a": 3, "b": "z"}])
    for out in (from_dict, from_scalars, from_records):
        assert out.to_dict("records") == [{"a": 3, "b": "z"}]
    with pytest.raises(errors.InvalidInput, match="different lengths"):
        sig.enforce({"a": [1, 2], "b": ["x"]})


def test_positional_array_maps_to_column_names() -> None:
    sig = infer_signature(pd.DataFrame({"a": [1.0], "b": [2.0]}))
    out = sig.enforce(np.array([[5.0, 6.0]]))
    assert out.to_dict("records") == [{"a": 5.0, "b": 6.0}]


def test_integer_labelled_frame_matches_its_own_signature() -> None:
    frame = pd.DataFrame(np.ones((2, 2)))  # columns 0 and 1, recorded as "0" and "1"
    out = infer_signature(frame).enforce(frame)
    assert list(out.columns) == [0, 1]


def test_unusable_input_type_is_invalid_input() -> None:
    sig = infer_signature(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(errors.InvalidInput, match="cannot use"):
        sig.enforce(42)


# -- enforcement: tensors ----------------------------------------------------------------------

def test_tensor_shape_is_checked_with_any_size_batches() -> None:
    sig = infer_signature(np.zeros((4, 3), dtype=np.float32))
    assert sig.enforce(np.ones((10, 3), dtype=np.float32)).shape == (10, 3)
    assert sig.enforce(np.ones(3, dtype=np.float32)).shape == (1, 3)  # one row
    with pytest.raises(errors.InvalidInput, match="dimension 1 must be 3, got 5"):
        sig.enforce(np.ones((2, 5), dtype=np.float32))
    with pytest.raises(errors.InvalidInput, match="expected 2 dimensions"):
        sig.enforce(np.ones((2, 3, 1), dtype=np.float32))


def test_tensor_dtype_casts_safely_or_refuses() -> None:
    sig = infer_signature(np.zeros((1, 2), dtype=np.float64))
    assert sig.enforce(np.ones((1, 2), dtype=np.float32)).dtype == np.float64
    assert sig.enforce(np.ones((1, 2), dtype=np.int64)).dtype == np.float64
    assert sig.enforce([[1, 2]]).dtype == np.float64  # nested lists too
    narrow = infer_signature(np.zeros((1, 2), dtype=np.float32))
    assert narrow.enforce(np.ones((1, 2), dtype=np.int32)).dtype == np.float32
    with pytest.raises(errors.InvalidInput, match="float64 cannot be safely cast to float32"):
        narrow.enforce(np.ones((1, 2), dtype=np.float64))
    with pytest.raises(errors.InvalidInput, match="cannot be safely cast"):
        sig.enforce(np.array([["a", "b"]]))


def test_tensor_signature_accepts_a_frame() -> None:
    sig = infer_signature(np.zeros((1, 2), dtype=np.float64))
    out = sig.enforce(pd.DataFrame({"x": [1.0], "y": [2.0]}))
    assert isinstance(out, np.ndarray) and out.tolist() == [[1.0, 2.0]]
