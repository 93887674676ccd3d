"""The fast path of columnar signature enforcement: numeric columns that already fit.

The full check (``_signature._enforce_columns``) builds a DataFrame from the input, then
looks at every column as a pandas Series to name every problem. That costs ~2.6 ms for one
row of 20 columns, more than many models' own ``predict``. Most requests, though, are
plain numbers for numeric columns: for those, :func:`enforce_numeric` infers each column's
type the way pandas would (from the Python values' types, or the array's dtype), applies
the same conversions as the full check, tests nulls with one vectorised ``isnan``, and
builds the model's frame once (one 2-D block when every column ends up with one dtype).

It answers ``None`` whenever anything is off or merely unusual (a missing or extra column,
a None, a string, a bool among numbers, an int too large for int64, a categorical or
datetime column, zero rows): the caller then runs the full check, which names every bad
field. So the fast path never refuses and never reports; it only accepts what the full
check would accept, and returns exactly what it would (same columns, order, dtypes, values
and index: tests/models/test_signature_fast.py checks that with hypothesis).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from ._signature import ColumnSpec

__all__ = ["FastPlan", "enforce_numeric"]

#: the column types the fast path handles, and the dtype a widening converts to
_TARGET = {"integer": "<i4", "long": "<i8", "float": "<f4", "double": "<f8"}
_FAST_TYPES = frozenset((*_TARGET, "boolean"))
#: (actual, expected) pairs the full check converts (``_signature._WIDENING`` plus the
#: long -> integer narrowing it allows)
_CONVERTS = {("integer", "long"), ("integer", "float"), ("integer", "double"),
             ("long", "double"), ("float", "double"), ("long", "float"),
             ("boolean", "integer"), ("boolean", "long"), ("long", "integer")}
#: ints mixed with floats in one list: pandas makes the column float64 when the ints are
#: small; beyond 2**53 we leave the (rare) question to the full check
_EXACT_INT = 2**53


class FastPlan:
    """What the fast path needs from a signature, computed once per signature."""

    __slots__ = ("names", "labels", "types", "nullable", "not_null", "usable")

    def __init__(self, specs: list[ColumnSpec]) -> None:
        import pandas as pd

        self.names = [s.name for s in specs]
        #: the result's column labels, built once (pandas takes ~0.2 ms to build them from
        #: a list of 20 names, more than the rest of the fast path)
        self.labels = pd.Index(self.names)
        self.types = [s.type for s in specs]
        self.nullable = [s.nullable for s in specs]
        #: positions of the columns that refuse nulls (NaN)
        self.not_null = [j for j, s in enumerate(specs) if not s.nullable]
        self.usable = bool(specs) and all(t in _FAST_TYPES for t in self.types) \
            and len(set(self.names)) == len(self.names)


def enforce_numeric(plan: FastPlan, data: Any, extra_columns: str) -> Any | None:
    """The enforced frame for ``data`` (a dict of columns or a DataFrame), or None when the
    full check must decide."""
    if not plan.usable:
        return None
    import pandas as pd

    index = None
    if isinstance(data, dict):
        columns = data
    elif isinstance(data, pd.DataFrame):
        found = _frame_columns(data)
        if found is None:
            return None
        columns, index = found, data.index
    else:
        return None
    names = plan.names
    if len(columns) != len(names) and (extra_columns != "drop" or len(columns) < len(names)):
        return None
    if (len(columns) != len(names) or list(columns) != names) \
            and any(n not in columns for n in names):
        return None  # a missing column (or another order: then all are there)
    values = [columns[n] for n in names]
    return _build(plan, values, index)


def _frame_columns(frame: Any) -> dict[str, Any] | None:
    """A DataFrame's columns as 1-D arrays, when its labels are unique strings and its
    dtypes plain numpy numbers (not extension, categorical or object dtypes)."""
    import numpy as np

    labels = list(frame.columns)
    if not all(type(c) is str for c in labels) or len(set(labels)) != len(labels):
        return None
    dtypes = list(frame.dtypes)
    if not all(isinstance(d, np.dtype) and d.kind in "biuf" for d in dtypes):
        return None
    if len(set(dtypes)) == 1:
        block = frame.to_numpy()
        return {c: block[:, j] for j, c in enumerate(labels)}
    return {c: frame.iloc[:, j].to_numpy() for j, c in enumerate(labels)}


def _build(plan: FastPlan, values: list[Any], index: Any) -> Any | None:
    import numpy as np
    import pandas as pd

    rows = -1
    kinds: list[str] = []
    for value in values:
        if isinstance(value, list):
            n = len(value)
            kind = _list_kind(value)
        elif isinstance(value, np.ndarray) and value.ndim == 1:
            n = len(value)
            kind = _dtype_kind(value.dtype)
        else:
            return None
        if kind is None or n == 0 or (rows != -1 and n != rows):
            return None
        rows = n
        kinds.append(kind)
    targets: list[str] = []
    for actual, expected, value in zip(kinds, plan.types, values, strict=True):
        if actual == expected:
            # kept as is: a list gets the dtype pandas infers, an array keeps its own
            targets.append(_LIST_DTYPE[actual] if isinstance(value, list)
                           else value.dtype.str)
        elif (actual, expected) in _CONVERTS:
            targets.append(_TARGET[expected])
        else:
            return None
    if len(set(targets)) == 1:  # the common case: one block, one null test, one frame
        block = _block(kinds, values, targets[0], rows)
        if block.dtype.kind == "f" and plan.not_null \
                and bool(np.isnan(block[plan.not_null]).any()):
            return None
        # the block is ours alone: the frame may wrap it instead of copying it
        return pd.DataFrame(block.T, columns=plan.labels, index=index, copy=False)
    arrays = []
    for j, (kind, target, value) in enumerate(zip(kinds, targets, values, strict=True)):
        source = np.asarray(value, dtype=_LIST_DTYPE[kind]) if isinstance(value, list) \
            else value
        array = source if source.dtype.str == target else source.astype(target)
        if array.dtype.kind == "f" and not plan.nullable[j] and bool(np.isnan(array).any()):
            return None
        arrays.append(array)
    return pd.DataFrame(dict(zip(plan.names, arrays, strict=True)), index=index)


#: the dtype pandas infers for a list of Python values of each (fast) column type
_LIST_DTYPE = {"double": "<f8", "long": "<i8", "boolean": "|b1"}


def _block(kinds: list[str], values: list[Any], target: str, rows: int) -> np.ndarray:
    """The columns as one ``(columns, rows)`` array of dtype ``target``, converted the way
    pandas converts a column (the inferred dtype first, then ``astype``)."""
    import numpy as np

    if all(isinstance(v, list) for v in values):
        sources = {_LIST_DTYPE[k] for k in kinds}
        if target == "<f8" and sources <= {"<f8", "<i8"}:
            # Python ints and floats straight to float64: the one rounding pandas does too
            return np.array(values, dtype=target)
        if len(sources) == 1:
            block = np.array(values, dtype=sources.pop())
            return block if block.dtype.str == target else block.astype(target)
    block = np.empty((len(values), rows), dtype=target)
    for j, (kind, value) in enumerate(zip(kinds, values, strict=True)):
        block[j] = np.asarray(value, dtype=_LIST_DTYPE[kind]) if isinstance(value, list) \
            else value  # assignment casts as astype does
    return block


def _list_kind(values: list[Any]) -> str | None:
    """The column type pandas infers for a list of Python values, when it is numeric."""
    types = set(map(type, values))
    if types == {float}:
        return "double"
    if types == {int}:
        import numpy as np

        try:
            # ints that fit int64 become int64 (larger ones: uint64 or object)
            return "long" if np.asarray(values).dtype == np.int64 else None
        except OverflowError:
            return None
    if types == {int, float}:
        ints = [v for v in values if type(v) is int]
        return "double" if max(ints) < _EXACT_INT and min(ints) > -_EXACT_INT else None
    if types == {bool}:
        return "boolean"
    return None


def _dtype_kind(dtype: np.dtype[Any]) -> str | None:
    """The column type of a numpy dtype (as ``_signature._column_type`` names it)."""
    kind = dtype.kind
    if not dtype.isnative:
        return None
    if kind == "f":
        if dtype.itemsize == 8:
            return "double"
        return "float" if dtype.itemsize == 4 else None  # float16 etc.: the full check
    if kind in "iu":
        return "long" if dtype.itemsize >= 8 else "integer"
    if kind == "b":
        return "boolean"
    return None
