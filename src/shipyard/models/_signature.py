"""Model signatures: what a model takes and returns, inferred from an example and enforced.

A signature is either *columnar* (named columns with a type, nullability and, for
categoricals, the levels seen) or a *tensor* (a dtype and a shape, ``-1`` for any size).
Enforcement converts the caller's input (DataFrame, ndarray, dict of columns) to what the
model was trained on and reports every problem at once.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shipyard import errors

__all__ = ["ColumnSpec", "TensorSpec", "Signature", "infer_signature", "to_frame"]

ColumnType = Literal["boolean", "integer", "long", "float", "double", "string", "datetime",
                     "binary", "category"]

_WIDENING = {("integer", "long"), ("integer", "float"), ("integer", "double"),
             ("long", "double"), ("float", "double"), ("long", "float"), ("boolean", "integer"),
             ("boolean", "long")}


class ColumnSpec(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    type: ColumnType
    nullable: bool = False
    categories: list[Any] | None = None


class TensorSpec(BaseModel):
    model_config = ConfigDict(frozen=True)
    dtype: str
    shape: list[int]


class Signature(BaseModel):
    """Inputs and outputs of a model. ``inputs`` is a column list or a tensor spec."""

    model_config = ConfigDict(frozen=True)
    inputs: list[ColumnSpec] | TensorSpec
    outputs: list[ColumnSpec] | TensorSpec | None = None
    extra_columns: Literal["error", "drop"] = Field(
        default="error", description="what enforcement does with columns the model does not take")

    @property
    def columnar(self) -> bool:
        return isinstance(self.inputs, list)

    def enforce(self, data: Any) -> Any:
        """Return ``data`` shaped for the model, or raise InvalidInput listing every problem."""
        if isinstance(self.inputs, TensorSpec):
            return _enforce_tensor(self.inputs, data)
        fast = self.enforce_fast(data)
        if fast is not None:
            return fast
        return _enforce_columns(self.inputs, to_frame(data), self.extra_columns)

    def enforce_fast(self, data: Any) -> Any | None:
        """What :meth:`enforce` returns, for the common case only: numeric columns given as
        a dict of lists/arrays or a DataFrame whose values already fit (``_enforce_fast``).
        None when the input needs the full check (which names every problem)."""
        if isinstance(self.inputs, TensorSpec):
            return None
        from ._enforce_fast import FastPlan, enforce_numeric

        # cached beside the fields (not one of them: equality and dumps ignore it); keyed
        # by the inputs list, which a model_copy(update=...) may replace
        cached = self.__dict__.get("fast_plan_")
        if cached is None or cached[0] is not self.inputs:
            cached = (self.inputs, FastPlan(self.inputs))
            self.__dict__["fast_plan_"] = cached
        return enforce_numeric(cached[1], data, self.extra_columns)


def _column_type(series: Any) -> ColumnType:
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "long" if dtype.itemsize >= 8 else "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "double" if dtype.itemsize >= 8 else "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    values = series.dropna()
    if dtype.kind == "O" and len(values) and isinstance(values.iloc[0], bytes):
        return "binary"
    return "string"


def _columns_of(frame: Any, *, with_levels: bool) -> list[ColumnSpec]:
    specs = []
    for name in frame.columns:
        col = frame[name]
        ctype = _column_type(col)
        levels = None
        if with_levels and ctype == "category":
            levels = [_plain(v) for v in col.cat.categories]
        specs.append(ColumnSpec(name=str(name), type=ctype, nullable=bool(col.isna().any()),
                                categories=levels))
    return specs


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def infer_signature(model_input: Any, model_output: Any = None) -> Signature:
    """A signature from an input example (and, when given, the model's output on it)."""
    import numpy as np

    inputs: list[ColumnSpec] | TensorSpec
    if isinstance(model_input, np.ndarray):
        inputs = TensorSpec(dtype=str(model_input.dtype), shape=[-1, *model_input.shape[1:]])
    else:
        inputs = _columns_of(to_frame(model_input), with_levels=True)
    outputs: list[ColumnSpec] | TensorSpec | None = None
    if model_output is not None:
        if isinstance(model_output, np.ndarray):
            outputs = TensorSpec(dtype=str(model_output.dtype),
                                 shape=[-1, *model_output.shape[1:]])
        else:
            outputs = _columns_of(to_frame(model_output), with_levels=False)
    return Signature(inputs=inputs, outputs=outputs)


def to_frame(data: Any) -> Any:
    """A DataFrame from a DataFrame, Series, dict of columns, list of records or 2-D array."""
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame()
    if isinstance(data, dict):
        try:
            return pd.DataFrame({k: np.atleast_1d(v) for k, v in data.items()})
        except ValueError as exc:
            raise errors.InvalidInput(f"columns of different lengths: {exc}",
                                      field="inputs") from exc
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return pd.DataFrame.from_records(data)
    if isinstance(data, np.ndarray | list):
        arr = np.asarray(data)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        return pd.DataFrame(arr, columns=[str(i) for i in range(arr.shape[1])])
    raise errors.InvalidInput(
        f"cannot use {type(data).__name__} as model input: pass a DataFrame, a dict of "
        "columns, a list of records or an array", field="inputs")


def _enforce_columns(specs: list[ColumnSpec], frame: Any, extra: str) -> Any:
    import pandas as pd

    if all(str(c).isdigit() for c in frame.columns) and len(frame.columns) == len(specs) \
            and not any(s.name.isdigit() for s in specs):
        frame = frame.set_axis([s.name for s in specs], axis=1)  # positional array input
    problems: list[str] = []
    wanted = [s.name for s in specs]
    # names are strings in the signature; a frame may label its columns 0, 1, … (kept as is)
    labels = {str(c): c for c in frame.columns}
    missing = [n for n in wanted if n not in labels]
    if missing:
        problems.append(f"missing columns: {', '.join(missing)}")
    extras = [name for name in labels if name not in wanted]
    if extras and extra == "error":
        problems.append(f"unexpected columns: {', '.join(extras)} "
                        "(the model was not trained on them)")
    out = {}
    for spec in specs:
        if spec.name not in labels:
            continue
        col = frame[labels[spec.name]]
        converted, problem = _convert(spec, col)
        if problem:
            problems.append(problem)
        elif not spec.nullable and bool(converted.isna().any()):
            problems.append(f"column {spec.name!r} has missing values but the model's "
                            "signature does not allow nulls")
        out[labels[spec.name]] = converted
    if problems:
        raise errors.InvalidInput("input does not match the model signature: "
                                  + "; ".join(problems), field="inputs")
    return pd.DataFrame(out, index=frame.index)


def _convert(spec: ColumnSpec, col: Any) -> tuple[Any, str | None]:
    import pandas as pd

    actual = _column_type(col)
    expected = spec.type
    if actual == expected or (expected == "category" and actual == "string") \
            or (expected == "string" and actual == "category"):
        if expected == "category" and spec.categories is not None:
            values = col.astype(object) if actual == "category" else col
            unseen = pd.unique(values[~values.isin(spec.categories) & values.notna()])
            if len(unseen):
                shown = ", ".join(repr(_plain(v)) for v in unseen[:5])
                more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
                return col, (f"column {spec.name!r} has values that are not among its "
                             f"categories: {shown}{more}")
            return col.astype(pd.CategoricalDtype(spec.categories)), None
        return col, None
    if (actual, expected) in _WIDENING:
        target = {"integer": "int32", "long": "int64", "float": "float32",
                  "double": "float64"}[expected]
        return col.astype(target), None
    if actual == "long" and expected == "integer":  # same kind, values may still fit
        return col.astype("int32"), None
    return col, (f"column {spec.name!r} is {actual}, the model expects {expected}")


def _enforce_tensor(spec: TensorSpec, data: Any) -> Any:
    import numpy as np
    import pandas as pd

    arr = data.to_numpy() if isinstance(data, pd.DataFrame) else np.asarray(data)
    if arr.ndim == len(spec.shape) - 1:
        arr = arr.reshape(1, *arr.shape)
    problems = []
    if arr.ndim != len(spec.shape):
        problems.append(f"expected {len(spec.shape)} dimensions {spec.shape}, got shape "
                        f"{list(arr.shape)}")
    else:
        for i, (want, got) in enumerate(zip(spec.shape, arr.shape, strict=True)):
            if want != -1 and want != got:
                problems.append(f"dimension {i} must be {want}, got {got}")
    want_dtype = np.dtype(spec.dtype)
    if not problems and arr.dtype != want_dtype:
        if np.can_cast(arr.dtype, want_dtype, casting="safe") or (
                arr.dtype.kind in "iu" and want_dtype.kind == "f"):
            arr = arr.astype(want_dtype)
        else:
            problems.append(f"dtype {arr.dtype} cannot be safely cast to {want_dtype}")
    if problems:
        raise errors.InvalidInput("input does not match the model signature: "
                                  + "; ".join(problems), field="inputs")
    return arr
