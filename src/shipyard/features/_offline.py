"""Point-in-time correct training data: ASOF joins on DuckDB over Parquet.

:func:`historical_features` is the pure function the feature-store facade calls. For each
entity row it takes, per feature view, the one feature row that was the latest known at the
entity row's timestamp, and nothing from its future:

* match: the greatest ``event_timestamp <= entity timestamp`` (equality matches) among the
  rows with the same join key(s); ties go to the greatest ``created_timestamp`` (a NULL
  created timestamp counts as older than any other; a tie on both picks one of the tied
  rows);
* TTL: the match counts only when ``entity timestamp - event_timestamp <= ttl`` (inclusive);
  ``ttl=None`` means no limit, ``timedelta(0)`` accepts only exact-time matches;
* values come from that one row (a NULL in it stays NULL);
* ``exclude_created_after=True`` first drops feature rows whose created timestamp is after
  the entity timestamp (rows written later by a backfill cannot leak into training data; a
  NULL created timestamp is kept);
* unknown keys, NULL keys or timestamps, rows before the first feature row and expired
  matches get NULL features; every entity row is kept, duplicates included, in input order.

Timestamps: naive values (entity frame and sources alike) are taken to be UTC; tz-aware ones
are converted to UTC. Comparisons use microseconds (DuckDB's ``TIMESTAMP``), so finer parts
of nanosecond inputs are dropped. In the result the entity timestamp column is tz-aware UTC;
other columns come back as they went in.

The work happens in DuckDB with a memory limit and a spill folder: Parquet is streamed, not
loaded into pandas, and the join is an ``ASOF LEFT JOIN`` on (event, created) timestamps, so
no deduplication pass is needed. For a view over local Parquet files the join carries a row
locator instead of the feature values, which are read from the files after DuckDB is closed
(``_offline_gather``: the sort then moves a few bytes per row instead of every feature);
not when the result streams to Parquet, nor with ``exclude_created_after``.
``exclude_created_after`` makes the candidate set depend on the entity row, which an ASOF
join cannot express; the ASOF match still stands whenever it was created by the entity
timestamp (it is then the greatest allowed row too), and only the other entity rows take a
key-equality join restricted to ``event <= ts``, ``created <= ts`` and the TTL, keeping the
greatest (event, created). That join costs (such entity rows × feature rows) per key: cheap
when backfills are rare, heavy right after a big one, so give such views a TTL.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from shipyard import errors
from shipyard.features._definitions import Entity, FeatureView, FileSource
from shipyard.features._offline_gather import LOC, ParquetLocator, parquet_locator
from shipyard.features._offline_sources import (
    PREFIX,
    ROW,
    TS,
    Columns,
    check_key_types,
    filesystem,
    is_remote,
    literal,
    load_entity,
    local_parquet_files,
    quote,
    register_source,
    utc_timestamp,
)

__all__ = ["historical_features"]

_OUTPUTS = ("pandas", "arrow")
_NO_TTL_ABOVE_US = 2**62  # beyond ~146,000 years a TTL is no limit (and would overflow)


@dataclass
class _ViewPlan:
    """One view's part of the query: where its rows come from and what it contributes."""

    index: int
    view: FeatureView
    features: list[str]
    keys: list[str] = field(default_factory=list)
    ts_column: str = ""
    ts_type: str = ""
    ts_sql: str = ""
    created_sql: str | None = None
    ttl_us: int | None = None
    outputs: list[str] = field(default_factory=list)
    locator: ParquetLocator | None = None  # set: values fetched after the join
    types: list[pa.DataType] = field(default_factory=list)  # of the features, then

    @property
    def cte(self) -> str:
        return f"f{self.index}"


def historical_features(entity_df: Any, views: list[tuple[FeatureView, list[str]]], *,
                        entities: dict[str, Entity], timestamp_column: str = "event_timestamp",
                        exclude_created_after: bool = False, output: str = "pandas",
                        output_path: str | None = None,
                        storage_options: dict[str, Any] | None = None,
                        memory_limit: str = "1GB", temp_directory: str | None = None,
                        threads: int | None = None) -> pd.DataFrame | pa.Table | str:
    """Point-in-time correct feature values for every row of ``entity_df``.

    ``entity_df`` is a pandas DataFrame, a pyarrow Table or the path of Parquet data (file,
    folder or glob; local or remote) holding the join keys of the views' entities and
    ``timestamp_column``. ``views`` pairs each feature view with the feature names wanted
    from it (an empty list means all of them); ``entities`` maps entity names to their
    definitions. The semantics are in this module's docstring.

    The result has every column of ``entity_df`` in its order, rows in input order (the
    pandas index is not carried over), followed by the features in request order. A
    feature is named after itself, or ``view__feature`` when the bare name is ambiguous:
    requested from two views, or equal to an ``entity_df`` column. Returned as pandas
    (``output="pandas"``; integer features with NULLs become floats there) or Arrow
    (``output="arrow"``), or written to Parquet at ``output_path`` (local or remote), in
    which case the path is returned. ``storage_options`` go to fsspec for remote paths
    (default for s3: the configured ``s3_endpoint_url``). DuckDB runs with
    ``memory_limit``, spills to ``temp_directory`` (default: a fresh temporary folder) and
    uses ``threads`` (default: all cores).
    """
    if output not in _OUTPUTS:
        raise errors.InvalidInput(f"output must be one of {', '.join(_OUTPUTS)}, not "
                                  f"{output!r}", field="output")
    requests = _merge_requests(views)
    with _connect(memory_limit, temp_directory, threads) as con:
        entity = load_entity(con, entity_df, timestamp_column, storage_options)
        plans = [_plan_view(con, i, view, features, entities, entity, storage_options)
                 for i, (view, features) in enumerate(requests)]
        _name_outputs(plans, entity)
        if output_path is None:  # a Parquet output streams: no second pass over the source
            for plan in plans:
                if not (exclude_created_after and plan.created_sql is not None):
                    _late_values(con, plan)
        lo, hi = con.sql(f"SELECT min({TS}), max({TS}) FROM entity").fetchall()[0]
        query = _query(entity, timestamp_column, plans, lo, hi, exclude_created_after)
        try:
            result = _emit(con, query, timestamp_column, output_path, storage_options)
        except duckdb.ConversionException as exc:
            raise errors.InvalidInput(f"cannot join the entity rows with the feature rows: "
                                      f"{exc}", field="entity_df") from exc
    if isinstance(result, str):
        return result
    # after closing DuckDB: its buffers are released before the values are read
    for plan in plans:
        if plan.locator is not None:
            result = plan.locator.fill(result, _col(plan, "loc"), plan.outputs,
                                       plan.features, plan.types)
    return result if output == "arrow" else result.to_pandas()


# -- planning ------------------------------------------------------------------------------------

def _merge_requests(views: list[tuple[FeatureView, list[str]]]
                    ) -> list[tuple[FeatureView, list[str]]]:
    """One entry per view (repeats merged), features deduplicated and checked."""
    merged: dict[str, tuple[FeatureView, list[str]]] = {}
    for item in views:
        if not (isinstance(item, tuple) and len(item) == 2
                and isinstance(item[0], FeatureView)):
            raise errors.InvalidInput("views must be (FeatureView, [feature names]) pairs",
                                      field="features")
        view, names = item
        if view.name in merged and merged[view.name][0].spec() != view.spec():
            raise errors.InvalidInput(f"two different feature views are named {view.name!r}",
                                      field="features")
        wanted = merged.setdefault(view.name, (view, []))[1]
        for name in list(names) or view.features:
            if name not in view.features:
                raise errors.InvalidInput(f"feature view {view.name!r} has no feature {name!r} "
                                          f"(it has: {', '.join(view.features)})",
                                          field="features")
            if name not in wanted:
                wanted.append(name)
    if not merged:
        raise errors.InvalidInput("no features requested", field="features")
    return list(merged.values())


def _plan_view(con: duckdb.DuckDBPyConnection, index: int, view: FeatureView,
               features: list[str], entities: dict[str, Entity], entity: Columns,
               storage_options: dict[str, Any] | None) -> _ViewPlan:
    plan = _ViewPlan(index, view, features, ttl_us=_ttl_us(view))
    for name in view.entities:
        if name not in entities:
            raise errors.InvalidInput(f"feature view {view.name!r} uses entity {name!r}, which "
                                      "is not among the entities given", field="entities")
        plan.keys += [k for k in entities[name].join_keys if k not in plan.keys]
    for key in plan.keys:
        entity.require(key, "entity_df", "entity_df")
    source = view.source
    columns = register_source(con, f"source{index}", source, storage_options)
    where = f"the source of feature view {view.name!r}"
    for name in [*plan.keys, *features]:
        columns.require(name, where, "source")
    for key in plan.keys:
        check_key_types(key, entity, columns, view.name)
    plan.ts_column = source.timestamp_field
    plan.ts_sql = utc_timestamp(source.timestamp_field, columns, where, "source")
    plan.ts_type = columns.types[source.timestamp_field]
    if source.created_timestamp_field:
        plan.created_sql = utc_timestamp(source.created_timestamp_field, columns, where,
                                         "source")
    return plan


def _late_values(con: duckdb.DuckDBPyConnection, plan: _ViewPlan) -> None:
    """Let the join carry a row locator instead of the values, where the source allows."""
    source = plan.view.source
    if not isinstance(source, FileSource) or is_remote(source.path):
        return
    needed = [*plan.keys, plan.ts_column, *plan.features]
    if source.created_timestamp_field:
        needed.append(source.created_timestamp_field)
    locator = parquet_locator(local_parquet_files(source.path, "source"), needed)
    if locator is not None:
        plan.types = locator.register(con, f"source{plan.index}", plan.features)
        plan.locator = locator


def _ttl_us(view: FeatureView) -> int | None:
    if view.ttl is None:
        return None
    if view.ttl < timedelta(0):
        raise errors.InvalidInput(f"feature view {view.name!r} has a negative ttl",
                                  field="ttl")
    micros = view.ttl // timedelta(microseconds=1)
    return None if micros > _NO_TTL_ABOVE_US else micros


def _name_outputs(plans: list[_ViewPlan], entity: Columns) -> None:
    """``feature``, or ``view__feature`` where the bare name would be ambiguous."""
    seen: dict[str, int] = {}
    for plan in plans:
        for name in plan.features:
            seen[name] = seen.get(name, 0) + 1
    taken = set(entity.names)
    for plan in plans:
        plan.outputs = [f"{plan.view.name}__{name}" if seen[name] > 1 or name in entity.names
                        else name for name in plan.features]
        for name in plan.outputs:
            if name in taken:
                raise errors.InvalidInput(f"output column {name!r} of feature view "
                                          f"{plan.view.name!r} collides with another column",
                                          field="features")
            taken.add(name)


# -- the query -----------------------------------------------------------------------------------

def _query(entity: Columns, timestamp_column: str, plans: list[_ViewPlan],
           lo: datetime | None, hi: datetime | None, exclude_created_after: bool) -> str:
    """One statement: every view's ASOF join chained on the entity rows, sorted back.

    With ``exclude_created_after`` the ASOF match of a view stands whenever it was created
    by the entity timestamp (it is then also the greatest of the allowed rows); only the
    entity rows whose match was created later go through :func:`_created_by` again.
    """
    late = [p for p in plans if exclude_created_after and p.created_sql is not None]
    ctes = [f"{plan.cte} AS ({_feature_rows(plan, lo, hi)})" for plan in plans]
    carried = []
    for plan in plans:
        carried.append(f"{plan.cte}.ts AS {_col(plan, 'ts')}")
        if plan in late:
            carried.append(f"{plan.cte}.created AS {_col(plan, 'created')}")
        if plan.locator is not None:
            carried.append(f"{plan.cte}.loc AS {_col(plan, 'loc')}")
        else:
            carried += [f"{plan.cte}.v{j} AS {_col(plan, j)}"
                        for j in range(len(plan.features))]
    joins = " ".join(_asof_join(plan) for plan in plans)
    # Referenced again by the late views' second pass: computed once, not per reference.
    materialized = "MATERIALIZED " if late else ""
    ctes.append(f"a AS {materialized}(SELECT e.*, {', '.join(carried)} FROM entity AS e "
                f"{joins})")
    ctes += [_created_by(plan) for plan in late]
    select = [f"a.{TS} AS {quote(c)}" if c == timestamp_column  # made UTC-aware in _emit
              else f"a.{quote(c)}" for c in entity.names]
    for plan in plans:
        if plan.locator is not None:  # the values take its place after the query
            select.append(f"{_within_ttl(plan, _col(plan, 'loc'))} AS {_col(plan, 'loc')}")
            continue
        for j, out in enumerate(plan.outputs):
            value = _within_ttl(plan, _col(plan, j))
            if plan in late:
                value = (f"CASE WHEN a.{_col(plan, 'created')} > a.{TS} THEN "
                         f"struct_extract(x{plan.index}.m, 'v{j}') ELSE {value} END")
            select.append(f"{value} AS {quote(out)}")
    fallbacks = " ".join(f"LEFT JOIN x{p.index} ON x{p.index}.{ROW} = a.{ROW}" for p in late)
    return (f"WITH {', '.join(ctes)} SELECT {', '.join(select)} FROM a {fallbacks} "
            f"ORDER BY a.{ROW}")


def _col(plan: _ViewPlan, what: int | str) -> str:
    """Name of a column the ASOF pass carries for ``plan`` (prefixed: no clash possible)."""
    return f"{PREFIX}{plan.index}_{what if isinstance(what, str) else f'v{what}'}"


def _feature_rows(plan: _ViewPlan, lo: datetime | None, hi: datetime | None) -> str:
    """The view's rows: keys ``k<j>``, ``ts``, ``created``, features ``v<j>``; pruned by time.

    Rows after the last entity timestamp, or older than the first one minus the TTL, can
    match nothing; the bounds are on the raw column so Parquet row groups get skipped.
    """
    cols = [f"{quote(k)} AS k{j}" for j, k in enumerate(plan.keys)]
    cols.append(f"{plan.ts_sql} AS ts")
    if plan.created_sql is not None:
        cols.append(f"COALESCE({plan.created_sql}, '-infinity'::TIMESTAMP) AS created")
    if plan.locator is not None:
        cols.append(f"{LOC} AS loc")
    else:
        cols += [f"{quote(name)} AS v{j}" for j, name in enumerate(plan.features)]
    raw, kind = quote(plan.ts_column), plan.ts_type
    if lo is None or hi is None:
        where = "FALSE"
    else:
        # +1µs: a nanosecond value just after hi truncates to hi, and then it matches.
        upper = hi + timedelta(microseconds=1)
        where = f"{raw} < CAST(TIMESTAMP {literal(upper.isoformat())} AS {kind})"
        if plan.ttl_us is not None:
            with contextlib.suppress(OverflowError):
                lower = lo - timedelta(microseconds=plan.ttl_us)
                where += f" AND {raw} >= CAST(TIMESTAMP {literal(lower.isoformat())} AS {kind})"
    table = f"source{plan.index}{'' if plan.locator is None else '_loc'}"
    return f"SELECT {', '.join(cols)} FROM {table} WHERE {where}"


def _key_match(plan: _ViewPlan, left: str, right: str) -> str:
    return " AND ".join(f"{left}.{quote(k)} = {right}.k{j}" for j, k in enumerate(plan.keys))


def _asof_join(plan: _ViewPlan) -> str:
    """The latest row at or before the entity timestamp; later created wins a tie."""
    f = plan.cte
    if plan.created_sql is None:
        order = f"e.{TS} >= {f}.ts"
    else:  # structs compare field by field: (event, created) in one ASOF inequality; a
        # NULL field would sort last (and match), a NULL struct matches nothing
        order = (f"(CASE WHEN e.{TS} IS NOT NULL THEN {{'t': e.{TS}, 'c': 'infinity'::TIMESTAMP}}"
                 f" END) >= {{'t': {f}.ts, 'c': {f}.created}}")
    return f"ASOF LEFT JOIN {f} ON {_key_match(plan, 'e', f)} AND {order}"


def _within_ttl(plan: _ViewPlan, column: str) -> str:
    if plan.ttl_us is None:
        return f"a.{column}"
    return (f"CASE WHEN epoch_us(a.{TS}) - epoch_us(a.{_col(plan, 'ts')}) <= {plan.ttl_us} "
            f"THEN a.{column} END")


def _created_by(plan: _ViewPlan) -> str:
    """For rows whose ASOF match was created after them: the greatest (event, created) row
    among those created by the entity timestamp (and within the TTL)."""
    values = ", ".join(f"'v{j}': f.v{j}" for j in range(len(plan.features)))
    conditions = [_key_match(plan, "a", "f"), f"f.ts <= a.{TS}", f"f.created <= a.{TS}"]
    if plan.ttl_us is not None:
        conditions.append(f"epoch_us(a.{TS}) - epoch_us(f.ts) <= {plan.ttl_us}")
    return (f"x{plan.index} AS (SELECT a.{ROW}, arg_max({{{values}}}, {{'t': f.ts, 'c': "
            f"f.created}}) AS m FROM a JOIN {plan.cte} AS f ON {' AND '.join(conditions)} "
            f"WHERE a.{_col(plan, 'created')} > a.{TS} GROUP BY a.{ROW})")


# -- running -------------------------------------------------------------------------------------

@contextlib.contextmanager
def _connect(memory_limit: str, temp_directory: str | None,
             threads: int | None) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB with bounded memory, a spill folder and UTC as its time zone."""
    with contextlib.ExitStack() as stack:
        spill = temp_directory or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="shipyard-offline-"))
        config: dict[str, Any] = {"memory_limit": memory_limit, "temp_directory": spill}
        if threads is not None:
            config["threads"] = threads
        try:
            con = duckdb.connect(":memory:", config=config)
        except duckdb.Error as exc:
            raise errors.InvalidInput(f"bad DuckDB settings: {exc}",
                                      field="memory_limit") from exc
        stack.callback(con.close)
        # TIMESTAMPTZ <-> TIMESTAMP casts follow this setting (it needs the icu extension,
        # bundled with DuckDB's wheels; without it the casts are UTC anyway).
        with contextlib.suppress(duckdb.Error):
            con.execute("SET TimeZone = 'UTC'")
        yield con


def _emit(con: duckdb.DuckDBPyConnection, query: str, timestamp_column: str,
          output_path: str | None,
          storage_options: dict[str, Any] | None) -> pa.Table | str:
    """Run the query into Arrow or a Parquet file; the entity timestamp becomes UTC."""
    rel = con.sql(query)
    if output_path is None:
        to_table = getattr(rel, "to_arrow_table", None) or rel.arrow  # duckdb < 1.4: arrow()
        table = to_table()
        column = table.schema.get_field_index(timestamp_column)
        table = table.set_column(column, timestamp_column,
                                 table.column(column).cast(_utc(table.schema.field(column))))
        return table
    import pyarrow.parquet as pq

    to_reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader  # < 1.4
    reader = to_reader()
    column = reader.schema.get_field_index(timestamp_column)
    schema = reader.schema.set(column, reader.schema.field(column).with_type(
        _utc(reader.schema.field(column))))
    path = os.fspath(output_path)
    with contextlib.ExitStack() as stack:
        if is_remote(path):  # an object store publishes the object when it is closed
            sink: Any = stack.enter_context(
                filesystem(path, storage_options).open(path.split("://", 1)[1], "wb"))
        else:  # write aside, then rename: readers never see half a file
            final = os.path.abspath(os.path.expanduser(path.removeprefix("file://")))
            os.makedirs(os.path.dirname(final), exist_ok=True)
            sink = f"{final}.{os.getpid()}.tmp"
            stack.callback(_remove_quietly, sink)
        with pq.ParquetWriter(sink, schema) as writer:
            for batch in reader:
                arrays = batch.columns
                arrays[column] = arrays[column].cast(schema.field(column).type)
                writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
        if not is_remote(path):
            os.replace(sink, final)
    return path


def _utc(field: pa.Field) -> pa.DataType:
    return pa.timestamp(field.type.unit, tz="UTC")


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
