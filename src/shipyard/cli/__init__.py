"""The ``shipyard`` command line: experiments, runs, the database and the quickstart.

Public API: :data:`app` (the typer app, for tests and embedding) and :func:`main` (the
console-script entry point). This module imports typer only; every command imports what
it needs (rich, the client, SQLAlchemy, pandas) when it runs, so ``shipyard --help``
answers at once. Adding a command group: a ``_<group>.py`` module with its own
``typer.Typer``, registered below with ``app.add_typer``, then regenerate ``docs/cli.md``
(``python -m shipyard.cli._docgen --write``).
"""

from __future__ import annotations

from collections.abc import Sequence

import typer

from shipyard._version import __version__
from shipyard.errors import ShipyardError, exit_code_for

from . import _db, _deployments, _experiments, _features, _models, _runs, _users
from ._errors import ShipyardGroup, fail
from ._quickstart import quickstart
from ._serve import predict, serve
from ._server import server
from ._stream import stream

__all__ = ["app", "main"]

app = typer.Typer(
    name="shipyard",
    cls=ShipyardGroup,
    help="Shipyard: track, register, serve and monitor models. Runs on a local home folder "
    "(SHIPYARD_HOME, default ./.shipyard or ~/.shipyard) unless SHIPYARD_DB / "
    "SHIPYARD_ARTIFACTS point elsewhere.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(_experiments.app, name="experiments")
app.add_typer(_runs.app, name="runs")
app.add_typer(_models.app, name="models")
app.add_typer(_features.app, name="features")
app.add_typer(_deployments.app, name="deployments")
app.add_typer(_users.users_app, name="users")
app.add_typer(_users.tokens_app, name="tokens")
app.add_typer(_db.app, name="db")
app.command("quickstart")(quickstart)
app.command("server")(server)
app.command("serve")(serve)
app.command("predict")(predict)
app.command("stream")(stream)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"shipyard {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", "-V", is_eager=True,
                                       callback=_print_version,
                                       help="Print the version and exit.")) -> None:
    """Shipyard: track, register, serve and monitor models."""


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``) and exit.

    Errors never show a traceback: a :class:`~shipyard.errors.ShipyardError` or a usage
    error prints one ``error: …`` line on stderr and exits with 2 for bad input (see
    :func:`shipyard.errors.exit_code_for`).
    """
    try:
        typer.main.get_command(app).main(args=argv, prog_name="shipyard")
    except ShipyardError as exc:  # raised outside a command, e.g. while building the tree
        fail(exc.message, exit_code_for(exc))
