"""Expectations on feature values, checked before a batch reaches the online store.

An :class:`Expectation` declares what one feature's values must satisfy (``not_null``, a
``min``/``max`` range, ``allowed_values``). :func:`check` evaluates them, vectorized, over
a whole batch and returns an :class:`ExpectationReport`; :func:`enforce` raises
:class:`ExpectationsFailed` (an ``InvalidInput``) when any row fails, so that push and
materialization write all of a batch or none of it.

NULL (and NaN, as pandas treats it) fails only ``not_null``; range and allowed-value checks
skip missing values.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shipyard import errors

__all__ = ["Expectation", "ExpectationFailure", "ExpectationReport", "ExpectationsFailed",
           "check", "enforce"]

#: Failing rows listed per rule in a report (every failure is still counted).
MAX_LISTED = 100


class Expectation(BaseModel):
    """What the values of one feature must satisfy, e.g. ``Expectation(feature="income",
    not_null=True, min=0)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature: str
    not_null: bool = False
    min: float | int | datetime | None = None
    max: float | int | datetime | None = None
    allowed_values: list[Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Expectation:
        if self.min is not None and self.max is not None and self.min > self.max:  # type: ignore[operator]
            raise ValueError(f"min {self.min!r} is greater than max {self.max!r}")
        return self

    def rules(self) -> list[str]:
        """The rules this expectation declares, by name."""
        named = [("not_null", self.not_null), ("min", self.min is not None),
                 ("max", self.max is not None),
                 ("allowed_values", self.allowed_values is not None)]
        return [name for name, on in named if on]


class ExpectationFailure(BaseModel):
    """One row that broke one rule."""

    feature: str
    rule: str
    row: int = Field(description="position of the row in the checked batch")
    entity_key: list[Any]
    value: Any


class ExpectationReport(BaseModel):
    """The outcome of :func:`check`: failures per rule and the first rows of each."""

    rows: int
    failed_rows: int = 0
    counts: dict[str, int] = Field(default_factory=dict,
                                   description="failing rows per 'feature:rule'")
    failures: list[ExpectationFailure] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.counts

    def summary(self) -> str:
        if self.ok:
            return f"all {self.rows} row(s) meet the expectations"
        parts = ", ".join(f"{rule} ({n} row(s))" for rule, n in self.counts.items())
        return (f"{self.failed_rows} of {self.rows} row(s) break expectations: {parts}; "
                "nothing was written")


class ExpectationsFailed(errors.InvalidInput):
    """A batch broke expectations; ``report`` lists the failing rows."""

    def __init__(self, report: ExpectationReport) -> None:
        super().__init__(report.summary(), field="expectations")
        self.report = report


def check(data: pa.Table | pd.DataFrame, expectations: Sequence[Expectation],
          join_keys: Sequence[str] = ()) -> ExpectationReport:
    """Evaluate ``expectations`` over every row of ``data``."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data,
                                                                         preserve_index=False)
    missing = [e.feature for e in expectations if e.feature not in table.column_names]
    missing += [k for k in join_keys if k not in table.column_names]
    if missing:
        raise errors.InvalidInput(f"expectations name column(s) the batch lacks: "
                                  f"{', '.join(map(repr, missing))}", field="expectations")
    report = ExpectationReport(rows=table.num_rows)
    any_failed: Any = None
    for expectation in expectations:
        column = table.column(expectation.feature)
        for rule in expectation.rules():
            failed = _failing(column, expectation, rule)
            count = pc.sum(failed).as_py() or 0
            if not count:
                continue
            report.counts[f"{expectation.feature}:{rule}"] = count
            any_failed = failed if any_failed is None else pc.or_(any_failed, failed)
            rows = pc.indices_nonzero(failed).slice(0, MAX_LISTED)
            report.failures.extend(_describe(table, expectation.feature, rule, rows, join_keys))
    if report.counts:
        report.failed_rows = pc.sum(any_failed).as_py() or 0
    return report


def enforce(data: pa.Table | pd.DataFrame, expectations: Sequence[Expectation] | None,
            join_keys: Sequence[str] = ()) -> None:
    """Raise :class:`ExpectationsFailed` when any row of ``data`` breaks ``expectations``."""
    if not expectations:
        return
    report = check(data, expectations, join_keys)
    if not report.ok:
        raise ExpectationsFailed(report)


def _failing(column: pa.ChunkedArray, expectation: Expectation, rule: str) -> pa.ChunkedArray:
    """A boolean mask, with no NULLs, of the rows that break ``rule``."""
    floating = pa.types.is_floating(column.type)
    if rule == "not_null":
        missing = column.is_null(nan_is_null=True) if floating else column.is_null()
        return missing
    try:
        if rule == "allowed_values":
            allowed = pa.array(expectation.allowed_values or [])
            if len(allowed) and allowed.type != column.type:
                allowed = allowed.cast(column.type)
            broken = pc.and_(pc.invert(pc.is_in(column, value_set=allowed)), column.is_valid())
        else:
            bound = _bound(getattr(expectation, rule), column.type)
            broken = pc.less(column, bound) if rule == "min" else pc.greater(column, bound)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise errors.InvalidInput(f"expectation {rule} on {expectation.feature!r} does not fit "
                                  f"its type {column.type}: {exc}",
                                  field="expectations") from exc
    if floating:  # NaN compares false: it is a missing value, not a range violation
        broken = pc.and_(broken, pc.invert(pc.is_nan(column)))
    return broken.fill_null(False)


def _bound(value: Any, kind: pa.DataType) -> pa.Scalar:
    """A ``min``/``max`` as a scalar comparable with a column of type ``kind``."""
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
    if numeric and not isinstance(value, datetime):
        return pa.scalar(value)
    if pa.types.is_timestamp(kind) and isinstance(value, datetime):
        return pa.scalar(value).cast(kind)
    raise pa.ArrowInvalid(f"a {type(value).__name__} bound needs a "
                          f"{'timestamp' if isinstance(value, datetime) else 'numeric'} column")


def _describe(table: pa.Table, feature: str, rule: str, rows: pa.Array,
              join_keys: Sequence[str]) -> list[ExpectationFailure]:
    values = table.column(feature).take(rows).to_pylist()
    keys = [table.column(k).take(rows).to_pylist() for k in join_keys]
    return [ExpectationFailure(feature=feature, rule=rule, row=row, entity_key=list(key),
                               value=value)
            for row, value, *key in zip(rows.to_pylist(), values, *keys, strict=True)]
