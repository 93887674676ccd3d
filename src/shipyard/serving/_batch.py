"""Batch inference: a Parquet file in, the same rows with predictions out, chunk by chunk.

The input is read in Arrow record batches and cut into chunks of ``chunk_rows``; each
chunk's output (the input columns unchanged, the joined features when asked, then
``prediction``, ``probability`` or ``proba_<class>``, and ``model_version``) is written to
``<output>.parts/part-NNNNN.arrow`` (an Arrow IPC file: the buffers as they are, the
cheapest format to write and to read back) under a temporary name and renamed, so a part
on disk is complete. A rerun of the same job (same input file, model digest, chunk size,
feature join) skips the parts already there.

Three threads keep the model busy (:mod:`._batch_io`): one reads and decodes the next
chunks — and joins their features from the offline store when ``features`` is given
(:mod:`._batch_features`) —, the caller's thread builds the model input and predicts, and
one writes each scored chunk twice — its part (the resume point) and, in chunk order, the
output file itself (a temporary name, renamed when the last chunk is in; its metadata names
the model and the feature service). Reading, joining and writing run in C++ code without
the GIL, so on two cores they cost the model little; the queues between the threads are
short, so memory stays a few chunks whatever the input.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard import errors
from shipyard._progress import progress_bar

from ._batch_features import FeatureJoin, plan_feature_join
from ._batch_io import OutputWriter, Prepare, ReadAhead
from ._model import ServedModel

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from shipyard.features import FeatureStore

__all__ = ["predict_parquet", "BatchPredictResult"]

_JOB = "_job.json"
#: job entries a rerun takes over from the recorded job instead of comparing them
_CARRIED = ("features_as_of",)


@dataclass(frozen=True)
class BatchPredictResult:
    output: Path
    #: rows written to the output (the input's, less those ``on_missing="skip"`` left out)
    rows: int
    chunks: int
    skipped_chunks: int
    seconds: float
    skipped_rows: int = 0
    feature_service: str | None = None


def predict_parquet(model: ServedModel, input_path: str | Path, output_path: str | Path, *,
                    chunk_rows: int = 100_000, id_column: str | None = None,
                    keep_parts: bool = False, progress: bool = True,
                    features: str | None = None, timestamp_column: str | None = None,
                    on_missing: str = "error",
                    feature_store: FeatureStore | None = None) -> BatchPredictResult:
    """Score ``input_path`` with ``model`` into ``output_path`` (see the module docstring).

    ``id_column`` must exist and is never given to the model (a row key kept in the
    output). ``keep_parts`` keeps ``<output>.parts`` after the output is written.
    ``features`` (a feature service, or ``"auto"``: the one the model version lists) joins
    that service's features from the offline store to each row, point-in-time at the
    row's ``timestamp_column`` (default ``event_timestamp`` when the input has it, else
    the job's start); ``on_missing`` is ``error``, ``null`` or ``skip`` (see
    :mod:`._batch_features`); ``feature_store`` defaults to the model's or the default
    client's.
    """
    import pyarrow.parquet as pq

    if chunk_rows < 1:
        raise errors.InvalidInput("chunk_rows must be at least 1", field="chunk_rows")
    source, output = Path(input_path), Path(output_path)
    if not source.is_file():
        raise errors.NotFound(f"input file {source} does not exist")
    started = time.perf_counter()
    reader = pq.ParquetFile(source)
    schema, join = reader.schema_arrow, None
    if features is None and timestamp_column is not None:
        raise errors.InvalidInput("a timestamp column is used only to join features: pass "
                                  "--features too", field="timestamp_column")
    if features is not None:
        join = plan_feature_join(model, features, schema, timestamp_column=timestamp_column,
                                 on_missing=on_missing, store=feature_store)
        schema = _joined_schema(schema, join)
    columns = _model_columns(model, schema, id_column, join)
    model_input = _input_builder(model, schema, columns)
    parts = Path(f"{output}.parts")
    job = _job(model, source, reader, chunk_rows, id_column, join)
    recorded = _prepare_parts(parts, job)
    metadata = {b"shipyard.model_name": model.name.encode(),
                b"shipyard.model_version": model.version_label.encode(),
                b"shipyard.model_digest": model.digest.encode(),
                b"shipyard.model_uri": model.uri.encode()}
    if join is not None:
        if recorded.get("features_as_of"):  # a resumed job joins as of its first run
            from datetime import datetime

            join.as_of = datetime.fromisoformat(recorded["features_as_of"])
        metadata.update(join.metadata())
    done = {int(p.stem.removeprefix("part-")) for p in parts.glob("part-*.arrow")}
    total = reader.metadata.num_rows
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    with progress_bar(progress, total, f"scoring {model.name} v{model.version_label}",
                      "rows") as advance, \
            ReadAhead(reader, chunk_rows, _preparer(join, done, model_input)) as chunks, \
            OutputWriter(tmp, schema.with_metadata(metadata)) as writer:
        for index, (rows, (chunk, prepared)) in enumerate(chunks):
            part = parts / f"part-{index:05d}.arrow"
            if index in done:
                writer.copy(part)
            else:
                writer.write(_score(model, prepared, chunk, metadata), part)
            advance(rows)
        writer.complete()
    os.replace(tmp, output)
    if not keep_parts:
        shutil.rmtree(parts, ignore_errors=True)
    return BatchPredictResult(output=output, rows=writer.rows, chunks=-(-total // chunk_rows),
                              skipped_chunks=len(done), seconds=time.perf_counter() - started,
                              skipped_rows=total - writer.rows,
                              feature_service=join.service if join is not None else None)


def _preparer(join: FeatureJoin | None, done: set[int],
              model_input: Callable[[pa.Table], Any]) -> Prepare:
    """The read-ahead thread's work per chunk, ahead of the model: the feature join (with
    one), then the model's input (a frame; the signature check when it is needed), except
    for the chunks a rerun copies from their part. Gives ``(chunk, model input)``."""

    def prepare(index: int, chunk: pa.Table) -> tuple[pa.Table, Any]:
        if index in done:
            return chunk, None
        if join is not None:
            chunk = join.join(chunk)
        return chunk, model_input(chunk)

    return prepare


def _joined_schema(schema: pa.Schema, join: FeatureJoin) -> pa.Schema:
    for f in join.fields:
        schema = schema.append(f)
    return schema


def _model_columns(model: ServedModel, schema: pa.Schema, id_column: str | None,
                   join: FeatureJoin | None = None) -> list[str]:
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
    if columns is None:  # no columnar signature: everything but the keys
        keys = {id_column, *(join.input_only if join is not None else [])}
        return [n for n in names if n not in keys]
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
         id_column: str | None, join: FeatureJoin | None) -> dict[str, Any]:
    stat = source.stat()
    features = {} if join is None else {
        "features": join.job(),
        "features_as_of": None if join.timestamp_column else join.as_of.isoformat()}
    return {**features, "input": str(source.resolve()), "input_size": stat.st_size,
            "input_mtime_ns": stat.st_mtime_ns, "input_rows": reader.metadata.num_rows,
            "model_digest": model.digest, "model_uri": model.uri, "chunk_rows": chunk_rows,
            "id_column": id_column, "parts": "arrow-ipc"}


def _prepare_parts(parts: Path, job: dict[str, Any]) -> dict[str, Any]:
    """Keep the parts of the same job; start over when anything differs. Returns the job
    as recorded (a rerun keeps the recorded :data:`_CARRIED` entries)."""
    marker = parts / _JOB
    if marker.is_file():
        try:
            recorded = json.loads(marker.read_text())
        except ValueError:
            recorded = None
        if isinstance(recorded, dict) and _compared(recorded) == _compared(job):
            return recorded
    if parts.exists():
        shutil.rmtree(parts)
    parts.mkdir(parents=True)
    marker.write_text(json.dumps(job, indent=2))
    return job


def _compared(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if k not in _CARRIED}


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
