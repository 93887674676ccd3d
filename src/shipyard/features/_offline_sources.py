"""Inputs of the offline store, as DuckDB relations: entity frames and feature sources.

Everything here turns a user-supplied input (pandas, Arrow, Parquet path, PostgreSQL
query) into something a DuckDB connection can scan, and checks the columns the
point-in-time join needs. Local Parquet is read by DuckDB itself (streaming, with
projection and filter pushdown); remote paths (``s3://`` …) go through fsspec and a
pyarrow dataset, which DuckDB scans lazily as well.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from shipyard import errors
from shipyard.features._definitions import (
    DataFrameSource,
    FileSource,
    PostgresSource,
)

PREFIX = "__shipyard_"  # internal column names start with it; entity columns may not
ROW = f"{PREFIX}row"
TS = f"{PREFIX}ts"
_NAIVE_TYPES = {"timestamp", "timestamp_ns", "timestamp_ms", "timestamp_s"}
_AWARE_TYPES = {"timestamp with time zone", "timestamptz_ns"}
_STRING_TYPES = {"varchar"}
_NUMERIC_TYPES = {"tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint",
                  "usmallint", "uinteger", "ubigint", "uhugeint", "float", "double", "decimal"}
_PG_TIMESTAMP_OIDS = {1114: pa.timestamp("us"), 1184: pa.timestamp("us", tz="UTC")}


def quote(name: str) -> str:
    """A DuckDB identifier for ``name``, whatever characters it holds."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Columns:
    """The columns of a registered relation and their DuckDB type ids (lower case)."""

    names: list[str]
    types: dict[str, str]

    @classmethod
    def of(cls, con: duckdb.DuckDBPyConnection, relation: str) -> Columns:
        rel = con.sql(f"SELECT * FROM {relation} LIMIT 0")
        return cls(list(rel.columns), {c: t.id.lower() for c, t in zip(rel.columns, rel.types,
                                                                       strict=True)})

    def require(self, column: str, where: str, field: str) -> None:
        if column not in self.types:
            raise errors.InvalidInput(f"{where} has no column {column!r} (it has: "
                                      f"{', '.join(self.names)})", field=field)


def utc_timestamp(column: str, columns: Columns, where: str, field: str) -> str:
    """SQL for ``column`` as a naive UTC ``TIMESTAMP`` (microseconds).

    Naive values are taken to be UTC already; tz-aware ones are converted through their
    epoch value (the ICU cast does the same over ten times slower).
    """
    columns.require(column, where, field)
    kind = columns.types[column]
    if kind in _AWARE_TYPES:
        return f"make_timestamp(epoch_us(CAST({quote(column)} AS TIMESTAMPTZ)))"
    if kind in _NAIVE_TYPES:
        return f"CAST({quote(column)} AS TIMESTAMP)"
    raise errors.InvalidInput(f"column {column!r} of {where} must be a timestamp, not "
                              f"{kind.upper()}", field=field)


def check_key_types(key: str, entity: Columns, source: Columns, view: str) -> None:
    """Refuse joining a string key with a numeric one (DuckDB would fail row by row)."""
    kinds = {entity.types[key], source.types[key]}
    if kinds & _STRING_TYPES and kinds & _NUMERIC_TYPES:
        raise errors.InvalidInput(
            f"join key {key!r} is {entity.types[key].upper()} in entity_df but "
            f"{source.types[key].upper()} in the source of view {view!r}", field="entity_df")


# -- paths ---------------------------------------------------------------------------------------

def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def local_parquet_files(path: str, field: str) -> list[str]:
    """The Parquet files at a local file, folder (recursively) or glob, sorted."""
    path = os.path.expanduser(path.removeprefix("file://"))
    if os.path.isdir(path):
        files = glob.glob(os.path.join(glob.escape(path), "**", "*.parquet"), recursive=True)
    elif _is_glob(path):
        files = [f for f in glob.glob(path, recursive=True) if os.path.isfile(f)]
    else:
        files = [path] if os.path.isfile(path) else []
    if not files:
        raise errors.InvalidInput(f"no Parquet files at {path!r}", field=field)
    return sorted(files)


def filesystem(path: str, storage_options: dict[str, Any] | None) -> Any:
    """The fsspec filesystem of a remote path; s3 defaults to the configured endpoint."""
    import fsspec

    protocol = path.split("://", 1)[0]
    options = dict(storage_options or {})
    if protocol in ("s3", "s3a") and storage_options is None:
        from shipyard.config import get_settings

        endpoint = get_settings().s3_endpoint_url
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
    try:
        return fsspec.filesystem(protocol, **options)
    except ImportError as exc:
        raise errors.MissingDependency(f"reading {protocol}:// needs its fsspec driver "
                                       f"(s3: pip install 'shipyard-mlops[s3]'): {exc}") from exc
    except ValueError as exc:
        raise errors.InvalidInput(f"unsupported path {path!r}: {exc}", field="path") from exc


def remote_dataset(path: str, storage_options: dict[str, Any] | None, field: str) -> Any:
    """A lazy pyarrow dataset over the Parquet files at a remote file, folder or glob."""
    import pyarrow.dataset as ds
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs = filesystem(path, storage_options)
    bare = path.split("://", 1)[1]
    base = None
    if _is_glob(bare):
        files = sorted(fs.glob(bare))
    elif fs.isdir(bare):  # key=value folders become columns, as DuckDB does locally
        files, base = sorted(f for f in fs.find(bare) if f.endswith(".parquet")), bare
    else:
        files = [bare] if fs.isfile(bare) else []
    if not files:
        raise errors.InvalidInput(f"no Parquet files at {path!r}", field=field)
    return ds.dataset(files, filesystem=PyFileSystem(FSSpecHandler(fs)), format="parquet",
                      partitioning="hive" if base else None, partition_base_dir=base)


# -- entity frame --------------------------------------------------------------------------------

def load_entity(con: duckdb.DuckDBPyConnection, entity_df: Any, timestamp_column: str,
                storage_options: dict[str, Any] | None) -> Columns:
    """Create the temp table ``entity``: the input columns, a row id and the UTC timestamp.

    Returns the columns of the input (without the two added ones).
    """
    if isinstance(entity_df, str | os.PathLike):
        path = os.fspath(entity_df)
        if is_remote(path):
            table = remote_dataset(path, storage_options, "entity_df").to_table()
            con.register("entity_input", _with_row_id(table))
        else:
            files = local_parquet_files(path, "entity_df")
            con.execute(
                f"CREATE TEMP VIEW entity_input AS SELECT * EXCLUDE (filename, file_row_number), "
                f"row_number() OVER (ORDER BY filename, file_row_number) - 1 AS {ROW} "
                f"FROM read_parquet([{', '.join(literal(f) for f in files)}], "
                f"union_by_name = true, filename = true, file_row_number = true)")
    elif isinstance(entity_df, pd.DataFrame | pa.Table):
        con.register("entity_input", _with_row_id(to_arrow(entity_df, "entity_df")))
    else:
        raise errors.InvalidInput("entity_df must be a pandas DataFrame, a pyarrow Table or a "
                                  f"Parquet path, not {type(entity_df).__name__}",
                                  field="entity_df")
    columns = Columns.of(con, "entity_input")
    names = [c for c in columns.names if c != ROW]
    for name in names:
        if name.startswith(PREFIX):
            raise errors.InvalidInput(f"entity_df may not have a column named {name!r} "
                                      f"(the prefix {PREFIX!r} is reserved)", field="entity_df")
    ts = utc_timestamp(timestamp_column, columns, "entity_df", "entity_df")
    con.execute(f"CREATE TEMP TABLE entity AS SELECT * EXCLUDE ({ROW}), {ROW}, {ts} AS {TS} "
                "FROM entity_input")
    return Columns(names, {c: columns.types[c] for c in names})


def to_arrow(frame: Any, field: str) -> pa.Table:
    if isinstance(frame, pa.Table):
        names = frame.column_names
        table = frame
    elif isinstance(frame, pd.DataFrame):
        names = [str(c) for c in frame.columns]
        try:
            table = pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise errors.InvalidInput(f"{field} cannot be converted to Arrow: {exc}",
                                      field=field) from exc
    else:
        raise errors.InvalidInput(f"{field} must be a pandas DataFrame or a pyarrow Table, "
                                  f"not {type(frame).__name__}", field=field)
    if len(set(names)) != len(names):
        raise errors.InvalidInput(f"{field} has duplicate column names", field=field)
    return table


def _with_row_id(table: pa.Table) -> pa.Table:
    return table.append_column(ROW, pa.array(range(table.num_rows), pa.int64()))


# -- feature sources -----------------------------------------------------------------------------

def register_source(con: duckdb.DuckDBPyConnection, name: str, source: Any,
                    storage_options: dict[str, Any] | None) -> Columns:
    """Make the view's source scannable as ``name``; returns its columns."""
    if isinstance(source, FileSource):
        if is_remote(source.path):
            con.register(name, remote_dataset(source.path, storage_options, "source"))
        else:
            files = local_parquet_files(source.path, "source")
            con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM read_parquet("
                        f"[{', '.join(literal(f) for f in files)}], union_by_name = true)")
    elif isinstance(source, DataFrameSource):
        if source.frame is None:
            raise errors.Conflict(f"data frame source {source.name!r} has no frame in memory: "
                                  "read the Parquet copy written by apply (a FileSource)")
        con.register(name, to_arrow(source.frame, "source"))
    elif isinstance(source, PostgresSource):
        con.register(name, postgres_table(source))
    else:
        raise errors.InvalidInput(f"unsupported source {type(source).__name__}", field="source")
    return Columns.of(con, name)


def postgres_table(source: PostgresSource) -> pa.Table:
    """Run the source's query on PostgreSQL (server-side cursor) into an Arrow table."""
    import sqlalchemy as sa

    from shipyard.config import get_settings

    url = source.url or get_settings().db_url
    if not url.startswith("postgresql"):
        raise errors.InvalidInput(f"a PostgresSource needs a postgresql:// URL, not {url!r}",
                                  field="url")
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor(name="shipyard_offline_source")  # streams in batches
            cursor.execute(source.query)  # no parameters: the query text is sent verbatim
            rows: list[tuple[Any, ...]] = []
            while batch := cursor.fetchmany(50_000):
                rows.extend(batch)
            description = cursor.description
            cursor.close()
        finally:
            raw.close()
    except Exception as exc:
        # Bad SQL or a bad value is the definition's fault; a dead server is not.
        if any(c.__name__ in ("ProgrammingError", "DataError") for c in type(exc).__mro__):
            raise errors.InvalidInput(f"PostgresSource query failed: {exc}",
                                      field="query") from exc
        raise
    finally:
        engine.dispose()
    arrays = []
    for i, (_, type_code, *_rest) in enumerate(description):
        array = pa.array([row[i] for row in rows])
        if pa.types.is_null(array.type) and type_code in _PG_TIMESTAMP_OIDS:
            array = array.cast(_PG_TIMESTAMP_OIDS[type_code])
        arrays.append(array)
    return pa.Table.from_arrays(arrays, names=[col[0] for col in description])
