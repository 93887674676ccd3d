"""The prediction log: every prediction and every piece of feedback, as Parquet by day.

Layout under ``SHIPYARD_HOME``::

    predictions/<model>/date=YYYY-MM-DD/part-<time>-<pid>-<n>.parquet
    feedback/<model>/date=YYYY-MM-DD/part-<time>-<pid>-<n>.parquet

One row per predicted row: ``prediction_id``, ``timestamp`` (UTC), ``model_name``,
``model_version``, ``model_digest``, ``deployment`` and ``arm`` (null outside a rollout),
``request_id``, ``endpoint``, ``latency_ms``, one ``input.<column>`` per input column (or
``input``, a list, for tensor models), ``prediction`` and, for classifiers,
``probabilities`` (a list). Files written before ``deployment``/``arm`` existed read back
with those columns null.

One log per model: the arms of a rollout (several versions of one model) share it.

Serving threads only put an entry on a queue; one writer thread turns the entries into
Arrow and writes a file every ``flush_interval`` seconds or ``flush_rows`` rows. Files are
written under a temporary name and renamed, so a reader never sees half a file. When the
writer falls behind by ``max_pending`` entries, new entries are dropped and counted rather
than slowing the server down (``shipyard_serving_predlog_dropped_total``).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard import errors

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

__all__ = ["PredictionLog", "LogEntry", "read_predictions", "read_feedback",
           "predictions_dir", "feedback_dir"]

log = logging.getLogger("shipyard.serving")
_counter = itertools.count()


def predictions_dir(home: str | Path, model: str) -> Path:
    from shipyard.registry import check_model_name

    return Path(home) / "predictions" / check_model_name(model)


def feedback_dir(home: str | Path, model: str) -> Path:
    from shipyard.registry import check_model_name

    return Path(home) / "feedback" / check_model_name(model)


@dataclass(frozen=True)
class LogEntry:
    """One predicted batch, as the predict thread hands it over (converted later)."""

    timestamp: float  # epoch seconds
    model_version: int | None
    model_digest: str
    inputs: Any  # the model input: a DataFrame or an array, one row per prediction
    predictions: np.ndarray
    probabilities: np.ndarray | None
    prediction_ids: list[str]
    request_ids: list[str]  # one per row
    endpoints: list[str]  # one per row
    latency_ms: list[float]  # one per row
    deployment: str | None = None  # the rollout this prediction belongs to, if any
    arm: str | None = None  # the arm of that rollout that answered
    explanations: list[Any] | None = None  # one per row (None where not asked), see _explain


@dataclass(frozen=True)
class _Feedback:
    timestamp: float
    prediction_id: str
    label: Any
    reward: float | None


@dataclass(frozen=True)
class _Flush:
    done: threading.Event


class PredictionLog:
    """Appends predictions and feedback of one model to Parquet from a background thread."""

    def __init__(self, home: str | Path, model: str, *, flush_interval: float = 1.0,
                 flush_rows: int = 10_000, max_pending: int = 100_000) -> None:
        self.model = model
        self.predictions_dir = predictions_dir(home, model)
        self.feedback_dir = feedback_dir(home, model)
        self.flush_interval = flush_interval
        self.flush_rows = flush_rows
        self.dropped = 0
        self.rows_written = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._wake = threading.Event()
        self._pending_rows = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, daemon=True,
                                                    name="shipyard-predlog")
                    self._thread.start()
                    # A server run without lifespan events never calls close(): flush at exit.
                    atexit.register(self._close_at_exit)

    def append(self, entry: LogEntry) -> bool:
        """Queue a batch of predictions; False (and counted) when the writer is behind."""
        return self._put(entry, len(entry.prediction_ids))

    def feedback(self, prediction_id: str, *, label: Any = None,
                 reward: float | None = None) -> bool:
        """Queue ground truth (``label``) and/or a ``reward`` for a prediction id."""
        return self._put(_Feedback(time.time(), prediction_id, label, reward), 1)

    def _put(self, item: Any, rows: int) -> bool:
        if self._closed:
            raise errors.Conflict("the prediction log is closed")
        self._ensure_thread()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += rows
            return False
        # The writer sleeps until the interval is up; it is woken early only when enough
        # rows wait (waking it for every request costs the server a thread switch each).
        self._pending_rows += rows
        if self._pending_rows >= self.flush_rows:
            self._wake.set()
        return True

    def flush(self, timeout: float = 30.0) -> None:
        """Write everything queued so far; returns when it is on disk."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put(_Flush(done), timeout=timeout)
        self._wake.set()
        if not done.wait(timeout):
            raise TimeoutError("the prediction log did not flush in time")

    def _close_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def close(self) -> None:
        """Flush and stop the writer thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._wake.set()
            self._thread.join(timeout=30)

    # -- the writer thread --------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self._pending_rows = 0
            items: list[Any] = []
            with contextlib.suppress(queue.Empty):
                while True:
                    items.append(self._queue.get_nowait())
            self._write([i for i in items if isinstance(i, LogEntry | _Feedback)])
            for item in items:
                if isinstance(item, _Flush):
                    item.done.set()
            if any(item is None for item in items):
                return

    def _write(self, items: list[Any]) -> None:
        if not items:
            return
        try:
            entries = [i for i in items if isinstance(i, LogEntry)]
            feedback = [i for i in items if isinstance(i, _Feedback)]
            for day, table in _entry_tables(self.model, entries):
                _write_table(table, self.predictions_dir / f"date={day}")
                self.rows_written += table.num_rows
            if feedback:
                for day, table in _feedback_tables(self.model, feedback):
                    _write_table(table, self.feedback_dir / f"date={day}")
        except Exception:  # noqa: BLE001 - never kill the writer; the server keeps serving
            log.exception("could not write %d prediction log entries of %s", len(items),
                          self.model)


def _day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def _entry_tables(model: str, entries: list[LogEntry]) -> list[tuple[str, pa.Table]]:
    """One Arrow table per day and input layout, built column-wise (no per-entry frames)."""
    import pandas as pd

    groups: dict[tuple[Any, ...], list[LogEntry]] = {}
    for e in entries:
        layout = tuple(e.inputs.columns) if isinstance(e.inputs, pd.DataFrame) else "tensor"
        key = (_day(e.timestamp), layout, e.probabilities is not None, e.predictions.ndim)
        groups.setdefault(key, []).append(e)
    return [(key[0], _entries_table(model, group)) for key, group in groups.items()]


def _entries_table(model: str, group: list[LogEntry]) -> pa.Table:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    counts = [len(e.prediction_ids) for e in group]
    n = sum(counts)
    millis = np.repeat([int(e.timestamp * 1000) for e in group], counts)
    columns: dict[str, Any] = {
        "prediction_id": pa.array([i for e in group for i in e.prediction_ids], pa.string()),
        "timestamp": pa.array(millis, pa.timestamp("ms", tz="UTC")),
        "model_name": pa.array([model] * n, pa.string()),
        "model_version": pa.array([e.model_version for e, c in zip(group, counts, strict=True)
                                   for _ in range(c)], pa.int64()),
        "model_digest": pa.array([e.model_digest for e, c in zip(group, counts, strict=True)
                                  for _ in range(c)], pa.string()),
        "deployment": pa.array([e.deployment for e, c in zip(group, counts, strict=True)
                                for _ in range(c)], pa.string()),
        "arm": pa.array([e.arm for e, c in zip(group, counts, strict=True)
                         for _ in range(c)], pa.string()),
        "request_id": pa.array([r for e in group for r in e.request_ids], pa.string()),
        "endpoint": pa.array([r for e in group for r in e.endpoints], pa.string()),
        "latency_ms": pa.array([v for e in group for v in e.latency_ms], pa.float64()),
    }
    if isinstance(group[0].inputs, pd.DataFrame):
        inputs = pd.concat([e.inputs for e in group], ignore_index=True) if len(group) > 1 \
            else group[0].inputs.reset_index(drop=True)
        table = pa.Table.from_pandas(inputs, preserve_index=False)
        for name, column in zip(table.column_names, table.columns, strict=True):
            columns[f"input.{name}"] = column
    else:
        columns["input"] = _rows(np.concatenate([np.asarray(e.inputs).reshape(c, -1) for e, c
                                                 in zip(group, counts, strict=True)]))
    preds = np.concatenate([e.predictions for e in group])
    columns["prediction"] = pa.array(preds) if preds.ndim == 1 else _rows(preds.reshape(n, -1))
    if group[0].probabilities is not None:
        columns["probabilities"] = _rows(np.concatenate([e.probabilities for e in group
                                                         if e.probabilities is not None]))
    columns["explanation"] = _explanation_column(group, counts, n)
    return pa.table(columns)


def _explanation_column(group: list[LogEntry], counts: list[int], n: int) -> pa.Array:
    """Each row's explanation as JSON text (null where the request did not ask for one)."""
    import orjson
    import pyarrow as pa

    if all(e.explanations is None for e in group):
        return pa.nulls(n, pa.string())
    texts: list[str | None] = []
    for e, c in zip(group, counts, strict=True):
        for x in e.explanations or [None] * c:
            texts.append(None if x is None else
                         orjson.dumps(x, option=orjson.OPT_SERIALIZE_NUMPY).decode())
    return pa.array(texts, pa.string())


def _rows(matrix: np.ndarray) -> pa.Array:
    """A 2-D array as a fixed-size list column (one list per row)."""
    import pyarrow as pa

    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def _feedback_tables(model: str, items: list[_Feedback]) -> list[tuple[str, pa.Table]]:
    import orjson
    import pyarrow as pa

    by_day: dict[str, list[_Feedback]] = {}
    for f in items:
        by_day.setdefault(_day(f.timestamp), []).append(f)
    return [(day, pa.table({
        "prediction_id": pa.array([f.prediction_id for f in group], pa.string()),
        "timestamp": pa.array([int(f.timestamp * 1000) for f in group],
                              pa.timestamp("ms", tz="UTC")),
        "model_name": pa.array([model] * len(group), pa.string()),
        # labels may be numbers, strings or booleans: kept as JSON, decoded by read_feedback
        "label": pa.array([None if f.label is None else orjson.dumps(f.label).decode()
                           for f in group], pa.string()),
        "reward": pa.array([f.reward for f in group], pa.float64()),
    })) for day, group in by_day.items()]


def _write_table(table: pa.Table, folder: Path) -> None:
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    name = f"part-{stamp}-{os.getpid()}-{next(_counter):06d}.parquet"
    tmp = folder / f".{name}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, folder / name)


# -- reading -----------------------------------------------------------------------------------


def _since(since: datetime | date | str | None) -> datetime | None:
    if since is None:
        return None
    if isinstance(since, str):
        try:
            since = datetime.fromisoformat(since)
        except ValueError:
            raise errors.InvalidInput(f"since={since!r} is not an ISO date or time",
                                      field="since") from None
    if not isinstance(since, datetime):
        since = datetime(since.year, since.month, since.day)
    return since if since.tzinfo is not None else since.replace(tzinfo=UTC)


def _read_days(root: Path, since: datetime | None) -> pd.DataFrame | None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not root.is_dir():
        return None
    first_day = since.astimezone(UTC).strftime("%Y-%m-%d") if since else ""
    tables: list[pa.Table] = []
    for folder in sorted(root.glob("date=*")):
        if folder.name[len("date="):] < first_day:
            continue  # partition pruning: the whole day is before ``since``
        tables.extend(pq.read_table(f) for f in sorted(folder.glob("part-*.parquet")))
    if not tables:
        return None
    try:
        frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column changed type between versions
        frame = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    if since is not None:
        frame = frame[frame["timestamp"] >= pd.Timestamp(since)]
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def read_predictions(home: str | Path, model: str,
                     since: datetime | date | str | None = None) -> pd.DataFrame:
    """Every logged prediction of ``model`` (at or after ``since``), oldest first.

    ``since`` is a datetime (naive means UTC), a date or an ISO string; day partitions
    before it are not read. Input columns are ``input.<name>``.
    """
    import pandas as pd

    frame = _read_days(predictions_dir(home, model), _since(since))
    if frame is None:
        return pd.DataFrame(columns=["prediction_id", "timestamp", "model_name",
                                     "model_version", "model_digest", "deployment", "arm",
                                     "request_id", "endpoint", "latency_ms", "prediction"])
    for position, name in ((5, "deployment"), (6, "arm")):
        if name not in frame.columns:  # written before rollouts existed
            frame.insert(min(position, len(frame.columns)), name, None)
        else:  # None, not NaN, where files without the column were read alongside
            column = frame[name].astype(object)
            frame[name] = column.where(column.notna(), None)
    return frame


def read_feedback(home: str | Path, model: str,
                  since: datetime | date | str | None = None) -> pd.DataFrame:
    """Every piece of feedback for ``model``: prediction_id, timestamp, label, reward."""
    import orjson
    import pandas as pd

    frame = _read_days(feedback_dir(home, model), _since(since))
    if frame is None:
        return pd.DataFrame(columns=["prediction_id", "timestamp", "model_name", "label",
                                     "reward"])
    # A null label reads back as None, NaN or pd.NA, depending on the files' column types.
    frame["label"] = [None if v is None or v is pd.NA or isinstance(v, float) else
                      orjson.loads(v) for v in frame["label"]]
    return frame
