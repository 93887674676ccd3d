"""Input checks of the tracking service (pure functions, so hypothesis explores them)."""

from __future__ import annotations

import math
import posixpath
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shipyard import errors
from shipyard.tracking import _validation as v

_SEGMENT = st.sampled_from(["a", "b.txt", "..", ".", "", "~", "..a", "a..", "C:", "\\", " ",
                            "\x00", "%2e%2e", "ü"])


@given(st.one_of(st.text(max_size=40), st.lists(_SEGMENT, max_size=6).map("/".join)))
@example("../x")
@example("a/../../x")
@example("/abs")
@example("a\\..\\..\\x")
@example("C:/x")
def test_accepted_artifact_paths_stay_inside_the_root(path: str) -> None:
    try:
        clean = v.check_artifact_path(path)
    except errors.InvalidInput as exc:
        assert exc.field == "artifact_path"
        return
    root = "/store/run"
    joined = posixpath.normpath(posixpath.join(root, clean))
    assert joined.startswith(root + "/")
    assert clean and not clean.startswith("/") and "\\" not in clean and "\x00" not in clean
    assert ".." not in clean.split("/")
    assert v.check_artifact_path(clean) == clean  # normal form is stable


@pytest.mark.parametrize(("path", "clean"), [("a", "a"), ("a/b/c.txt", "a/b/c.txt"),
                                             ("a//b", "a/b"), ("dir/", "dir"),
                                             ("..hidden", "..hidden"), ("a b/ü.txt", "a b/ü.txt")])
def test_artifact_path_normal_form(path: str, clean: str) -> None:
    assert v.check_artifact_path(path) == clean


def test_empty_artifact_path_only_where_allowed() -> None:
    assert v.check_artifact_path("", allow_empty=True) == ""
    assert v.check_artifact_path(None, allow_empty=True) == ""
    with pytest.raises(errors.InvalidInput, match="empty"):
        v.check_artifact_path("")


@given(st.text(max_size=300))
@example("loss\n")
@example("a/../b")
@example("/a")
def test_accepted_keys_are_safe(key: str) -> None:
    try:
        clean = v.check_key("metric", key)
    except errors.InvalidInput as exc:
        assert exc.field == "metric"
        return
    assert clean == key
    assert 0 < len(key) <= v.MAX_KEY
    assert not key.startswith("/") and ".." not in key.split("/")
    assert not any(ch in key for ch in "\\\n\r\x00;'\"")


@given(st.one_of(st.floats(), st.integers(min_value=-(2**70), max_value=2**70),
                 st.fractions(), st.booleans(), st.none(), st.text(max_size=5)),
       st.one_of(st.none(), st.integers(min_value=-(2**65), max_value=2**65),
                 st.floats(), st.text(max_size=3)))
def test_check_metric_accepts_numbers_and_int64_steps_only(value: object, step: object) -> None:
    try:
        fvalue, istep = v.check_metric("m", value, step)
    except errors.InvalidInput:
        numeric = isinstance(value, int | float | Fraction) and not isinstance(value, bool)
        good_step = step is None or (
            isinstance(step, int | float) and not isinstance(step, bool)
            and not (isinstance(step, float) and not math.isfinite(step))
            and int(step) == step and -(2**63) <= int(step) < 2**63)
        assert not (numeric and good_step)
        return
    assert isinstance(fvalue, float) and isinstance(istep, int)
    assert -(2**63) <= istep < 2**63
    assert (math.isnan(fvalue) and math.isnan(float(value))) or fvalue == float(value)  # type: ignore[arg-type]


def test_numpy_scalars_are_numbers() -> None:
    assert v.check_metric("m", np.float32(0.5), np.int64(3)) == (0.5, 3)
    assert math.isnan(v.check_metric("m", np.float64("nan"), None)[0])


@pytest.mark.parametrize("ts", [0, 1_700_000_000_000, 2**63 - 1, 5.0, np.int64(7)])
def test_good_timestamps(ts: object) -> None:
    assert v.check_timestamp("m", ts) == int(ts)  # type: ignore[call-overload]


@pytest.mark.parametrize("ts", ["1", None, 1.5, math.nan, -math.inf, 2**63, True])
def test_bad_timestamps(ts: object) -> None:
    with pytest.raises(errors.InvalidInput) as info:
        v.check_timestamp("m", ts)
    assert info.value.field == "timestamp"


def test_param_and_tag_values_are_strings_with_limits() -> None:
    assert v.check_param_value("p", 3) == "3"
    assert v.check_param_value("p", None) == "None"
    assert v.check_tag_value("t", [1, 2]) == "[1, 2]"
    with pytest.raises(errors.InvalidInput, match="param"):
        v.check_param_value("p", "x" * (v.MAX_PARAM_VALUE + 1))
    with pytest.raises(errors.InvalidInput, match="tag"):
        v.check_tag_value("t", "x" * (v.MAX_TAG_VALUE + 1))
