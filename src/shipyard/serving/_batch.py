"""Batch inference: a Parquet file in, the same rows with predictions out, chunk by chunk.

The input is read in Arrow record batches and cut into chunks of ``chunk_rows``; each
chunk's output (the input columns unchanged, then ``prediction``, ``probability`` or
``proba_<class>``, and ``model_version``) is written to ``<output>.parts/part-NNNNN.parquet``
under a temporary name and renamed, so a part on disk is complete. A rerun of the same job
(same input file, model digest, chunk size) skips the parts already there; then the parts
are combined into ``output``, whose file metadata names the model.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard import errors

from ._model import ServedModel

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

__all__ = ["predict_parquet", "BatchPredictResult"]

_JOB = "_job.json"


@dataclass(frozen=True)
class BatchPredictResult:
    output: Path
    rows: int
    chunks: int
    skipped_chunks: int
    seconds: float


def predict_parquet(model: ServedModel, input_path: str | Path, output_path: str | Path, *,
                    chunk_rows: int = 100_000, id_column: str | None = None,
                    keep_parts: bool = False, progress: bool = True) -> BatchPredictResult:
    """Score ``input_path`` with ``model`` into ``output_path`` (see the module docstring).

    ``id_column`` must exist and is never given to the model (a row key kept in the
    output). ``keep_parts`` keeps ``<output>.parts`` after combining.
    """
    import pyarrow.parquet as pq

    if chunk_rows < 1:
        raise errors.InvalidInput("chunk_rows must be at least 1", field="chunk_rows")
    source, output = Path(input_path), Path(output_path)
    if not source.is_file():
        raise errors.NotFound(f"input file {source} does not exist")
    started = time.perf_counter()
    reader = pq.ParquetFile(source)
    features = _model_columns(model, reader.schema_arrow, id_column)
    parts = Path(f"{output}.parts")
    _prepare_parts(parts, _job(model, source, reader, chunk_rows, id_column))
    total = reader.metadata.num_rows
    n_chunks = max(1, -(-total // chunk_rows))
    metadata = {b"shipyard.model_name": model.name.encode(),
                b"shipyard.model_version": model.version_label.encode(),
                b"shipyard.model_digest": model.digest.encode(),
                b"shipyard.model_uri": model.uri.encode()}
    skipped = 0
    # Parts are written by a second thread while the next chunk is scored (pyarrow
    # releases the GIL while encoding); at most one write is pending at a time.
    with _progress_bar(progress, total, f"{model.name} v{model.version_label}") as advance, \
            ThreadPoolExecutor(1, thread_name_prefix="shipyard-write") as pool:
        writing: list[Future[None]] = []
        for index, chunk in enumerate(_chunks(reader, chunk_rows)):
            part = parts / f"part-{index:05d}.parquet"
            if part.is_file():
                skipped += 1
            else:
                table = _score(model, chunk, features, metadata)
                for done in writing:
                    done.result()
                writing = [pool.submit(_write_part, table, part)]
            advance(chunk.num_rows)
        for done in writing:
            done.result()
        _combine(pool, parts, output, n_chunks if total else 0,
                 reader.schema_arrow.with_metadata(metadata))
    if not keep_parts:
        shutil.rmtree(parts, ignore_errors=True)
    return BatchPredictResult(output=output, rows=total, chunks=n_chunks if total else 0,
                              skipped_chunks=skipped, seconds=time.perf_counter() - started)


def _model_columns(model: ServedModel, schema: pa.Schema,
                   id_column: str | None) -> list[str]:
    names = list(schema.names)
    if id_column is not None and id_column not in names:
        raise errors.InvalidInput(f"--id-column {id_column!r} is not a column of the input "
                                  f"({', '.join(names)})", field="id_column")
    taken = [n for n in names if n in ("prediction", "probability", "model_version")
             or n.startswith("proba_")]
    if taken:
        raise errors.InvalidInput(f"the input already has column(s) {', '.join(taken)}, "
                                  "which the output adds; rename them", field="input")
    columns = model.columns
    if columns is None:
        return [n for n in names if n != id_column]
    missing = [c for c in columns if c not in names]
    if missing:
        raise errors.InvalidInput(f"the input lacks the model's column(s) "
                                  f"{', '.join(missing)}", field="input")
    return columns


def _job(model: ServedModel, source: Path, reader: Any, chunk_rows: int,
         id_column: str | None) -> dict[str, Any]:
    stat = source.stat()
    return {"input": str(source.resolve()), "input_size": stat.st_size,
            "input_mtime_ns": stat.st_mtime_ns, "input_rows": reader.metadata.num_rows,
            "model_digest": model.digest, "model_uri": model.uri, "chunk_rows": chunk_rows,
            "id_column": id_column}


def _prepare_parts(parts: Path, job: dict[str, Any]) -> None:
    """Keep the parts of the same job; start over when anything differs."""
    marker = parts / _JOB
    if marker.is_file():
        try:
            same = json.loads(marker.read_text()) == job
        except ValueError:
            same = False
        if same:
            return
    if parts.exists():
        shutil.rmtree(parts)
    parts.mkdir(parents=True)
    marker.write_text(json.dumps(job, indent=2))


def _chunks(reader: Any, chunk_rows: int) -> Iterator[pa.Table]:
    """Tables of exactly ``chunk_rows`` rows (the last one shorter), without copying."""
    import pyarrow as pa

    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in reader.iter_batches(batch_size=chunk_rows):
        while batch.num_rows:
            take = min(chunk_rows - size, batch.num_rows)
            pending.append(batch.slice(0, take))
            size += take
            batch = batch.slice(take)
            if size == chunk_rows:
                yield pa.Table.from_batches(pending)
                pending, size = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def _score(model: ServedModel, chunk: pa.Table, features: list[str],
           metadata: dict[bytes, bytes]) -> pa.Table:
    import pyarrow as pa

    frame = chunk.select(features).to_pandas()
    model_input = model.enforce(frame) if model.signature is not None else frame
    preds, proba = model.call_model(model_input, chunk.num_rows, want_proba=True)
    table = chunk.append_column("prediction", _arrow(preds))
    if proba is not None:
        for name, values in _proba_columns(model, proba):
            table = table.append_column(name, pa.array(values))
    version = pa.array([model.version] * chunk.num_rows, type=pa.int64())
    table = table.append_column("model_version", version)
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})


def _arrow(values: np.ndarray) -> pa.Array:
    import pyarrow as pa

    if values.ndim == 1:
        return pa.array(values)
    width = int(values[0].size) if len(values) else 0
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), width)


def _proba_columns(model: ServedModel, proba: np.ndarray) -> list[tuple[str, np.ndarray]]:
    classes = model.classes or list(range(proba.shape[1]))
    if proba.shape[1] == 2:
        return [("probability", proba[:, 1])]
    return [(f"proba_{c}", proba[:, j]) for j, c in enumerate(classes)]


def _write_part(table: pa.Table, part: Path) -> None:
    import pyarrow.parquet as pq

    tmp = part.with_suffix(".tmp")
    # Parts are read back once, by _combine: no compression makes both ends cheaper.
    pq.write_table(table, tmp, use_dictionary=_dictionary_columns(table.schema),
                   compression="none")
    os.replace(tmp, part)  # a part on disk is always complete


def _combine(pool: ThreadPoolExecutor, parts: Path, output: Path, n_chunks: int,
             empty: pa.Schema) -> None:
    """One file from the parts, reading the next part while writing this one."""
    import pyarrow.parquet as pq

    files = [parts / f"part-{i:05d}.parquet" for i in range(n_chunks)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise errors.Conflict(f"parts {', '.join(missing[:5])} are missing from {parts}")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    writer = None
    reading = pool.submit(pq.read_table, files[0]) if files else None
    try:
        for i in range(len(files)):
            assert reading is not None
            table = reading.result()
            if i + 1 < len(files):
                reading = pool.submit(pq.read_table, files[i + 1])
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema,
                                          use_dictionary=_dictionary_columns(table.schema))
            elif table.schema != writer.schema:
                table = table.cast(writer.schema)
            writer.write_table(table)
        if writer is None:  # an empty input: an empty output with the model's metadata
            pq.write_table(empty.empty_table(), tmp)
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp, output)


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary encoding: text and categories, not measurements.

    pyarrow's default tries a dictionary for every column; on float columns it always
    falls back, after spending more time than the rest of the write.
    """
    import pyarrow as pa

    return [f.name for f in schema if pa.types.is_string(f.type)
            or pa.types.is_large_string(f.type) or pa.types.is_dictionary(f.type)
            or pa.types.is_boolean(f.type) or pa.types.is_binary(f.type)]


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (plain, no animation, when stderr is no terminal);
    yields ``advance(rows)``."""
    if not enabled:
        yield lambda rows: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("scoring {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("rows"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total)
        yield lambda rows: bar.advance(task, rows)
