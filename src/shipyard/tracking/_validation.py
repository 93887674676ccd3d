"""Input checks for tracking, done once in the service layer before anything is written."""

from __future__ import annotations

import contextlib
import math
import posixpath
import re
from numbers import Real
from typing import Any

from shipyard.errors import InvalidInput

__all__ = [
    "MAX_NAME",
    "MAX_KEY",
    "MAX_PARAM_VALUE",
    "MAX_TAG_VALUE",
    "check_name",
    "check_key",
    "check_param_value",
    "check_tag_value",
    "check_metric",
    "check_timestamp",
    "check_run_id",
    "check_artifact_path",
    "check_metric_points",
]

MAX_NAME = 250
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
_KEY_RE = re.compile(r"^[\w\-. /:]+$")
_RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: Keys that passed check_key (valid for any kind); a bounded memo of the hot loop's work.
_VALID_KEYS: set[str] = set()
_VALID_KEYS_MAX = 4096


def check_name(kind: str, name: Any) -> str:
    """An experiment or run name: a non-empty string of at most 250 characters."""
    if not isinstance(name, str):
        raise InvalidInput(f"{kind} name must be a string, got {type(name).__name__}", field=kind)
    if not name.strip():
        raise InvalidInput(f"{kind} name must not be empty", field=kind)
    if len(name) > MAX_NAME:
        raise InvalidInput(
            f"{kind} name is {len(name)} characters long; the limit is {MAX_NAME}", field=kind
        )
    if any(ch in name for ch in "\x00\n\r"):
        raise InvalidInput(f"{kind} name must not contain NUL or line breaks", field=kind)
    return name


def check_key(kind: str, key: Any) -> str:
    """A param, metric or tag key: letters, digits, ``_ - . / : space``; no ``..`` or leading /."""
    if type(key) is str and key in _VALID_KEYS:
        return key
    if not isinstance(key, str):
        raise InvalidInput(f"{kind} key must be a string, got {type(key).__name__}", field=kind)
    if not key:
        raise InvalidInput(f"{kind} key must not be empty", field=kind)
    if len(key) > MAX_KEY:
        raise InvalidInput(
            f"{kind} key {key[:40]!r}… is {len(key)} characters long; the limit is {MAX_KEY}",
            field=kind,
        )
    if not _KEY_RE.fullmatch(key):  # match() would let a trailing newline through ($)
        raise InvalidInput(
            f"{kind} key {key!r} has characters outside letters, digits, '_-./: '", field=kind
        )
    if key.startswith("/") or ".." in key.split("/"):
        raise InvalidInput(f"{kind} key {key!r} must be a relative name without '..'", field=kind)
    if type(key) is str:  # not a subclass, whose hash or equality could differ
        if len(_VALID_KEYS) >= _VALID_KEYS_MAX:
            _VALID_KEYS.clear()
        _VALID_KEYS.add(key)
    return key


def _stringify(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float | None):
        return str(value)
    return str(value)


def check_param_value(key: str, value: Any) -> str:
    text = _stringify(value)
    if len(text) > MAX_PARAM_VALUE:
        raise InvalidInput(
            f"param {key!r} value is {len(text)} characters; the limit is {MAX_PARAM_VALUE}",
            field="param",
        )
    return text


def check_tag_value(key: str, value: Any) -> str:
    text = _stringify(value)
    if len(text) > MAX_TAG_VALUE:
        raise InvalidInput(
            f"tag {key!r} value is {len(text)} characters; the limit is {MAX_TAG_VALUE}",
            field="tag",
        )
    return text


def _int64(value: Any) -> int | None:
    """``value`` as an int when it is an integral real number within BIGINT, else None."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    try:
        as_int = int(value)  # type: ignore[call-overload]  # numpy ints lack __trunc__
    except (OverflowError, ValueError):  # inf, nan
        return None
    if as_int != value or not _INT64_MIN <= as_int <= _INT64_MAX:
        return None
    return as_int


def check_metric(key: str, value: Any, step: Any) -> tuple[float, int]:
    """A metric value must be a real number (NaN and ±inf are kept); step a 64-bit integer."""
    # Fast path: a plain float and a plain int (or no step), the common case.
    if type(value) is float and (step is None or (
            type(step) is int and _INT64_MIN <= step <= _INT64_MAX)):
        return (value if value == value else math.nan), (0 if step is None else step)
    fvalue = None
    if not isinstance(value, bool) and isinstance(value, Real):
        # numpy scalars are Real; strings and None are not.
        with contextlib.suppress(OverflowError):  # an int beyond float range
            fvalue = float(value)
    if fvalue is None:
        raise InvalidInput(
            f"metric {key!r} value must be a number within float range, "
            f"got {type(value).__name__} {_short(value)}",
            field="metric",
        )
    istep = 0 if step is None else _int64(step)
    if istep is None:
        raise InvalidInput(f"metric {key!r} step must be a 64-bit integer, got {step!r}",
                           field="step")
    if math.isnan(fvalue):
        fvalue = math.nan
    return fvalue, istep


def check_timestamp(key: str, timestamp: Any) -> int:
    """A metric timestamp: integer milliseconds since the epoch (64-bit)."""
    if type(timestamp) is int and _INT64_MIN <= timestamp <= _INT64_MAX:
        return timestamp
    ts = _int64(timestamp)
    if ts is None:
        raise InvalidInput(
            f"metric {key!r} timestamp must be integer milliseconds, got {timestamp!r}",
            field="timestamp")
    return ts


def check_metric_points(points: Any) -> list[tuple[str, float, int, int]]:
    """Check (key, value, step, timestamp) points as check_key, check_metric and
    check_timestamp do, point by point (the first bad one raises); each distinct key is
    checked once, and plain float values with int steps and timestamps take a fast path."""
    out: list[tuple[str, float, int, int]] = []
    append = out.append
    seen: set[str] = set()
    lo, hi = _INT64_MIN, _INT64_MAX
    for key, value, step, ts in points:
        if type(key) is not str or key not in seen:
            check_key("metric", key)
            if type(key) is str:
                seen.add(key)
        if (type(value) is float and type(step) is int and type(ts) is int
                and lo <= step <= hi and lo <= ts <= hi):
            append((key, value if value == value else math.nan, step, ts))
        else:
            fvalue, istep = check_metric(key, value, step)
            append((key, fvalue, istep, check_timestamp(key, ts)))
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id):
        raise InvalidInput(f"invalid run id {run_id!r}: expected 32 hex characters", field="run_id")
    return run_id


def check_artifact_path(path: Any, *, allow_empty: bool = False) -> str:
    """A relative POSIX artifact path without ``..``, backslashes or a leading slash."""
    if path is None or path == "":
        if allow_empty:
            return ""
        raise InvalidInput("artifact path must not be empty", field="artifact_path")
    if not isinstance(path, str):
        raise InvalidInput("artifact path must be a string", field="artifact_path")
    if "\\" in path or "\x00" in path:
        raise InvalidInput(
            f"artifact path {path!r} must use '/' and no NUL characters", field="artifact_path"
        )
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise InvalidInput(f"artifact path {path!r} must be relative", field="artifact_path")
    parts = path.split("/")
    if any(p in ("..", ".") for p in parts):
        raise InvalidInput(
            f"artifact path {path!r} must not contain '.' or '..' segments", field="artifact_path"
        )
    if len(path) > 1024:
        raise InvalidInput("artifact path is longer than 1024 characters", field="artifact_path")
    return posixpath.normpath(path).strip("/")
