"""The fast path of signature enforcement gives exactly what the full check gives.

``Signature.enforce_fast`` (models/_enforce_fast.py) accepts only numeric inputs that fit;
whatever it returns must equal, dtype for dtype and bit for bit, the frame of the full
check (``_enforce_columns``), and whatever the full check refuses it must leave to it
(None). Hypothesis draws signatures and inputs: lists of Python floats, ints, bools, None,
NaN and huge ints, numpy arrays of many dtypes, DataFrames with their own index, shuffled,
missing and extra columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard import errors
from shipyard.models import ColumnSpec, Signature
from shipyard.models._signature import _enforce_columns, to_frame

NAMES = ["a", "b", "c", "d", "e", "f"]
TYPES = ["double", "float", "long", "integer", "boolean"]
DTYPES = ["float64", "float32", "float16", "int64", "int32", "int16", "uint64", "uint8",
          "bool"]

python_float = st.floats(allow_nan=True, allow_infinity=True, width=64)
python_int = st.one_of(st.integers(-2**63, 2**63 - 1), st.integers(-10, 10),
                       st.sampled_from([2**53 + 1, 2**63, 2**64, -2**63 - 1]))


def _list_column(n: int) -> st.SearchStrategy[list[Any]]:
    homogeneous = st.one_of(st.lists(python_float, min_size=n, max_size=n),
                            st.lists(python_int, min_size=n, max_size=n),
                            st.lists(st.booleans(), min_size=n, max_size=n))
    anything = st.one_of(python_float, st.integers(-100, 100), st.booleans(), st.none(),
                         st.just("1.5"))
    mixed = st.lists(anything, min_size=n, max_size=n)
    return st.one_of(homogeneous, homogeneous, mixed)


def _array_column(n: int) -> st.SearchStrategy[np.ndarray]:
    @st.composite
    def draw(draw_: Any) -> np.ndarray:
        dtype = np.dtype(draw_(st.sampled_from(DTYPES)))
        if dtype.kind == "f":
            values = draw_(st.lists(python_float, min_size=n, max_size=n))
            with np.errstate(over="ignore"):
                return np.array(values, dtype=dtype)
        if dtype.kind == "b":
            return np.array(draw_(st.lists(st.booleans(), min_size=n, max_size=n)),
                            dtype=dtype)
        info = np.iinfo(dtype)
        values = draw_(st.lists(st.integers(int(info.min), int(info.max)), min_size=n,
                                max_size=n))
        return np.array(values, dtype=dtype)

    return draw()


#: inputs the full check accepts for each column type (mostly: NaN may still be refused)
FITTING = {"double": ["floats", "ints", "float64", "float32", "int64", "int32", "uint8"],
           "float": ["ints", "float32", "int64", "int16"],
           "long": ["ints", "bools", "int64", "uint64", "int32", "bool"],
           "integer": ["ints", "bools", "int32", "int16", "int64", "bool"],
           "boolean": ["bools", "bool"]}


def _fitting_column(column_type: str, n: int) -> st.SearchStrategy[Any]:
    @st.composite
    def draw(draw_: Any) -> Any:
        source = draw_(st.sampled_from(FITTING[column_type]))
        if source == "floats":
            return draw_(st.lists(st.floats(allow_nan=draw_(st.booleans())), min_size=n,
                                  max_size=n))
        if source == "ints":
            return draw_(st.lists(st.integers(-2**40, 2**40), min_size=n, max_size=n))
        if source == "bools":
            return draw_(st.lists(st.booleans(), min_size=n, max_size=n))
        dtype = np.dtype(source)
        if dtype.kind == "f":
            return np.array(draw_(st.lists(st.floats(width=32), min_size=n, max_size=n)),
                            dtype=dtype)
        if dtype.kind == "b":
            return np.array(draw_(st.lists(st.booleans(), min_size=n, max_size=n)))
        info = np.iinfo(dtype)
        return np.array(draw_(st.lists(st.integers(int(info.min), int(info.max)),
                                       min_size=n, max_size=n)), dtype=dtype)

    return draw()


@st.composite
def cases(draw: Any) -> tuple[Signature, dict[str, Any], bool]:
    """A signature, an input dict of columns, and whether every column is an array."""
    count = draw(st.integers(1, 5))
    names = draw(st.permutations(NAMES))[:count]
    specs = [ColumnSpec(name=n, type=draw(st.sampled_from(TYPES)), nullable=draw(st.booleans()))
             for n in names]
    sig = Signature(inputs=specs, extra_columns=draw(st.sampled_from(["error", "drop"])))
    n = draw(st.integers(1, 4))
    arrays_only = draw(st.booleans())
    given_names = list(names)
    if draw(st.integers(0, 9)) == 0:
        given_names.append("zz")  # an extra column
    if count > 1 and draw(st.integers(0, 9)) == 0:
        given_names.remove(names[0])  # a missing one
    if draw(st.booleans()):
        given_names = draw(st.permutations(given_names))
    data: dict[str, Any] = {}
    types = {s.name: s.type for s in specs}
    if draw(st.booleans()):  # inputs that fit the signature (the fast path's business)
        for name in given_names:
            data[name] = draw(_fitting_column(types.get(name, "double"), n))
        arrays_only = all(isinstance(v, np.ndarray) for v in data.values())
        return sig, data, arrays_only
    for name in given_names:
        length = n if draw(st.integers(0, 19)) else n + 1  # now and then, a bad length
        column = _array_column(length) if arrays_only else st.one_of(
            _list_column(length), _array_column(length))
        data[name] = draw(column)
    return sig, data, arrays_only


def _full_check(sig: Signature, frame: Any) -> Any:
    assert isinstance(sig.inputs, list)
    return _enforce_columns(sig.inputs, frame, sig.extra_columns)


def _same(fast: Any, slow: Any) -> None:
    pd.testing.assert_frame_equal(fast, slow, check_exact=True, check_dtype=True,
                                  check_index_type=True, check_column_type=True)
    assert [type(c) for c in fast.columns] == [type(c) for c in slow.columns]
    for name in fast.columns:  # bit for bit (assert_frame_equal calls -0.0 == 0.0)
        assert fast[name].to_numpy().tobytes() == slow[name].to_numpy().tobytes()


def _frame_or_error(build: Any) -> Any:
    try:
        return build()
    except (errors.InvalidInput, ValueError, TypeError, OverflowError) as exc:
        return exc


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases())
def test_fast_path_matches_the_full_check_on_a_dict_of_columns(
        case: tuple[Signature, dict[str, Any], bool]) -> None:
    sig, data, _ = case
    with np.errstate(all="ignore"):
        fast = sig.enforce_fast(data)
        # the two ways a dict reaches the full check: the server's pd.DataFrame(data), and
        # Signature.enforce's to_frame (np.atleast_1d per column)
        for frame in (_frame_or_error(lambda: pd.DataFrame(data)),
                      _frame_or_error(lambda: to_frame(data))):
            slow = frame if isinstance(frame, Exception) else _frame_or_error(
                lambda f=frame: _full_check(sig, f))
            if isinstance(slow, Exception):
                assert fast is None, f"the full check refuses it ({slow}), the fast path not"
            elif fast is not None:
                _same(fast, slow)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases(), st.sampled_from(["range", "shifted", "labels"]))
def test_fast_path_matches_the_full_check_on_a_dataframe(
        case: tuple[Signature, dict[str, Any], bool], index_kind: str) -> None:
    sig, data, arrays_only = case
    if not arrays_only or len({len(v) for v in data.values()}) > 1:
        return
    n = len(next(iter(data.values())))
    index = {"range": None, "shifted": pd.RangeIndex(10, 10 + n),
             "labels": pd.Index([f"r{i}" for i in range(n)])}[index_kind]
    frame = pd.DataFrame(data, index=index)
    with np.errstate(all="ignore"):
        fast = sig.enforce_fast(frame)
        slow = _frame_or_error(lambda: _full_check(sig, frame))
    if isinstance(slow, Exception):
        assert fast is None
    elif fast is not None:
        _same(fast, slow)
        assert sig.enforce(frame).index.equals(frame.index)


# -- the fast path is taken where it should be ---------------------------------------------


def _numeric_signature(types: list[str], nullable: bool = False) -> Signature:
    return Signature(inputs=[ColumnSpec(name=f"x{i}", type=t, nullable=nullable)  # type: ignore[arg-type]
                             for i, t in enumerate(types)])


@pytest.mark.parametrize(("types", "data"), [
    (["double"] * 3, {"x0": [0.5], "x1": [1], "x2": [-2.5]}),  # JSON ints in double columns
    (["double", "long", "float"], {"x0": [0.5, 1.0], "x1": [1, 2], "x2": [3, 4]}),
    (["double", "integer"], {"x0": np.array([0.5]), "x1": np.array([7], dtype=np.int64)}),
    (["long", "boolean"], {"x0": [True, False], "x1": [True, True]}),
])
def test_common_numeric_inputs_take_the_fast_path(types: list[str], data: dict[str, Any]) -> None:
    sig = _numeric_signature(types)
    fast = sig.enforce_fast(data)
    assert fast is not None
    _same(fast, _full_check(sig, pd.DataFrame(data)))
    _same(sig.enforce(data), fast)


def test_the_result_owns_its_values() -> None:
    sig = _numeric_signature(["double", "double"])
    source = {"x0": np.array([1.0, 2.0]), "x1": np.array([3.0, 4.0])}
    out = sig.enforce_fast(source)
    assert out is not None
    out.iloc[0, 0] = 99.0
    assert source["x0"][0] == 1.0


@pytest.mark.parametrize("data", [
    {"x0": [1.0, None], "x1": [1.0, 2.0]},      # a null: the full check decides
    {"x0": [1.0, float("nan")], "x1": [1.0, 2.0]},  # NaN in a column that refuses nulls
    {"x0": [1.0, True], "x1": [1.0, 2.0]},      # a bool among numbers
    {"x0": ["1.5", 2.0], "x1": [1.0, 2.0]},     # a string
    {"x0": [1.0, 2.0]},                         # a missing column
    {"x0": [1.0, 2.0], "x1": [1.0, 2.0], "junk": [1, 2]},  # an extra one
    {"x0": [1.0, 2.0], "x1": [1.0]},            # lengths differ
    {"x0": [], "x1": []},                       # no rows
])
def test_anything_unusual_is_left_to_the_full_check(data: dict[str, Any]) -> None:
    sig = _numeric_signature(["double", "double"])
    assert sig.enforce_fast(data) is None


def test_the_full_check_still_names_the_bad_fields() -> None:
    sig = _numeric_signature(["double", "long"])
    with pytest.raises(errors.InvalidInput) as info:
        sig.enforce({"x0": [float("nan")], "x1": [1.5]})
    assert "column 'x0' has missing values" in str(info.value)
    assert "column 'x1' is double, the model expects long" in str(info.value)


def test_non_numeric_signatures_never_take_it() -> None:
    sig = Signature(inputs=[ColumnSpec(name="a", type="double"),
                            ColumnSpec(name="s", type="string")])
    assert sig.enforce_fast({"a": [1.0], "s": ["x"]}) is None
    assert sig.enforce({"a": [1.0], "s": ["x"]}).to_dict("records") == [{"a": 1.0, "s": "x"}]


def test_the_cached_plan_follows_the_signature_it_belongs_to() -> None:
    sig = _numeric_signature(["double"])
    assert sig.enforce_fast({"x0": [1.0]}) is not None  # caches a plan
    renamed = sig.model_copy(update={"inputs": [ColumnSpec(name="y", type="double")]})
    assert renamed.enforce_fast({"x0": [1.0]}) is None
    assert renamed.enforce_fast({"y": [1.0]}) is not None
    assert sig == Signature.model_validate_json(sig.model_dump_json())
    assert "fast_plan_" not in sig.model_dump_json()
