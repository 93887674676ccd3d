"""The feature store facade: registered definitions → training data, online store, serving.

``FeatureStore`` ties the pieces together: the registry says what a feature is (latest
version of each view), the offline store builds point-in-time correct training data, the
online store holds the latest value per entity for serving, and on-demand views run the
same Python function in both paths. Functions of on-demand views come from the feature
repository (``repo_path``); the registry keeps only their source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard import errors

from ._definitions import (
    Entity,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    parse_feature_ref,
)

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.store import Database

    from ._online import OnlineStore
    from ._registry import FeatureRegistry

__all__ = ["FeatureStore", "OnlineFeatures", "FeatureSelection"]

PRESENT, MISSING, OUTSIDE_TTL = "present", "missing", "outside_ttl"


@dataclass
class FeatureSelection:
    """What a request resolves to: views (with versions) and their features, on-demand views."""

    views: list[tuple[FeatureView, int, list[str]]] = field(default_factory=list)
    on_demand: list[tuple[OnDemandFeatureView, int, list[str]]] = field(default_factory=list)

    @property
    def lineage(self) -> list[tuple[str, str]]:
        nodes = [("feature_view", f"{v.name}/{ver}") for v, ver, _ in self.views]
        nodes += [("on_demand_view", f"{v.name}/{ver}") for v, ver, _ in self.on_demand]
        return nodes


@dataclass
class OnlineFeatures:
    """Online values for each entity row: value, status and event timestamp per feature."""

    rows: list[dict[str, Any]]
    statuses: list[dict[str, str]]
    event_timestamps: list[dict[str, datetime | None]]

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows)


class FeatureStore:
    """Training data, materialization and online reads over the registered definitions."""

    def __init__(self, db: Database, registry: FeatureRegistry, *, online_url: str | None = None,
                 repo_path: str | Path | None = None) -> None:
        self.db = db
        self.registry = registry
        self.online_url = online_url
        self.repo_path = Path(repo_path) if repo_path else None
        self._online: OnlineStore | None = None
        self._functions: dict[str, Any] | None = None

    # -- resolution --------------------------------------------------------------------------

    def resolve(self, features: list[str] | None = None,
                feature_service: str | None = None) -> FeatureSelection:
        """The latest registered views for feature references or a feature service."""
        if (features is None) == (feature_service is None):
            raise errors.InvalidInput("pass either features=[...] or feature_service=...",
                                      field="features")
        if feature_service is not None:
            service = self.registry.get("feature_service", feature_service)
            assert isinstance(service, FeatureService)
            features = service.features
        assert features is not None
        wanted: dict[str, list[str] | None] = {}
        for ref in features:
            view, feature = parse_feature_ref(ref)
            current = wanted.setdefault(view, [])
            if feature is None:
                wanted[view] = None
            elif current is not None and feature not in current:
                current.append(feature)
        selection = FeatureSelection()
        for name, names in wanted.items():
            self._add(selection, name, names)
        return selection

    def _add(self, selection: FeatureSelection, name: str, names: list[str] | None) -> None:
        for kind in ("feature_view", "on_demand_view"):
            try:
                obj = self.registry.get_object(kind, name)
            except errors.NotFound:
                continue
            definition = obj.definition()
            known = definition.features  # type: ignore[union-attr]
            chosen = list(known) if names is None else names
            unknown = [f for f in chosen if f not in known]
            if unknown:
                raise errors.InvalidInput(f"view {name!r} has no feature(s) {unknown}; it has "
                                          f"{known}", field="features")
            if kind == "feature_view":
                selection.views.append((definition, obj.version, chosen))  # type: ignore[arg-type]
            else:
                selection.on_demand.append((definition, obj.version, chosen))  # type: ignore[arg-type]
            return
        raise errors.NotFound(f"no feature view or on-demand view {name!r} is registered "
                              "(run shipyard features apply)")

    def _entities(self) -> dict[str, Entity]:
        return {o.name: o.definition() for o in self.registry.list("entity")}  # type: ignore[misc]

    def _function(self, view: OnDemandFeatureView) -> Any:
        if self._functions is None:
            if self.repo_path is None:
                raise errors.Conflict(f"on-demand view {view.name!r} needs its function: "
                                      "open the FeatureStore with repo_path=<feature repo>")
            from ._repo import load_repo

            repo = load_repo(self.repo_path)
            self._functions = {n: v.function for n, v in repo.on_demand_views.items()}
        if view.name not in self._functions:
            raise errors.NotFound(f"on-demand view {view.name!r} is not in {self.repo_path}")
        return self._functions[view.name]

    def _with_inputs(self, selection: FeatureSelection) -> FeatureSelection:
        """Add the views that on-demand views read (their features are dropped later)."""
        extra = [ref for od, _, _ in selection.on_demand for ref in od.inputs]
        if not extra:
            return selection
        have = {(v.name, f) for v, _, fs in selection.views for f in fs}
        needed = [r for r in extra if (parse_feature_ref(r)[0], parse_feature_ref(r)[1])
                  not in have]
        merged = FeatureSelection(list(selection.views), list(selection.on_demand))
        if needed:
            for view, version, names in self.resolve(features=needed).views:
                merged.views.append((view, version, names))
        return merged

    # -- offline -----------------------------------------------------------------------------

    def get_historical_features(self, entity_df: Any, features: list[str] | None = None, *,
                                feature_service: str | None = None,
                                timestamp_column: str = "event_timestamp",
                                exclude_created_after: bool = False, output: str = "pandas",
                                output_path: str | None = None) -> Any:
        """Point-in-time correct training data (see docs/features.md for the exact rules)."""
        from ._offline import historical_features

        selection = self.resolve(features, feature_service)
        full = self._with_inputs(selection)
        result = historical_features(
            entity_df, [(v, names) for v, _, names in full.views], entities=self._entities(),
            timestamp_column=timestamp_column, exclude_created_after=exclude_created_after,
            output="pandas" if selection.on_demand else output,
            output_path=None if selection.on_demand else output_path)
        if not selection.on_demand:
            return result
        result = self._apply_on_demand(selection, result)
        if output_path is not None:
            result.to_parquet(output_path, index=False)
            return output_path
        if output == "arrow":
            import pyarrow as pa

            return pa.Table.from_pandas(result, preserve_index=False)
        return result

    def log_training_input(self, tracking: Any, run_id: str, frame: Any,
                           selection: FeatureSelection, name: str) -> str:
        """Record training data as a dataset input of ``run_id`` and link the feature view
        versions it came from to the run (the registry then links model versions to them)."""
        from shipyard._artifact_io import dataset_fingerprint
        from shipyard.store import add_edge

        if hasattr(frame, "to_pandas"):  # Arrow
            frame = frame.to_pandas()
        fp = dataset_fingerprint(frame)
        dataset_id: str = tracking.log_input(run_id, name=name, digest=fp["digest"],
                                             schema=fp["schema"], num_rows=fp["num_rows"],
                                             source="feature-store", context="training")
        with self.db.write() as conn:
            for node in selection.lineage:
                add_edge(conn, node, "input_of", ("run", run_id))
        return dataset_id

    def _apply_on_demand(self, selection: FeatureSelection, frame: pd.DataFrame) -> Any:
        import pandas as pd

        for view, _, names in selection.on_demand:
            out = self._function(view)(frame)
            if not isinstance(out, pd.DataFrame):
                raise errors.InvalidInput(f"on-demand view {view.name!r} must return a "
                                          "DataFrame", field="function")
            missing = [n for n in names if n not in out.columns]
            if missing:
                raise errors.InvalidInput(f"on-demand view {view.name!r} did not return "
                                          f"{missing}", field="function")
            frame = frame.assign(**{n: out[n].to_numpy() for n in names})
        return frame

    # -- online ------------------------------------------------------------------------------

    @property
    def online(self) -> OnlineStore:
        if self._online is None:
            from ._online import open_online_store

            self._online = open_online_store(self.online_url)
        return self._online

    def _join_keys(self, view: FeatureView) -> list[str]:
        entities = self._entities()
        keys: list[str] = []
        for name in view.entities:
            if name not in entities:
                raise errors.NotFound(f"entity {name!r} of view {view.name!r} is not registered")
            keys.extend(entities[name].join_keys)
        return keys

    def materialize(self, end: datetime, start: datetime | None = None, *,
                    views: list[str] | None = None, incremental: bool = False,
                    progress: bool = True) -> list[Any]:
        """Load the latest value per entity of each online view into the online store."""
        from ._materialize import materialize, materialize_incremental, read_source_window

        results = []
        for obj in self.registry.list("feature_view"):
            view = obj.definition()
            assert isinstance(view, FeatureView)
            if not view.online or (views is not None and view.name not in views):
                continue
            keys = self._join_keys(view)
            if incremental:
                results.append(materialize_incremental(
                    self.db, self.online, None, view, obj.version, read_source_window, end,
                    progress, join_keys=keys))
            else:
                results.append(materialize(self.db, self.online, None, view, obj.version,
                                           read_source_window, start, end, progress,
                                           join_keys=keys))
        return results

    def push(self, view_name: str, rows: Any, *, to_offline: bool = False) -> int:
        """Write fresh rows of a view to the online store now (and its offline source)."""
        from ._materialize import push

        obj = self.registry.get_object("feature_view", view_name)
        view = obj.definition()
        assert isinstance(view, FeatureView)
        return push(self.online, view, rows, join_keys=self._join_keys(view),
                    version=obj.version, to_offline=to_offline)

    def get_online_features(self, entity_rows: list[dict[str, Any]],
                            features: list[str] | None = None, *,
                            feature_service: str | None = None,
                            request_data: dict[str, list[Any]] | None = None) -> OnlineFeatures:
        """Latest values for each entity row, with a status per value (present, missing,
        outside_ttl) and the event timestamp; on-demand features computed on the fly."""
        if not isinstance(entity_rows, list) or not all(isinstance(r, dict) for r in entity_rows):
            raise errors.InvalidInput("entity_rows must be a list of {join_key: value} objects",
                                      field="entity_rows")
        selection = self.resolve(features, feature_service)
        full = self._with_inputs(selection)
        rows = [dict(r) for r in entity_rows]
        statuses: list[dict[str, str]] = [{} for _ in rows]
        stamps: list[dict[str, datetime | None]] = [{} for _ in rows]
        now = datetime.now(UTC)
        for view, version, names in full.views:
            self._read_view(view, version, names, rows, statuses, stamps, now)
        if selection.on_demand:
            self._online_on_demand(selection, rows, statuses, request_data)
        return OnlineFeatures(rows, statuses, stamps)

    def _read_view(self, view: FeatureView, version: int, names: list[str],
                   rows: list[dict[str, Any]], statuses: list[dict[str, str]],
                   stamps: list[dict[str, datetime | None]], now: datetime) -> None:
        keys = self._join_keys(view)
        missing = [k for k in keys if any(k not in r for r in rows)]
        if missing:
            raise errors.InvalidInput(f"entity rows need the join key(s) {missing} for view "
                                      f"{view.name!r}", field="entity_rows")
        records = self.online.read(view, names, [tuple(r[k] for k in keys) for r in rows],
                                   version=version)
        for i, record in enumerate(records):
            ts = record.event_timestamp if record is not None else None
            expired = (ts is not None and view.ttl is not None and now - ts > view.ttl)
            for name in names:
                value = None if record is None else record.values.get(name)
                rows[i][name] = None if expired else value
                statuses[i][name] = (OUTSIDE_TTL if expired else
                                     MISSING if value is None else PRESENT)
                stamps[i][name] = ts

    def _online_on_demand(self, selection: FeatureSelection, rows: list[dict[str, Any]],
                          statuses: list[dict[str, str]],
                          request_data: dict[str, list[Any]] | None) -> None:
        import pandas as pd

        frame = pd.DataFrame(rows)
        for name, values in (request_data or {}).items():
            if len(values) != len(rows):
                raise errors.InvalidInput(f"request_data[{name!r}] has {len(values)} values "
                                          f"for {len(rows)} entity rows", field="request_data")
            frame[name] = values
        computed = self._apply_on_demand(selection, frame)
        for _view, _, names in selection.on_demand:
            for i in range(len(rows)):
                for name in names:
                    value = computed[name].iloc[i]
                    value = None if pd.isna(value) else value.item() if hasattr(
                        value, "item") else value
                    rows[i][name] = value
                    statuses[i][name] = MISSING if value is None else PRESENT
