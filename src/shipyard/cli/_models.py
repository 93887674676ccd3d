"""``shipyard models …``: registered models, versions, aliases, lineage and packaging.

A model reference is ``NAME`` (the model), ``NAME/VERSION``, ``NAME/latest`` or
``NAME@ALIAS``; the ``models:/`` prefix is optional.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ._options import Output, output_option

if TYPE_CHECKING:
    from shipyard.registry import AliasChange, ModelVersion, RegistryService

__all__ = ["app"]

app = typer.Typer(help="Registered models: versions, aliases, lineage, download, packaging.",
                  no_args_is_help=True)

_VERSION_REF = typer.Argument(..., metavar="MODEL_REF",
                              help="NAME/VERSION, NAME/latest or NAME@ALIAS.")


def _uri(ref: str) -> str:
    return ref if ref.startswith(("models:/", "runs:/")) else f"models:/{ref}"


def _registry() -> RegistryService:
    from shipyard.client import Client

    return Client().registry


@app.command("list")
def list_models(name_like: str = typer.Option(None, "--name-like",
                                              help="SQL LIKE pattern, e.g. 'credit%'."),
                output: Output = output_option()) -> None:
    """List registered models with their latest version and aliases."""
    from ._output import console, fmt_time, make_table, print_json

    models = _registry().search_models(name_like=name_like)
    if output is Output.json:
        print_json([m.model_dump(mode="json") for m in models])
        return
    table = make_table("Registered models", ["name", "latest", "aliases", "owner", "updated",
                                             "description"], no_wrap=["name"])
    for m in models:
        aliases = ", ".join(f"{a}→v{v}" for a, v in sorted(m.aliases.items()))
        table.add_row(m.name, str(m.latest_version or "-"), aliases, m.owner or "",
                      fmt_time(m.last_update_time), m.description or "")
    console().print(table)


@app.command("show")
def show(ref: str = typer.Argument(..., metavar="MODEL_REF",
                                   help="NAME, NAME/VERSION or NAME@ALIAS."),
         output: Output = output_option()) -> None:
    """Show a registered model, or one version in full (digest, signature, environment)."""
    from ._output import print_json

    registry = _registry()
    if "/" not in ref.removeprefix("models:/") and "@" not in ref:
        model = registry.get_model(ref.removeprefix("models:/"))
        if output is Output.json:
            print_json(model.model_dump(mode="json"))
        else:
            _print_versions(registry.search_versions(name=model.name), f"{model.name}: "
                            f"{model.description or 'no description'}")
        return
    version = registry.resolve(_uri(ref))
    if output is Output.json:
        print_json(version.model_dump(mode="json"))
        return
    _print_version(version)


def _print_version(version: ModelVersion) -> None:
    from ._output import console, fmt_time, make_table

    table = make_table(f"{version.name} v{version.version}", ["field", "value"],
                       no_wrap=["field"])
    rows = [("status", version.status.value), ("aliases", ", ".join(version.aliases)),
            ("flavor", version.flavor), ("digest", version.digest), ("source", version.source),
            ("run", version.run_id or ""), ("creator", version.creator or ""),
            ("created", fmt_time(version.creation_time)),
            ("code", f"{version.code_commit or '-'}"
                     f"{' (dirty)' if version.code_dirty else ''}"),
            ("python", version.environment.get("python", "")),
            ("requirements", "\n".join(version.environment.get("requirements", []))),
            ("metrics", "\n".join(f"{k}={v:.4g}" for k, v in sorted(version.metrics.items())))]
    if version.signature and isinstance(version.signature.get("inputs"), list):
        rows.append(("inputs", "\n".join(f"{c['name']}: {c['type']}"
                                         for c in version.signature["inputs"])))
    for key, value in rows:
        table.add_row(key, value)
    console().print(table)


@app.command("versions")
def versions(name: str = typer.Argument(..., help="Registered model name."),
             output: Output = output_option()) -> None:
    """List the versions of a model."""
    from ._output import print_json

    registry = _registry()
    registry.get_model(name)
    found = registry.search_versions(name=name)
    if output is Output.json:
        print_json([v.model_dump(mode="json") for v in found])
        return
    _print_versions(found, f"Versions of {name}")


def _print_versions(found: list[ModelVersion], title: str) -> None:
    from ._output import console, fmt_time, make_table

    table = make_table(title, ["version", "status", "aliases", "flavor", "digest", "run",
                               "created"], no_wrap=["version", "digest"])
    for v in found:
        table.add_row(str(v.version), v.status.value, ", ".join(v.aliases), v.flavor,
                      v.digest[:12], (v.run_id or "")[:12], fmt_time(v.creation_time))
    console().print(table)


@app.command("register")
def register(source: str = typer.Argument(..., help="runs:/<run_id>/<path> of a logged model."),
             name: str = typer.Argument(..., help="Registered model name.")) -> None:
    """Register a logged model as the next version of NAME."""
    version = _registry().register(source, name)
    typer.echo(f"registered {version.name} v{version.version} (digest {version.digest[:12]})")


@app.command("alias")
def alias(name: str = typer.Argument(..., help="Registered model name."),
          alias_name: str = typer.Argument(..., metavar="ALIAS", help="e.g. champion."),
          version: int = typer.Argument(None, help="Version to point at (omit with --delete)."),
          delete: bool = typer.Option(False, "--delete", help="Remove the alias."),
          history: bool = typer.Option(False, "--history", help="Show every move of it."),
          reason: str = typer.Option(None, "--reason", help="Recorded in the history.")) -> None:
    """Set, move, delete an alias, or show its history."""
    registry = _registry()
    if history:
        _print_history(registry.alias_history(name, alias_name), f"{name}@{alias_name}")
        return
    if delete:
        change = registry.delete_alias(name, alias_name, reason=reason)
    elif version is None:
        raise typer.BadParameter("give a VERSION, or --delete / --history",
                                 param_hint="'VERSION'")
    else:
        change = registry.set_alias(name, alias_name, version, reason=reason)
    before = f"v{change.from_version}" if change.from_version else "unset"
    after = f"v{change.to_version}" if change.to_version else "unset"
    typer.echo(f"{name}@{alias_name}: {before} → {after}")


def _print_history(changes: list[AliasChange], title: str) -> None:
    from ._output import console, fmt_time, make_table

    table = make_table(f"History of {title}", ["when", "from", "to", "by", "reason"])
    for c in changes:
        table.add_row(fmt_time(c.timestamp), str(c.from_version or "-"),
                      str(c.to_version or "-"), c.actor, c.reason or "")
    console().print(table)


@app.command("archive")
def archive(ref: str = _VERSION_REF) -> None:
    """Archive a version (refused while an alias points at it)."""
    registry = _registry()
    version = registry.resolve(_uri(ref))
    registry.archive_version(version.name, version.version)
    typer.echo(f"archived {version.name} v{version.version}")


@app.command("download")
def download(ref: str = _VERSION_REF,
             out: Path = typer.Option(..., "--out", "-o", help="Folder to write the model to.",
                                      file_okay=False)) -> None:
    """Copy a version's verified model folder to OUT."""
    import shutil

    from shipyard import errors

    if out.exists() and any(out.iterdir()):
        raise errors.AlreadyExists(f"output folder {out} is not empty")
    loaded = _registry().load_model(_uri(ref))
    shutil.copytree(loaded.path, out, dirs_exist_ok=True)
    typer.echo(f"wrote {loaded.flavor} model (digest {loaded.digest[:12]}) to {out}")


@app.command("lineage")
def lineage(ref: str = _VERSION_REF, output: Output = output_option()) -> None:
    """Print version → run → params/metrics → datasets → code commit."""
    from ._output import console, print_json

    graph = _registry().lineage(_uri(ref))
    if output is Output.json:
        print_json(graph)
        return
    from shipyard.registry import lineage_tree

    console().print(lineage_tree(graph))


@app.command("package")
def package(ref: str = _VERSION_REF,
            out: Path = typer.Option(..., "--out", "-o", help="Empty folder to write to.",
                                     file_okay=False),
            replicas: int = typer.Option(2, help="Minimum replicas."),
            max_replicas: int = typer.Option(6, help="Maximum replicas for the autoscaler."),
            image: str = typer.Option(None, help="Image name for the manifests.")) -> None:
    """Write model + requirements.txt + Dockerfile + Kubernetes manifests to OUT."""
    from shipyard.registry import PackageOptions, package_model

    files = package_model(_registry(), _uri(ref), out,
                          PackageOptions(replicas=replicas, max_replicas=max_replicas,
                                         image=image))
    for rel in sorted(files):
        typer.echo(f"wrote {files[rel]}")
