"""``shipyard experiments …``: list, create, delete, restore and rename experiments."""

from __future__ import annotations

import typer

from ._options import Output, View, output_option, view_option

__all__ = ["app"]

app = typer.Typer(help="Create, list, rename, delete and restore experiments.",
                  no_args_is_help=True)

_REF = typer.Argument(..., metavar="ID_OR_NAME", help="Experiment id or name.")


@app.command("list")
def list_experiments(view: View = view_option("experiments"),
                     output: Output = output_option()) -> None:
    """List experiments with their id, stage, creation time and tags."""
    from ._common import tracking
    from ._output import console, fmt_time, make_table, print_json

    experiments = tracking().list_experiments(view.value)
    if output is Output.json:
        print_json([e.model_dump(mode="json") for e in experiments])
        return
    table = make_table(f"Experiments ({view.value})",
                       ["id", "name", "stage", "created", "last update", "tags"],
                       no_wrap=["id"])
    for e in experiments:
        tags = ", ".join(f"{k}={v}" for k, v in sorted(e.tags.items()))
        table.add_row(e.experiment_id, e.name, e.lifecycle_stage.value,
                      fmt_time(e.creation_time), fmt_time(e.last_update_time), tags)
    console().print(table)


@app.command("create")
def create(name: str = typer.Argument(..., help="Name of the new experiment."),
           tag: list[str] = typer.Option([], "--tag", "-t", metavar="KEY=VALUE",
                                         help="A tag to set; repeat for several.")) -> None:
    """Create an experiment and print its id."""
    from ._common import tracking

    tags = dict(_parse_tag(t) for t in tag)
    exp = tracking().create_experiment(name, tags=tags)
    typer.echo(f"created experiment {exp.name!r} with id {exp.experiment_id}")


def _parse_tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise typer.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint="'--tag'")
    return key.strip(), value


@app.command("delete")
def delete(ref: str = _REF) -> None:
    """Mark an experiment deleted (its runs stay; restore brings it back)."""
    from ._common import resolve_experiment, tracking

    service = tracking()
    exp = resolve_experiment(service, ref)
    service.delete_experiment(exp.experiment_id)
    typer.echo(f"deleted experiment {exp.name!r} (id {exp.experiment_id})")


@app.command("restore")
def restore(ref: str = _REF) -> None:
    """Bring back a deleted experiment."""
    from ._common import resolve_experiment, tracking

    service = tracking()
    exp = resolve_experiment(service, ref)
    service.restore_experiment(exp.experiment_id)
    typer.echo(f"restored experiment {exp.name!r} (id {exp.experiment_id})")


@app.command("rename")
def rename(ref: str = _REF,
           new_name: str = typer.Argument(..., metavar="NEW", help="The new name.")) -> None:
    """Give an experiment a new name (its id and runs stay the same)."""
    from ._common import resolve_experiment, tracking

    service = tracking()
    exp = resolve_experiment(service, ref)
    renamed = service.rename_experiment(exp.experiment_id, new_name)
    typer.echo(f"renamed experiment {exp.name!r} to {renamed.name!r} "
               f"(id {renamed.experiment_id})")
