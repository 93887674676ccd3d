"""The I/O side of batch scoring: a read-ahead thread and a writer thread.

:class:`ReadAhead` decodes the input's chunks (and, given ``prepare``, runs it on each:
the feature join and the model's input) at most :data:`DEPTH` chunks ahead of the model;
:class:`OutputWriter` writes each scored chunk's part (the resume point) and appends it to
the output, in chunk order. Both run pyarrow's (and DuckDB's) C++ code, which releases the
GIL, so on a second core they overlap the model's predict almost entirely. An error in
either thread is raised again in the caller's thread, at the chunk where it happened.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard import errors

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DEPTH", "OutputWriter", "Prepare", "ReadAhead", "chunks",
           "read_part", "write_part"]

#: chunks read ahead of the model, and scored chunks waiting for the writer
DEPTH = 2
_DONE = object()
#: ``prepare(index, chunk)`` -> what the model's side gets for that chunk
Prepare = Callable[[int, "pa.Table"], Any]


def chunks(reader: Any, chunk_rows: int) -> Iterator[pa.Table]:
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


# -- the reading and writing threads ---------------------------------------------------------


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class ReadAhead:
    """The input's chunks, decoded (and prepared) by a thread at most :data:`DEPTH` ahead.

    Iterating yields ``(rows, table)``: the chunk's number of input rows and the chunk, or
    what ``prepare(index, chunk)`` made of it (which may have other columns and rows).
    """

    def __init__(self, reader: Any, chunk_rows: int, prepare: Prepare | None = None) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(reader, chunk_rows, prepare),
                                        name="shipyard-read", daemon=True)

    def _run(self, reader: Any, chunk_rows: int, prepare: Prepare | None) -> None:
        try:
            for index, chunk in enumerate(chunks(reader, chunk_rows)):
                table = chunk if prepare is None else prepare(index, chunk)
                if not self._put((chunk.num_rows, table)):
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

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        while (item := self._queue.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def __enter__(self) -> ReadAhead:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # a reader blocked on a full queue gives up within 0.1 s
        self._thread.join()


class OutputWriter:
    """Writes each scored chunk's part, then appends the chunk to the output, in a thread.

    Leaving the block without :meth:`complete` (an error, an interrupt) still writes the
    parts already handed over — they are what a rerun resumes from — and removes the
    unfinished output.
    """

    def __init__(self, tmp: Path, empty: pa.Schema) -> None:
        self._tmp = tmp
        self._empty = empty  # the output of an input without rows
        self._queue: queue.Queue[Any] = queue.Queue(DEPTH)
        self._writer: Any = None
        self._error: BaseException | None = None
        self._abandoned = False
        self._completed = False
        #: rows appended to the output so far (parts copied from an earlier run included)
        self.rows = 0
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
                        self._append(read_part(part))
                    continue
                write_part(table, part)
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
        self.rows += table.num_rows

    def _finish(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()

    def __enter__(self) -> OutputWriter:
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


def read_part(part: Path) -> pa.Table:
    import pyarrow as pa

    if not part.is_file():
        raise errors.Conflict(f"part {part.name} disappeared from {part.parent}")
    with pa.memory_map(str(part)) as source:
        return pa.ipc.open_file(source).read_all()


def write_part(table: pa.Table, part: Path) -> None:
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
