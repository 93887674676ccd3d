"""Batch inference: a Parquet file in, the same rows with predictions out, chunk by chunk.

The input is read in Arrow record batches and cut into chunks of ``chunk_rows``; each
chunk's output (the input columns unchanged, then ``prediction``, ``probability`` or
``proba_<class>``, and ``model_version``) is written to ``<output>.parts/part-NNNNN.arrow``
(an Arrow IPC file: the buffers as they are, the cheapest format to write and to read
back) under a temporary name and renamed, so a part on disk is complete. A rerun of the
same job (same input file, model digest, chunk size) skips the parts already there.

Three threads keep the model busy: one reads and decodes the next chunks, the caller's
thread builds the model input and predicts, and one writes each scored chunk twice — its
part (the resume point) and, in chunk order, the output file itself (a temporary name,
renamed when the last chunk is in; its metadata names the model). Reading and writing run
in pyarrow's C++ code without the GIL, so on two cores they cost the model almost nothing;
the queues between the threads are short, so memory stays a few chunks whatever the input.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
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
#: chunks read ahead of the model, and scored chunks waiting for the writer
_DEPTH = 2
_DONE = object()


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
    output). ``keep_parts`` keeps ``<output>.parts`` after the output is written.
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
    model_input = _input_builder(model, reader.schema_arrow, features)
    parts = Path(f"{output}.parts")
    _prepare_parts(parts, _job(model, source, reader, chunk_rows, id_column))
    total = reader.metadata.num_rows
    n_chunks = -(-total // chunk_rows)
    metadata = {b"shipyard.model_name": model.name.encode(),
                b"shipyard.model_version": model.version_label.encode(),
                b"shipyard.model_digest": model.digest.encode(),
                b"shipyard.model_uri": model.uri.encode()}
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    skipped = 0
    with _progress_bar(progress, total, f"{model.name} v{model.version_label}") as advance, \
            _ReadAhead(reader, chunk_rows) as chunks, \
            _OutputWriter(tmp, reader.schema_arrow.with_metadata(metadata)) as writer:
        for index, chunk in enumerate(chunks):
            part = parts / f"part-{index:05d}.arrow"
            if part.is_file():
                skipped += 1
                writer.copy(part)
            else:
                writer.write(_score(model, model_input(chunk), chunk, metadata), part)
            advance(chunk.num_rows)
        writer.complete()
    os.replace(tmp, output)
    if not keep_parts:
        shutil.rmtree(parts, ignore_errors=True)
    return BatchPredictResult(output=output, rows=total, chunks=n_chunks,
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


def _input_builder(model: ServedModel, schema: pa.Schema,
                   features: list[str]) -> Callable[[pa.Table], Any]:
    """What turns a chunk into the model's input, decided once for the whole file.

    When the file's Arrow types are exactly the signature's (``double`` ↔ float64 …),
    enforcing the signature on a chunk changes nothing unless a value is missing, so the
    chunk's frame goes straight to the model: a chunk with a null, or a NaN in a column
    that allows none, takes the full check instead (which names the problem).
    """
    import pyarrow as pa

    def checked(chunk: pa.Table) -> Any:
        return model.enforce(chunk.select(features).to_pandas())

    sig = model.signature
    if sig is None:
        return lambda chunk: chunk.select(features).to_pandas()
    if not isinstance(sig.inputs, list):
        return checked
    exact = {"double": pa.float64(), "float": pa.float32(), "long": pa.int64(),
             "integer": pa.int32(), "boolean": pa.bool_()}
    specs = {c.name: c for c in sig.inputs}
    if any(schema.field(n).type != exact.get(specs[n].type) for n in features):
        return checked
    no_nan = [n for n in features
              if not specs[n].nullable and specs[n].type in ("double", "float")]

    def trusted(chunk: pa.Table) -> Any:
        columns = chunk.select(features)
        if any(col.null_count for col in columns.columns) or _has_nan(columns, no_nan):
            return checked(chunk)
        return columns.to_pandas()

    return trusted


def _has_nan(table: pa.Table, names: list[str]) -> bool:
    """Whether a column of ``names`` (floats without nulls) may hold a NaN.

    A sum is NaN when a value is (one pass, no allocation); ``inf - inf`` makes a false
    alarm, which only sends the chunk through the full check.
    """
    import numpy as np

    return any(bool(np.isnan(np.sum(chunk.to_numpy()))) for n in names
               for chunk in table.column(n).chunks)


def _job(model: ServedModel, source: Path, reader: Any, chunk_rows: int,
         id_column: str | None) -> dict[str, Any]:
    stat = source.stat()
    return {"input": str(source.resolve()), "input_size": stat.st_size,
            "input_mtime_ns": stat.st_mtime_ns, "input_rows": reader.metadata.num_rows,
            "model_digest": model.digest, "model_uri": model.uri, "chunk_rows": chunk_rows,
            "id_column": id_column, "parts": "arrow-ipc"}


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


def _score(model: ServedModel, model_input: Any, chunk: pa.Table,
           metadata: dict[bytes, bytes]) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    preds, proba = model.call_model(model_input, chunk.num_rows, want_proba=True)
    table = chunk.append_column("prediction", _arrow(preds))
    if proba is not None:
        for name, values in _proba_columns(model, proba):
            table = table.append_column(name, pa.array(values))
    version = pa.nulls(chunk.num_rows, pa.int64()) if model.version is None else \
        pa.array(np.full(chunk.num_rows, model.version, dtype=np.int64))
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


# -- the reading and writing threads ---------------------------------------------------------


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _ReadAhead:
    """The input's chunks, decoded by a thread at most :data:`_DEPTH` chunks ahead."""

    def __init__(self, reader: Any, chunk_rows: int) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(_DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(reader, chunk_rows),
                                        name="shipyard-read", daemon=True)

    def _run(self, reader: Any, chunk_rows: int) -> None:
        try:
            for chunk in _chunks(reader, chunk_rows):
                if not self._put(chunk):
                    return
            self._put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            self._put(_Failed(exc))

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.1)
                return True
        return False

    def __iter__(self) -> Iterator[pa.Table]:
        while (item := self._queue.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def __enter__(self) -> _ReadAhead:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # a reader blocked on a full queue gives up within 0.1 s
        self._thread.join()


class _OutputWriter:
    """Writes each scored chunk's part, then appends the chunk to the output, in a thread.

    Leaving the block without :meth:`complete` (an error, an interrupt) still writes the
    parts already handed over — they are what a rerun resumes from — and removes the
    unfinished output.
    """

    def __init__(self, tmp: Path, empty: pa.Schema) -> None:
        self._tmp = tmp
        self._empty = empty  # the output of an input without rows
        self._queue: queue.Queue[Any] = queue.Queue(_DEPTH)
        self._writer: Any = None
        self._error: BaseException | None = None
        self._abandoned = False
        self._completed = False
        self._thread = threading.Thread(target=self._run, name="shipyard-write", daemon=True)

    def write(self, table: pa.Table, part: Path) -> None:
        self._hand_over((table, part))

    def copy(self, part: Path) -> None:
        """Append a part written by an earlier run of the same job."""
        self._hand_over((None, part))

    def complete(self) -> None:
        """Wait for the last chunk and close the output (the caller renames it)."""
        self._finish()
        if self._error is not None:
            raise self._error
        if self._writer is None:
            import pyarrow.parquet as pq

            pq.write_table(self._empty.empty_table(), self._tmp)
        else:
            self._writer.close()
        self._completed = True

    def _hand_over(self, item: tuple[pa.Table | None, Path]) -> None:
        while True:
            if self._error is not None:
                raise self._error
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.1)
                return

    def _run(self) -> None:
        while (item := self._queue.get()) is not _DONE:
            if self._error is not None:
                continue  # drain: the caller raises the error at its next hand-over
            table, part = item
            try:
                if table is None:
                    if not self._abandoned:
                        self._append(_read_part(part))
                    continue
                _write_part(table, part)
                if not self._abandoned:
                    self._append(table)
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                self._error = exc

    def _append(self, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, table.schema,
                                            use_dictionary=_dictionary_columns(table.schema))
        elif table.schema != self._writer.schema:
            table = table.cast(self._writer.schema)
        self._writer.write_table(table)

    def _finish(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()

    def __enter__(self) -> _OutputWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._completed:
            return
        self._abandoned = True  # parts still get written; the output is dropped
        self._finish()
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._tmp.unlink(missing_ok=True)


def _read_part(part: Path) -> pa.Table:
    import pyarrow as pa

    if not part.is_file():
        raise errors.Conflict(f"part {part.name} disappeared from {part.parent}")
    with pa.memory_map(str(part)) as source:
        return pa.ipc.open_file(source).read_all()


def _write_part(table: pa.Table, part: Path) -> None:
    import pyarrow as pa

    tmp = part.with_suffix(".tmp")
    # A part is read back only when a run resumes: Arrow IPC writes the buffers as they
    # are, a third of the CPU of even an uncompressed Parquet file.
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    os.replace(tmp, part)  # a part on disk is always complete


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
