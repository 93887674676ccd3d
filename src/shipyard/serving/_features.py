"""Online feature lookup: requests carry entity keys, the online store supplies the features.

A model version *lists a feature service* when

1. its version tag ``shipyard.feature_service`` names one (an explicit choice; an empty
   value turns the lookup off), or else
2. its training run read its training data with ``get_historical_features(...,
   feature_service=NAME)`` inside the run: that records the dataset input
   ``features:NAME`` (source ``feature-store``) on the run, the same lineage that gives the
   version its ``feature_refs``.

Such a model takes, per row, the service's join keys (``customer_id``) plus the model
inputs the service does not provide (request-time values such as ``loan_amount``, and the
request fields of its on-demand views). The predict thread reads the online store once per
micro-batch: one ``OnlineStore.read`` per feature view for all rows of all requests in it,
against the view versions resolved when the model was loaded (a service with on-demand
views goes through :meth:`FeatureStore.get_online_features`, which runs their functions
and re-reads the registry: slower). It builds the model input from the values it got; that
input, with the looked-up values, is what the prediction log records.

What wins: nothing silently. A request that also sends a value the service provides is
refused (400 naming the columns); a value the store does not have (status ``missing``, or
``outside_ttl`` past the view's TTL) is refused too (400 naming the entity keys, the
features and their status), unless the model's signature says that column may be null. A
request without the join keys is predicted as sent (it must then carry every model input).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shipyard import errors

if TYPE_CHECKING:
    from shipyard.features import FeatureStore
    from shipyard.models import Signature
    from shipyard.registry import ModelVersion

__all__ = ["FeatureLookup", "feature_service_of", "FEATURE_SERVICE_TAG"]

FEATURE_SERVICE_TAG = "shipyard.feature_service"
_DATASET_PREFIX = "features:"
_PRESENT, _MISSING, _OUTSIDE_TTL = "present", "missing", "outside_ttl"  # as FeatureStore's
#: feature value type → the V2 datatype of a join key tensor
_KEY_DATATYPES = {"int32": "INT32", "int64": "INT64", "float32": "FP32", "float64": "FP64",
                  "bool": "BOOL"}


def feature_service_of(version: ModelVersion, tracking: Any) -> str | None:
    """The feature service a model version lists (see the module docstring), or None."""
    tagged = version.tags.get(FEATURE_SERVICE_TAG)
    if tagged is not None:
        return tagged.strip() or None
    if not version.run_id:
        return None
    try:
        run = tracking.get_run(version.run_id)
    except errors.NotFound:
        return None
    services = sorted({i.name[len(_DATASET_PREFIX):] for i in run.inputs
                       if i.source == "feature-store" and i.name.startswith(_DATASET_PREFIX)
                       and i.name != f"{_DATASET_PREFIX}selection"})
    if len(services) > 1:
        raise errors.Conflict(
            f"the training run of {version.name} v{version.version} read several feature "
            f"services ({', '.join(services)}); pick the one to serve with the version tag "
            f"{FEATURE_SERVICE_TAG}", field=FEATURE_SERVICE_TAG)
    return services[0] if services else None


class FeatureLookup:
    """The online features of one served model: what a request sends, what the store adds."""

    def __init__(self, store: FeatureStore, service: str, signature: Signature | None) -> None:
        selection = store.resolve(feature_service=service)  # NotFound for an unknown service
        self.store = store
        self.service = service
        provided: dict[str, None] = {}
        request_fields: dict[str, str] = {}
        for _view, _, names in selection.views:
            provided.update(dict.fromkeys(names))
        for od, _, names in selection.on_demand:
            provided.update(dict.fromkeys(names))
            request_fields.update({f.name: f.dtype.value for f in od.request_schema})
        self.provided = provided
        entities = {o.name: o.definition() for o in store.registry.list("entity")}
        keys: dict[str, str] = {}
        #: (view, version, features, its join keys): resolved once, read per batch
        self.views: list[tuple[Any, int, list[str], list[str]]] = []
        for view, version, names in selection.views:
            view_keys: list[str] = []
            for entity in view.entities:
                found = entities.get(entity)
                if found is None:
                    raise errors.NotFound(f"entity {entity!r} of view {view.name!r} (feature "
                                          f"service {service!r}) is not registered")
                view_keys.extend(found.join_keys)  # type: ignore[union-attr]
                keys.update(dict.fromkeys(found.join_keys, found.value_type.value))  # type: ignore[union-attr]
            self.views.append((view, version, names, view_keys))
        self.on_demand = bool(selection.on_demand)
        self.key_types = keys
        self.join_keys = list(keys)
        columns = [c.name for c in signature.inputs] if signature is not None and isinstance(
            signature.inputs, list) else None
        self.columns = columns
        self.nullable = {c.name for c in signature.inputs if c.nullable} if columns and \
            signature is not None and isinstance(signature.inputs, list) else set()
        #: what the caller sends besides the join keys: model inputs the store does not
        #: provide, and the request fields of on-demand views
        self.request_columns = list(dict.fromkeys(
            [c for c in columns or [] if c not in provided and c not in keys]
            + [f for f in request_fields if f not in keys]))
        self.request_types = request_fields

    # -- on the event loop: cheap checks ---------------------------------------------------

    def wants(self, data: Any) -> bool:
        """Whether a request's ``data`` (a dict of columns) carries the join keys."""
        return isinstance(data, dict) and all(k in data for k in self.join_keys)

    def check(self, data: dict[str, Any]) -> None:
        """Refuse what the store provides and name what the request lacks."""
        clash = [c for c in data if c in self.provided]
        if clash:
            raise errors.InvalidInput(
                f"{', '.join(clash)} come(s) from the feature store (feature service "
                f"{self.service!r}) for this model: send only {self._expected()}",
                field=clash[0])
        missing = [c for c in self.request_columns if c not in data]
        if missing:
            raise errors.InvalidInput(f"missing column(s) {', '.join(missing)}: this model "
                                      f"takes {self._expected()}", field=missing[0])

    def _expected(self) -> str:
        sent = self.join_keys + self.request_columns
        return f"the column(s) {', '.join(sent)}"

    # -- in the predict thread: one read for the whole batch -------------------------------

    def lookup(self, data: dict[str, Any]) -> dict[str, Any]:
        """The model input for a (joined) batch: request columns plus looked-up features."""
        self.check(data)
        keys = [_plain(data[k]) for k in self.join_keys]
        entity_rows = [dict(zip(self.join_keys, values, strict=True))
                       for values in zip(*keys, strict=True)]
        if self.on_demand:  # the facade runs the on-demand functions (and re-resolves)
            request_data = {f: _plain(data[f]) for f in self.request_types if f in data}
            online = self.store.get_online_features(entity_rows, feature_service=self.service,
                                                    request_data=request_data or None)
            rows, statuses = online.rows, online.statuses
        else:
            rows, statuses = self._read(keys, len(entity_rows))
        needed = [c for c in (self.columns or self.provided) if c in self.provided]
        self._refuse_missing(statuses, entity_rows, needed)
        if self.columns is None:  # no columnar signature: the request columns, then features
            names = [c for c in data if c not in self.join_keys] + list(self.provided)
        else:
            names = self.columns
        return {c: data[c] if c in data else [row.get(c) for row in rows] for c in names}

    def _read(self, keys: list[list[Any]],
              n: int) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """One online read per view for all ``n`` rows, with the facade's statuses."""
        rows: list[dict[str, Any]] = [{} for _ in range(n)]
        statuses: list[dict[str, str]] = [{} for _ in range(n)]
        by_key = dict(zip(self.join_keys, keys, strict=True))
        now = datetime.now(UTC)
        for view, version, names, view_keys in self.views:
            columns = [by_key[k] for k in view_keys]
            entity_keys = list(zip(*columns, strict=True)) if len(columns) > 1 else columns[0]
            records = self.store.online.read(view, names, entity_keys, version=version)
            for i, record in enumerate(records):
                stamp = record.event_timestamp if record is not None else None
                expired = stamp is not None and view.ttl is not None and now - stamp > view.ttl
                for name in names:
                    value = None if record is None or expired else record.values.get(name)
                    rows[i][name] = value
                    statuses[i][name] = (_OUTSIDE_TTL if expired else
                                         _MISSING if value is None else _PRESENT)
        return rows, statuses

    def _refuse_missing(self, statuses: list[dict[str, str]],
                        entity_rows: list[dict[str, Any]], needed: list[str]) -> None:
        problems = []
        for entity, status in zip(entity_rows, statuses, strict=True):
            bad = [f"{c} ({status.get(c, 'missing')})" for c in needed
                   if status.get(c) != _PRESENT and c not in self.nullable]
            if bad:
                key = ", ".join(f"{k}={v!r}" for k, v in entity.items())
                problems.append(f"{key}: {', '.join(bad)}")
        if problems:
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise errors.InvalidInput(
                f"the online store has no usable value for {'; '.join(problems[:5])}{more} "
                f"(feature service {self.service!r}); materialize or push the entities' "
                "features first", field=self.join_keys[0])

    # -- what the V2 metadata lists --------------------------------------------------------

    def request_inputs(self, column_datatype: dict[str, str]) -> list[dict[str, Any]]:
        """V2 input metadata: the join keys and the columns the request must send."""
        inputs = [{"name": k, "datatype": _KEY_DATATYPES.get(t, "BYTES"), "shape": [-1]}
                  for k, t in self.key_types.items()]
        for name in self.request_columns:
            datatype = column_datatype.get(name) or _KEY_DATATYPES.get(
                self.request_types.get(name, ""), "BYTES")
            inputs.append({"name": name, "datatype": datatype, "shape": [-1]})
        return inputs


def _plain(values: Any) -> list[Any]:
    """Plain Python values (numpy tensors from V2 become ints, floats, strings)."""
    return values.tolist() if hasattr(values, "tolist") else list(values)
