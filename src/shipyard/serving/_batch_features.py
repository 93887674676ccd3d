"""The feature join of batch scoring: the input carries entity keys, the offline store the
features.

``shipyard predict --features SERVICE`` (or ``auto``: the feature service the model
version lists, see :mod:`._features`) joins the service's features to every chunk with
:meth:`FeatureStore.get_historical_features` — the same point-in-time rules as training
data, no second implementation — and the model scores the joined chunk. Each chunk is
joined on its own (a pyarrow table of its join keys and timestamp), so memory stays a few
chunks whatever the input; the join runs in the read-ahead thread, in DuckDB, without the
GIL, so it overlaps the model's predict.

*When*: the input's timestamp column (``--timestamp-column``; by default
``event_timestamp`` when the input has one) gives each row its own point in time.
Without one, every row is joined *as of* the job's start: the latest values within each
view's TTL. That instant is recorded in ``<output>.parts/_job.json``, so a resumed job
joins its remaining chunks as of the same instant as its first ones.

*Missing values*: a row whose model features came back null (an unknown entity, nothing
before its timestamp, only values older than the TTL) is handled by ``on_missing``:
``error`` (the default) stops the job naming the first entity keys, ``null`` scores the row
with the nulls (the model's signature decides whether it accepts them) and ``skip`` leaves
the row out of the output. Columns the signature marks nullable never count as missing.

Everything that can be checked before scoring is checked on the input's schema, with a
join of zero rows: an unknown service, a missing join key, a timestamp column that holds
no timestamps, a key of another type than the source's, an input column the service
provides.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shipyard import errors

if TYPE_CHECKING:
    import pyarrow as pa

    from shipyard.features import FeatureStore

    from ._model import ServedModel

__all__ = ["AUTO", "DEFAULT_TIMESTAMP", "ON_MISSING", "FeatureJoin", "plan_feature_join"]

AUTO = "auto"
DEFAULT_TIMESTAMP = "event_timestamp"
ON_MISSING = ("error", "null", "skip")
#: the entity timestamp column added when the input has none ("as of the job's start")
_AS_OF = "_shipyard_as_of"
_SHOWN = 5  # entity keys named in the error for missing features


@dataclass
class FeatureJoin:
    """One job's feature join, planned once from the input's schema."""

    store: FeatureStore
    service: str
    views: list[str]  # "view/version" of the feature and on-demand views, as resolved
    join_keys: list[str]
    entity_columns: list[str]  # what each chunk sends to the join: keys, request fields
    timestamp_column: str | None  # None: every row as of ``as_of``
    as_of: datetime
    on_missing: str
    nullable: set[str] = field(default_factory=set)
    #: the joined columns and their Arrow types, from the join of zero rows
    fields: list[pa.Field] = field(default_factory=list)
    #: joined columns whose null makes a row "missing" (the model's, minus nullable ones)
    required: list[str] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def input_only(self) -> list[str]:
        """Input columns that are no model input when the model has no columnar signature."""
        return self.join_keys + ([self.timestamp_column] if self.timestamp_column else [])

    def job(self) -> dict[str, Any]:
        """What makes two jobs' parts interchangeable (besides the input and model)."""
        return {"service": self.service, "views": self.views,
                "timestamp_column": self.timestamp_column, "on_missing": self.on_missing}

    def metadata(self) -> dict[bytes, bytes]:
        """The output's record of where its features came from."""
        meta = {b"shipyard.feature_service": self.service.encode(),
                b"shipyard.feature_views": json.dumps(self.views).encode()}
        if self.timestamp_column is None:
            meta[b"shipyard.features_as_of"] = self.as_of.isoformat().encode()
        else:
            meta[b"shipyard.feature_timestamp_column"] = self.timestamp_column.encode()
        return meta

    # -- per chunk, in the read-ahead thread -------------------------------------------------

    def join(self, chunk: pa.Table) -> pa.Table:
        """``chunk`` with the service's features appended, then the missing-value policy."""
        import pyarrow.compute as pc

        joined = self._historical(chunk)
        table = chunk
        for f in self.fields:
            column = joined.column(f.name)
            table = table.append_column(f, column if column.type == f.type
                                        else column.cast(f.type))
        if not self.required or self.on_missing == "null":
            return table
        missing = _any_null(table, self.required)
        if missing is None:
            return table
        if self.on_missing == "skip":
            return table.filter(pc.invert(missing))
        raise errors.InvalidInput(self._missing_message(table, missing), field="features")

    def _historical(self, chunk: pa.Table) -> pa.Table:
        import pyarrow as pa

        entity = chunk.select(self.entity_columns)
        ts = self.timestamp_column
        if ts is None:
            ts = _AS_OF
            stamps = pa.array([self.as_of] * chunk.num_rows, pa.timestamp("us", tz="UTC"))
            entity = entity.append_column(ts, stamps)
        else:
            entity = entity.append_column(ts, chunk.column(ts))
        result: pa.Table = self.store.get_historical_features(
            entity, feature_service=self.service, timestamp_column=ts, output="arrow")
        return result

    def _missing_message(self, table: pa.Table, missing: pa.ChunkedArray) -> str:
        import pyarrow.compute as pc

        rows = pc.indices_nonzero(missing).to_pylist()
        named = []
        for i in rows[:_SHOWN]:
            keys = ", ".join(f"{k}={table.column(k)[i].as_py()!r}" for k in self.join_keys)
            absent = [c for c in self.required if not table.column(c)[i].is_valid]
            when = "" if self.timestamp_column is None else \
                f" at {table.column(self.timestamp_column)[i].as_py()}"
            named.append(f"{keys}{when} ({', '.join(absent)})")
        more = f" and {len(rows) - _SHOWN} more row(s)" if len(rows) > _SHOWN else ""
        when = f"as of {self.as_of.isoformat()}" if self.timestamp_column is None else \
            f"at the rows' {self.timestamp_column}"
        return (f"the offline store has no value {when} within the views' TTL for "
                f"{'; '.join(named)}{more} (feature service {self.service!r}); "
                "--on-missing null scores such rows with nulls, --on-missing skip leaves "
                "them out")


def _any_null(table: pa.Table, names: list[str]) -> pa.ChunkedArray | None:
    """A mask of the rows with a null in ``names``, or None when there is none (cheap)."""
    import pyarrow.compute as pc

    columns = [table.column(n) for n in names if table.column(n).null_count]
    if not columns:
        return None
    mask = pc.is_null(columns[0])
    for column in columns[1:]:
        mask = pc.or_(mask, pc.is_null(column))
    return mask


# -- planning: resolve the service, check the input, join zero rows --------------------------


def plan_feature_join(model: ServedModel, features: str, schema: pa.Schema, *,
                      timestamp_column: str | None = None, on_missing: str = "error",
                      store: FeatureStore | None = None) -> FeatureJoin:
    """Plan the join of ``features`` (a service name, or ``"auto"``) for an input of
    ``schema``; InvalidInput/NotFound for everything wrong with it, before any scoring."""
    if on_missing not in ON_MISSING:
        raise errors.InvalidInput(f"on_missing must be one of {', '.join(ON_MISSING)}, not "
                                  f"{on_missing!r}", field="on_missing")
    service = _service(model, features)
    lookup = model.features if model.features is not None and \
        model.features.service == service else None
    if store is None:
        store = lookup.store if lookup is not None else _default_store()
    if lookup is None:
        from ._features import FeatureLookup

        lookup = FeatureLookup(store, service, model.signature)  # NotFound: unknown service
    views = [node for _, node in store.resolve(feature_service=service).lineage]
    listed = model.features.service if model.features is not None else None
    if service != listed:  # known to exist now: worth a warning, not an error
        what = f"feature service {listed!r}" if listed else "no feature service"
        warnings.warn(f"{model.name} v{model.version_label} lists {what}; joining "
                      f"{service!r} as asked", UserWarning, stacklevel=2)
    names = list(schema.names)
    absent = [k for k in lookup.join_keys if k not in names]
    if absent:
        raise errors.InvalidInput(
            f"the input lacks the join key column(s) {', '.join(absent)} of feature service "
            f"{service!r} (it has: {', '.join(names)})", field="input")
    provided = [c for c in names if c in lookup.provided]
    if provided:
        raise errors.InvalidInput(
            f"the input already has column(s) {', '.join(provided)}, which feature service "
            f"{service!r} provides; drop or rename them", field="input")
    join = FeatureJoin(
        store=store, service=service, views=views, join_keys=lookup.join_keys,
        entity_columns=list(dict.fromkeys(
            lookup.join_keys + [f for f in lookup.request_types if f in names])),
        timestamp_column=_timestamp_column(schema, timestamp_column),
        as_of=datetime.now(UTC), on_missing=on_missing, nullable=set(lookup.nullable))
    if join.timestamp_column is None and _AS_OF in names:
        raise errors.InvalidInput(f"the input may not have a column named {_AS_OF!r}",
                                  field="input")
    _plan_columns(join, model, schema)
    return join


def _service(model: ServedModel, features: str) -> str:
    listed = model.features.service if model.features is not None else None
    label = f"{model.name} v{model.version_label}"
    if features.strip() in ("", AUTO):
        if listed is None:
            raise errors.InvalidInput(
                f"{label} lists no feature service (no version tag shipyard.feature_service, "
                "no features:<service> input of its training run): name one with --features "
                "SERVICE", field="features")
        return listed
    return features


def _default_store() -> FeatureStore:
    from shipyard.client import default_client

    return default_client().feature_store


def _timestamp_column(schema: pa.Schema, asked: str | None) -> str | None:
    import pyarrow as pa

    if asked is None:
        if DEFAULT_TIMESTAMP not in schema.names:
            return None  # as of the job's start
        asked = DEFAULT_TIMESTAMP
    elif asked not in schema.names:
        raise errors.InvalidInput(f"--timestamp-column {asked!r} is not a column of the input "
                                  f"({', '.join(schema.names)})", field="timestamp_column")
    kind = schema.field(asked).type
    if not pa.types.is_timestamp(kind):
        raise errors.InvalidInput(f"the timestamp column {asked!r} of the input must hold "
                                  f"timestamps, not {kind}", field="timestamp_column")
    return asked


def _plan_columns(join: FeatureJoin, model: ServedModel, schema: pa.Schema) -> None:
    """The joined columns and their types, from a join of zero rows (which also runs the
    offline store's own checks: key types, the sources' columns)."""
    try:
        joined = join._historical(schema.empty_table())
    except errors.InvalidInput as exc:
        message = exc.message.replace("entity_df", "the input")
        raise errors.InvalidInput(f"cannot join feature service {join.service!r}: {message}",
                                  field="input") from exc
    sent = set(join.entity_columns) | {join.timestamp_column or _AS_OF}
    join.fields = [f for f in joined.schema if f.name not in sent]
    wanted = model.columns
    join.required = [f.name for f in join.fields if (wanted is None or f.name in wanted)
                     and f.name not in join.nullable]
