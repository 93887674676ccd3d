"""``shipyard features …``: plan and apply a feature repository, inspect what is registered.

A feature repository is a folder of Python files declaring entities, feature views,
on-demand views and feature services (see ``shipyard.features``); ``REPO_DIR`` defaults to
the current folder. Every change to a definition is stored as a new version; ``plan`` says
which changes are breaking and why, ``describe`` shows a definition with its history.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer

from ._options import Output, output_option

if TYPE_CHECKING:
    from datetime import timedelta

    from shipyard.features._registry import FeatureObject, FeatureRegistry, Plan, PlanItem
    from shipyard.features._repo import Kind

__all__ = ["app", "KindChoice"]

app = typer.Typer(help="Feature store: plan and apply a feature repository, list and "
                  "describe registered definitions.", no_args_is_help=True)


class KindChoice(StrEnum):
    """The kinds of definition (the values of ``shipyard.features`` ``Kind``)."""

    entity = "entity"
    feature_view = "feature_view"
    on_demand_view = "on_demand_view"
    feature_service = "feature_service"


_REPO_DIR = typer.Argument(".", metavar="REPO_DIR",
                           help="Folder of the feature repository (default: current folder).")


def _kind_option(help_text: str) -> Any:
    return typer.Option(None, "--kind", "-k", help=help_text, case_sensitive=False)


def _registry() -> FeatureRegistry:
    from shipyard.client import Client
    from shipyard.features._registry import FeatureRegistry

    client = Client()
    return FeatureRegistry(client.db, client.settings.actor, home=client.settings.home)


@app.command("plan")
def plan(repo_dir: str = _REPO_DIR, output: Output = output_option()) -> None:
    """Show what apply would create or change, and which changes are breaking."""
    from shipyard.features._repo import load_repo

    repo = load_repo(repo_dir)
    _print_plan(_registry().plan(repo), output)


@app.command("apply")
def apply(repo_dir: str = _REPO_DIR, output: Output = output_option()) -> None:
    """Register every new or changed definition of the repository as a new version.

    Nothing is deleted: definitions missing from the repository are listed as not in repo.
    """
    from shipyard.features._repo import load_repo

    repo = load_repo(repo_dir)
    _print_plan(_registry().apply(repo), output)


def _print_plan(result: Plan, output: Output) -> None:
    from ._output import console, make_table, print_json

    if output is Output.json:
        print_json(result.model_dump(mode="json"))
        return
    title = "Applied" if result.applied else "Plan"
    table = make_table(title, ["change", "kind", "name", "version", "details"],
                       no_wrap=["change", "kind", "name", "version"])
    styles = {"create": "green", "update-compatible": "yellow", "update-breaking": "bold red",
              "unchanged": "dim", "not-in-repo": "dim"}
    for item in result.items:
        style = styles[item.change.value]
        table.add_row(f"[{style}]{item.change.value}[/]", item.kind.value, item.name,
                      _versions(item), _details(item))
    out = console()
    out.print(table)
    out.print(result.summary())


def _versions(item: PlanItem) -> str:
    if item.from_version is None:
        return f"new → v{item.to_version}" if item.to_version else ""
    if item.to_version is None or item.to_version == item.from_version:
        return f"v{item.from_version}"
    return f"v{item.from_version} → v{item.to_version}"


def _details(item: PlanItem) -> str:
    lines = [f"BREAKING: {r}" for r in item.reasons]
    lines += [c for c in item.changes if c not in item.reasons]
    if item.change.value == "not-in-repo":
        lines.append("kept in the registry (apply never deletes)")
    return "\n".join(lines)


@app.command("list")
def list_objects(kind: KindChoice = _kind_option("Only this kind."),
                 output: Output = output_option()) -> None:
    """List registered definitions at their latest version."""
    from ._output import console, fmt_time, make_table, print_json

    found = _registry().list(kind.value if kind else None)
    if output is Output.json:
        print_json([o.model_dump(mode="json") for o in found])
        return
    table = make_table("Feature registry", ["kind", "name", "version", "features", "owner",
                                            "created", "digest"], no_wrap=["kind", "name"])
    for o in found:
        table.add_row(o.kind.value, o.name, f"v{o.version}", _features_summary(o),
                      str(o.spec.get("owner", "")), fmt_time(o.creation_time), o.digest[:12])
    console().print(table)


def _features_summary(obj: FeatureObject) -> str:
    if "schema" in obj.spec:
        return ", ".join(f["name"] for f in obj.spec["schema"])
    if obj.kind.value == "feature_service":
        return ", ".join(obj.spec.get("features", []))
    return ", ".join(obj.spec.get("join_keys", []))


def _find(registry: FeatureRegistry, name: str, kind: KindChoice | None) -> Kind:
    from shipyard import errors
    from shipyard.features._repo import Kind

    if kind is not None:
        return Kind(kind.value)
    kinds = [o.kind for o in registry.list() if o.name == name]
    if not kinds:
        raise errors.NotFound(f"{name!r} is not in the feature registry "
                              "(see 'shipyard features list')")
    if len(kinds) > 1:
        raise errors.InvalidInput(f"{name!r} names a {' and a '.join(k.label for k in kinds)}; "
                                  "pick one with --kind", field="kind")
    return kinds[0]


@app.command("show")
def show(name: str = typer.Argument(..., help="Name of the definition."),
         version: int = typer.Option(None, "--version", "-v", min=1,
                                     help="A stored version (default: the latest)."),
         kind: KindChoice = _kind_option("Kind of the definition, when the name is ambiguous."),
         output: Output = output_option()) -> None:
    """Show one version of a definition: its spec as stored, digest and creator."""
    from ._output import console, fmt_time, make_table, print_json

    registry = _registry()
    obj = registry.get_object(_find(registry, name, kind), name, version)
    if output is Output.json:
        print_json(obj.model_dump(mode="json"))
        return
    table = make_table(f"{obj.kind.label} {obj.name} v{obj.version}", ["field", "value"],
                       no_wrap=["field"])
    for key, value in [("digest", obj.digest), ("created", fmt_time(obj.creation_time)),
                       ("creator", obj.creator or "")]:
        table.add_row(key, value)
    for key, value in obj.spec.items():
        table.add_row(key, _spec_value(value))
    console().print(table)


def _spec_value(value: Any) -> str:
    import json

    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v
                                                 for v in value):
        return "\n".join(f"{v['name']}: {v.get('dtype', '')}".rstrip(": ") for v in value)
    if isinstance(value, list):
        return "\n".join(map(str, value))
    if isinstance(value, dict):
        return "\n".join(f"{k}: {v}" for k, v in value.items())
    return value if isinstance(value, str) else json.dumps(value)


@app.command("describe")
def describe(name: str = typer.Argument(..., help="Name of the definition."),
             kind: KindChoice = _kind_option("Kind of the definition, when the name is "
                                             "ambiguous.")) -> None:
    """Describe a definition: features and types, entities, TTL, source, version history."""
    from ._output import console, make_table

    registry = _registry()
    found = _find(registry, name, kind)
    versions = registry.versions(found, name)
    latest = versions[-1]
    definition = latest.definition()
    out = console()
    summary = make_table(f"{found.label} {name} (v{latest.version})", ["field", "value"],
                         no_wrap=["field"])
    for key, value in _summary_rows(definition):
        summary.add_row(key, value)
    out.print(summary)
    schema = getattr(definition, "schema_", None)
    if schema is not None:
        features = make_table("Features", ["feature", "type", "description"],
                              no_wrap=["feature", "type"])
        for f in schema:
            features.add_row(f.name, f.dtype.value, f.description)
        out.print(features)
    _print_history(registry, found, name, versions)


def _summary_rows(definition: Any) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if hasattr(definition, "join_keys"):
        rows += [("join keys", ", ".join(definition.join_keys)),
                 ("value type", definition.value_type.value)]
    if hasattr(definition, "entities"):
        source = definition.source
        where = getattr(source, "path", None) or getattr(source, "query", "")
        rows += [("entities", ", ".join(definition.entities)),
                 ("ttl", _fmt_ttl(definition.ttl)), ("online", str(definition.online).lower()),
                 ("source", f"{source.kind}: {where}"),
                 ("timestamp field", source.timestamp_field)]
    if hasattr(definition, "inputs"):
        rows += [("inputs", "\n".join(definition.inputs)),
                 ("request fields", "\n".join(f"{r.name}: {r.dtype.value}"
                                              for r in definition.request_schema)),
                 ("function", definition.function_name)]
    if hasattr(definition, "features") and not hasattr(definition, "schema_"):
        rows.append(("features", "\n".join(definition.features)))
    rows += [("owner", definition.owner), ("description", definition.description),
             ("tags", ", ".join(f"{k}={v}" for k, v in sorted(definition.tags.items())))]
    return rows


def _fmt_ttl(ttl: timedelta | None) -> str:
    if ttl is None:
        return "none (values never expire)"
    seconds = int(ttl.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def _print_history(registry: FeatureRegistry, kind: Kind, name: str,
                   versions: list[FeatureObject]) -> None:
    from ._output import console, fmt_time, make_table

    table = make_table("Versions", ["version", "created", "creator", "change", "details"],
                       no_wrap=["version", "change"])
    by_version = {o.version: o for o in versions}
    for item in registry.history(kind, name):
        obj = by_version.get(item.to_version or 0)
        table.add_row(f"v{item.to_version}", fmt_time(obj.creation_time) if obj else "",
                      (obj.creator if obj else None) or "", item.change.value, _details(item))
    console().print(table)


@app.command("materialize")
def materialize(end: str = typer.Option(None, help="Window end (ISO time, UTC when naive); "
                                        "default now."),
                start: str = typer.Option(None, help="Window start; default: the beginning."),
                incremental: bool = typer.Option(False, "--incremental",
                                                 help="From where the last run stopped."),
                view: list[str] = typer.Option([], "--view", help="Only these views.")) -> None:
    """Load the latest value per entity of each online view into the online store."""
    from shipyard.client import Client

    from ._output import console, make_table

    def moment(text: str | None) -> Any:
        import pandas as pd

        if text is None:
            return None
        try:
            stamp = pd.Timestamp(text)
        except ValueError as exc:
            raise typer.BadParameter(f"not a time: {text!r}") from exc
        return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).to_pydatetime()

    from datetime import UTC, datetime

    results = Client().feature_store.materialize(
        moment(end) or datetime.now(UTC), moment(start), views=view or None,
        incremental=incremental)
    table = make_table("Materialized", ["view", "version", "window", "rows read",
                                        "entities written"])
    for r in results:
        table.add_row(r.view, str(r.version), f"{r.start or 'beginning'} → {r.end}",
                      f"{r.rows_read:,}", f"{r.entities_written:,}")
    console().print(table)


@app.command("online")
def online(feature: list[str] = typer.Option([], "--feature", "-f",
                                             help="view:feature (repeat)."),
           service: str = typer.Option(None, "--service", help="A feature service instead."),
           entity: list[str] = typer.Option(..., "--entity", "-e", metavar="KEY=VALUE",
                                            help="One entity row, e.g. customer_id=1001 "
                                            "(repeat for more rows)."),
           output: Output = output_option()) -> None:
    """Read features of entities from the online store, with a status per value."""
    from shipyard.client import Client

    from ._output import console, make_table, print_json

    rows = []
    for text in entity:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint="'--entity'")
        rows.append({key: int(value) if value.lstrip("-").isdigit() else value})
    result = Client().feature_store.get_online_features(rows, feature or None,
                                                        feature_service=service)
    if output is Output.json:
        print_json([{"values": v, "statuses": s} for v, s in zip(result.rows, result.statuses,
                                                                  strict=True)])
        return
    names = list(result.statuses[0]) if result.statuses else []
    table = make_table("Online features", ["entity", *names])
    for row, status in zip(result.rows, result.statuses, strict=True):
        table.add_row(", ".join(f"{k}={row[k]}" for k in rows[0]),
                      *[f"{row[n]} ({status[n]})" for n in names])
    console().print(table)
