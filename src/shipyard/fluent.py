"""The module-level SDK: ``sy.start_run(...)``, ``sy.log_metric(...)`` and friends.

Calls on an :class:`ActiveRun` are validated at once (a bad key or a conflicting param
raises in the caller) and then buffered; a background writer commits them in batches (see
``docs/durability.md``). With ``SHIPYARD_SYNC_LOGGING=1`` each call commits before it
returns.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard import errors
from shipyard.client import Client, default_client
from shipyard.tracking import RunStatus, TrackingService
from shipyard.tracking import _validation as v

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.models import LoadedModel
    from shipyard.registry import AliasChange, ModelInfo, ModelVersion
    from shipyard.tracking import ArtifactInfo, Run

__all__ = [
    "ActiveRun",
    "start_run",
    "end_run",
    "active_run",
    "set_experiment",
    "log_param",
    "log_params",
    "log_metric",
    "log_metrics",
    "set_tag",
    "set_tags",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_text",
    "log_figure",
    "log_table",
    "log_input",
    "flush",
    "get_run",
    "search_runs",
    "log_model",
    "load_model",
    "register_model",
    "set_alias",
    "get_historical_features",
]


class ActiveRun:
    """A run this process is logging to. Use it as a context manager to end it."""

    def __init__(self, run: Run, client: Client, *, sync: bool) -> None:
        self.info = run
        self.run_id = run.run_id
        self.experiment_id = run.experiment_id
        self._client = client
        self._service = client.tracking
        self._sync = sync
        self._writer = None if sync else _writer_for(client)
        self._params: dict[str, str] = {}
        self._ended = False
        self._sampler: Any = None

    # -- context manager ---------------------------------------------------------------------

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is KeyboardInterrupt:
            status = RunStatus.KILLED
        elif exc_type is not None:
            status = RunStatus.FAILED
        else:
            status = RunStatus.FINISHED
        self.end(status)

    def __repr__(self) -> str:
        return f"<ActiveRun {self.run_id} experiment={self.experiment_id}>"

    # -- logging -------------------------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> Any:
        self.log_params({key: value})
        return value

    def log_params(self, params: dict[str, Any]) -> None:
        clean = {v.check_key("param", k): v.check_param_value(k, val)
                 for k, val in params.items()}
        for key, value in clean.items():
            old = self._params.get(key)
            if old is not None and old != value:
                raise errors.Conflict(
                    f"param {key!r} of run {self.run_id} was logged as {old!r}; params are "
                    f"immutable, so it cannot become {value!r}", field="param")
        if self._writer is None:
            self._service.log_batch(self.run_id, params=clean, validated=True)
        else:
            self._writer.add_params(self.run_id, clean)
        self._params.update(clean)

    def log_metric(self, key: str, value: float, step: int | None = None,
                   timestamp: int | None = None) -> None:
        fvalue, istep = v.check_metric(key, value, step)
        point = (v.check_key("metric", key), fvalue, istep,
                 v.check_timestamp(key, timestamp) if timestamp is not None
                 else int(time.time() * 1000))
        if self._writer is None:
            self._service.log_batch(self.run_id, metrics=[point], validated=True)
        else:
            self._writer.add_metrics(self.run_id, [point])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None,
                    timestamp: int | None = None) -> None:
        ts = (v.check_timestamp("*", timestamp) if timestamp is not None
              else int(time.time() * 1000))
        points = [(v.check_key("metric", k), *v.check_metric(k, val, step), ts)
                  for k, val in metrics.items()]
        if self._writer is None:
            self._service.log_batch(self.run_id, metrics=points, validated=True)
        else:
            self._writer.add_metrics(self.run_id, points)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: dict[str, Any]) -> None:
        clean = {v.check_key("tag", k): v.check_tag_value(k, val) for k, val in tags.items()}
        if self._writer is None:
            self._service.log_batch(self.run_id, tags=clean, validated=True)
        else:
            self._writer.add_tags(self.run_id, clean)

    # -- artifacts and inputs ------------------------------------------------------------------

    def log_artifact(self, local_path: str | os.PathLike[str],
                     artifact_path: str | None = None) -> ArtifactInfo:
        """Store a file as ``<artifact_path>/<file name>`` (or at the top level)."""
        name = Path(local_path).name
        prefix = v.check_artifact_path(artifact_path, allow_empty=True)
        target = f"{prefix}/{name}" if prefix else name
        return self._service.log_artifact_file(self.run_id, local_path, target)

    def log_artifacts(self, local_dir: str | os.PathLike[str],
                      artifact_path: str | None = None) -> list[ArtifactInfo]:
        """Store every file below ``local_dir``, keeping the relative layout."""
        root = Path(local_dir)
        if not root.is_dir():
            raise errors.InvalidInput(f"no such directory: {local_dir}", field="local_dir")
        prefix = v.check_artifact_path(artifact_path, allow_empty=True)
        files = []
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = file.relative_to(root).as_posix()
            # Check every name before storing any, so a bad one leaves nothing half-logged.
            files.append((file, v.check_artifact_path(f"{prefix}/{rel}" if prefix else rel)))
        return [self._service.log_artifact_file(self.run_id, file, target)
                for file, target in files]

    def log_dict(self, data: Any, artifact_file: str) -> ArtifactInfo:
        """Store a dict (or list) as JSON, or YAML when the name ends in .yaml/.yml."""
        from shipyard._artifact_io import dict_bytes

        v.check_artifact_path(artifact_file)
        return self._service.log_artifact_bytes(self.run_id, dict_bytes(data, artifact_file),
                                                artifact_file)

    def log_text(self, text: str, artifact_file: str) -> ArtifactInfo:
        if not isinstance(text, str):
            raise errors.InvalidInput("log_text needs a str", field="text")
        return self._service.log_artifact_bytes(self.run_id, text.encode(), artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> ArtifactInfo:
        """Store a matplotlib figure (png/svg/pdf) or a plotly figure (html/json)."""
        from shipyard._artifact_io import figure_bytes

        v.check_artifact_path(artifact_file)
        return self._service.log_artifact_bytes(self.run_id,
                                                figure_bytes(figure, artifact_file),
                                                artifact_file)

    def log_table(self, df: pd.DataFrame, artifact_file: str) -> ArtifactInfo:
        """Store a DataFrame as Parquet."""
        from shipyard._artifact_io import dataframe_parquet_bytes

        if not artifact_file.endswith(".parquet"):
            raise errors.InvalidInput("log_table writes Parquet: name the file *.parquet",
                                      field="artifact_file")
        v.check_artifact_path(artifact_file)
        return self._service.log_artifact_bytes(self.run_id, dataframe_parquet_bytes(df),
                                                artifact_file)

    def log_input(self, data: Any, *, name: str, context: str = "training",
                  source: str | None = None) -> str:
        """Record a dataset version (content digest, schema, rows) as an input of this run."""
        from shipyard._artifact_io import dataset_fingerprint

        fp = dataset_fingerprint(data)
        return self._service.log_input(self.run_id, name=name, digest=fp["digest"],
                                       source=source, schema=fp["schema"],
                                       num_rows=fp["num_rows"], context=context)

    def log_model(self, model: Any, artifact_path: str = "model", *,
                  input_example: Any = None, signature: Any = None, flavor: str | None = None,
                  registered_model_name: str | None = None) -> ModelInfo:
        """Save ``model`` (any supported flavor) in this run; register it when named."""
        self.flush()  # the registered version snapshots the run's metrics
        return self._client.registry.log_model(
            self.run_id, model, artifact_path, flavor=flavor, input_example=input_example,
            signature=signature, registered_model_name=registered_model_name)

    # -- lifecycle -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Write this run's buffered records now; raises a write error kept from before."""
        if self._writer is not None:
            self._writer.flush(self.run_id)

    def data(self) -> Run:
        """The run as stored now (after flushing)."""
        self.flush()
        return self._service.get_run(self.run_id)

    def end(self, status: RunStatus | str = RunStatus.FINISHED) -> None:
        if self._ended:
            return
        self._ended = True
        if self._sampler is not None:
            self._sampler.stop()
        _pop_run(self)
        if self._writer is None:
            self._service.end_run(self.run_id, status)
        else:  # the last batch and the status change in one transaction
            self._writer.finish(self.run_id, status)


# -- process state ------------------------------------------------------------------------------

_lock = threading.RLock()
_stack: list[ActiveRun] = []
_writers: dict[int, Any] = {}
_experiment: dict[str, str] = {}
#: Experiment name → id, per tracking service (weakly: a client that goes away takes its
#: cache along), with TrackingService.experiment_epoch at the time they were cached.
_experiment_ids: weakref.WeakKeyDictionary[Any, tuple[int, dict[str, str]]] = (
    weakref.WeakKeyDictionary())


def _writer_for(client: Client) -> Any:
    from shipyard.tracking import BatchWriter

    with _lock:
        writer = _writers.get(id(client))
        if writer is not None and writer.service is not client.tracking:
            # The id() of a garbage-collected client, reused by this one: that writer
            # talks to the old client's database.
            writer.close()
            writer = None
        if writer is None:
            writer = _writers[id(client)] = BatchWriter(
                client.tracking, flush_interval=client.settings.flush_interval,
                buffer_size=client.settings.buffer_size)
        return writer


def _pop_run(run: ActiveRun) -> None:
    with _lock:
        if run in _stack:
            _stack.remove(run)


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.RLock()
    _stack.clear()
    _writers.clear()
    _experiment_ids.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


@atexit.register
def _close_at_exit() -> None:
    # The interpreter is going away: keep ending the others whatever one of them raises.
    for run in reversed(list(_stack)):
        with contextlib.suppress(Exception):
            run.end(RunStatus.FINISHED)
    for writer in list(_writers.values()):
        with contextlib.suppress(Exception):
            writer.close()


# -- module-level API ---------------------------------------------------------------------------

def set_experiment(name: str, client: Client | None = None) -> str:
    """Make ``name`` the experiment of later ``start_run`` calls (created if missing)."""
    client = client or default_client()
    exp = client.tracking.get_or_create_experiment(name)
    _experiment["id"] = exp.experiment_id
    return exp.experiment_id


def start_run(experiment: str | None = None, *, run_name: str | None = None,
              nested: bool = False, parent_run_id: str | None = None,
              tags: dict[str, Any] | None = None, log_system_metrics: bool | None = None,
              run_id: str | None = None, client: Client | None = None) -> ActiveRun:
    """Start (or, with ``run_id``, resume) a run and make it the active run.

    ``experiment`` is a name, created if missing; default: the parent's experiment for a
    child run, else the one from :func:`set_experiment`, else ``Default``. Inside an active
    run, pass ``nested=True`` to start a child run.
    """
    client = client or default_client()
    service = client.tracking
    parent = parent_run_id
    with _lock:
        if _stack and not nested and parent is None:
            raise errors.Conflict(
                f"run {_stack[-1].run_id} is already active: end it first or pass nested=True")
        if nested and parent is None and _stack:
            parent = _stack[-1].run_id
    if run_id is not None:
        run = service.get_run(run_id)
        if run.status is not RunStatus.RUNNING:
            service.end_run(run_id, RunStatus.RUNNING)  # this process now owns the run
            run = service.get_run(run_id)
    else:
        run_tags = {**_source_tags(), **(tags or {})}
        name = experiment
        if name is None and parent is None and not _experiment.get("id"):
            name = "Default"
        cached = None if name is None else _cached_experiment_id(service, name)
        if name is not None and cached is not None:
            try:
                run = service.create_run(cached, run_name=run_name, parent_run_id=parent,
                                         tags=run_tags)
            except (errors.NotFound, errors.Conflict):
                # Deleted, or gone with its database: look the name up again.
                _forget_experiment(service, name)
                cached = None
        if cached is None:
            if name is not None:
                exp_id = service.get_or_create_experiment(name).experiment_id
                _cache_experiment_id(service, name, exp_id)
            elif parent is not None:  # a child run lives in its parent's experiment
                exp_id = service.get_run(parent).experiment_id
            else:
                exp_id = _experiment["id"]
            run = service.create_run(exp_id, run_name=run_name, parent_run_id=parent,
                                     tags=run_tags)
    active = ActiveRun(run, client, sync=client.settings.sync_logging)
    sample = client.settings.system_metrics if log_system_metrics is None else log_system_metrics
    if sample:
        from shipyard.tracking import SystemMetricsSampler

        active._sampler = SystemMetricsSampler(active.log_metrics,
                                               client.settings.system_metrics_interval).start()
    with _lock:
        _stack.append(active)
    return active


def _experiment_cache(service: Any) -> dict[str, str]:
    epoch = TrackingService.experiment_epoch
    with _lock:
        try:
            found = _experiment_ids.get(service)
        except TypeError:  # not weakly referenceable: no cache
            return {}
        if found is None or found[0] != epoch:
            found = (epoch, {})
            with contextlib.suppress(TypeError):
                _experiment_ids[service] = found
        return found[1]


def _cached_experiment_id(service: Any, name: str) -> str | None:
    """The id of experiment ``name`` as start_run last found it through ``service``.

    Renames, deletes and restores made by this process clear the cache; a NotFound or
    Conflict from create_run drops the name (see start_run).
    """
    return _experiment_cache(service).get(name)


def _cache_experiment_id(service: Any, name: str, experiment_id: str) -> None:
    _experiment_cache(service)[name] = experiment_id


def _forget_experiment(service: Any, name: str) -> None:
    _experiment_cache(service).pop(name, None)


def active_run() -> ActiveRun | None:
    """The innermost active run of this process, or None."""
    with _lock:
        return _stack[-1] if _stack else None


def _require_run() -> ActiveRun:
    run = active_run()
    if run is None:
        raise errors.Conflict("no active run: call shipyard.start_run() first")
    return run


def end_run(status: RunStatus | str = RunStatus.FINISHED) -> None:
    """End the active run (no-op when there is none)."""
    run = active_run()
    if run is not None:
        run.end(status)


def log_param(key: str, value: Any) -> Any:
    return _require_run().log_param(key, value)


def log_params(params: dict[str, Any]) -> None:
    _require_run().log_params(params)


def log_metric(key: str, value: float, step: int | None = None,
               timestamp: int | None = None) -> None:
    _require_run().log_metric(key, value, step, timestamp)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    _require_run().log_metrics(metrics, step)


def set_tag(key: str, value: Any) -> None:
    _require_run().set_tag(key, value)


def set_tags(tags: dict[str, Any]) -> None:
    _require_run().set_tags(tags)


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> Any:
    return _require_run().log_artifact(local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> Any:
    return _require_run().log_artifacts(local_dir, artifact_path)


def log_dict(data: Any, artifact_file: str) -> Any:
    return _require_run().log_dict(data, artifact_file)


def log_text(text: str, artifact_file: str) -> Any:
    return _require_run().log_text(text, artifact_file)


def log_figure(figure: Any, artifact_file: str) -> Any:
    return _require_run().log_figure(figure, artifact_file)


def log_table(df: Any, artifact_file: str) -> Any:
    return _require_run().log_table(df, artifact_file)


def log_input(data: Any, *, name: str, context: str = "training",
              source: str | None = None) -> str:
    return _require_run().log_input(data, name=name, context=context, source=source)


def flush() -> None:
    """Write every buffered record of this process now."""
    for writer in list(_writers.values()):
        writer.flush()


def get_run(run_id: str) -> Run:
    flush()
    return default_client().tracking.get_run(run_id)


def search_runs(experiment_names: Sequence[str] | None = None, *,
                experiment_ids: Sequence[str | int] | None = None,
                filter_string: str | None = None, order_by: Sequence[str] | None = None,
                max_results: int = 1000, run_view: str = "active_only",
                output_format: str = "pandas", client: Client | None = None) -> Any:
    """Search runs across experiments; a pandas DataFrame (default) or a list of Run objects.

    With neither names nor ids, every experiment is searched. All pages are fetched up to
    ``max_results`` runs.
    """
    if output_format not in ("pandas", "list"):
        raise errors.InvalidInput("output_format must be 'pandas' or 'list'",
                                  field="output_format")
    client = client or default_client()
    flush()
    service = client.tracking
    ids: list[str] | None = list(map(str, experiment_ids)) if experiment_ids else None
    if experiment_names:
        ids = (ids or []) + [service.get_experiment_by_name(n).experiment_id
                             for n in experiment_names]
    runs: list[Run] = []
    token = None
    while True:
        page, token = service.search_runs(ids, filter_string=filter_string, order_by=order_by,
                                          max_results=min(max_results - len(runs), 50_000),
                                          page_token=token, run_view=run_view)
        runs.extend(page)
        if token is None or len(runs) >= max_results:
            break
    if output_format == "list":
        return runs
    import pandas as pd

    return pd.DataFrame([r.flat() for r in runs])


@functools.lru_cache(maxsize=1)
def _source_tags() -> dict[str, str]:
    """The script and, inside a git work tree, the commit and dirty flag (once per process)."""
    import subprocess
    import sys

    tags = {"shipyard.source.name": Path(sys.argv[0]).name if sys.argv and sys.argv[0]
            else "<interactive>"}
    here = Path.cwd().resolve()
    if not any((p / ".git").exists() for p in (here, *here.parents)):
        return tags
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return tags
    tags["shipyard.git.commit"] = commit
    tags["shipyard.git.dirty"] = str(bool(dirty.strip())).lower()
    return tags


def log_model(model: Any, artifact_path: str = "model", *, input_example: Any = None,
              signature: Any = None, flavor: str | None = None,
              registered_model_name: str | None = None) -> ModelInfo:
    """Log ``model`` in the active run (see :meth:`ActiveRun.log_model`)."""
    return _require_run().log_model(model, artifact_path, input_example=input_example,
                                    signature=signature, flavor=flavor,
                                    registered_model_name=registered_model_name)


def load_model(uri: str, client: Client | None = None) -> LoadedModel:
    """Load ``runs:/<run>/<path>``, ``models:/<name>/<version>`` or ``models:/<name>@<alias>``."""
    return (client or default_client()).registry.load_model(uri)


def register_model(model_uri: str, name: str, client: Client | None = None) -> ModelVersion:
    """Register the model logged at ``runs:/<run>/<path>`` as the next version of ``name``."""
    flush()
    return (client or default_client()).registry.register(model_uri, name)


def set_alias(name: str, alias: str, version: int, client: Client | None = None) -> AliasChange:
    """Point ``name@alias`` at ``version``."""
    return (client or default_client()).registry.set_alias(name, alias, version)


def get_historical_features(entity_df: Any, features: list[str] | None = None, *,
                            feature_service: str | None = None, output: str = "pandas",
                            client: Client | None = None, **options: Any) -> Any:
    """Point-in-time correct training data from the feature store.

    Inside an active run, the result is recorded as a dataset input of the run and the
    feature view versions it came from are linked to the run in the lineage graph.
    """
    client = client or default_client()
    store = client.feature_store
    result = store.get_historical_features(entity_df, features, feature_service=feature_service,
                                           output=output, **options)
    run = active_run()
    if run is not None and not isinstance(result, str):
        selection = store.resolve(features, feature_service)
        store.log_training_input(client.tracking, run.run_id, result, selection,
                                 name=f"features:{feature_service or 'selection'}")
    return result
