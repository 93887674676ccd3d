"""Turning errors into one line on stderr and an exit code, for every command at once.

:class:`ShipyardGroup` is the click group behind the ``shipyard`` app. Its ``main`` runs
the command tree in click's non-standalone mode and maps what comes out:

* a :class:`~shipyard.errors.ShipyardError` -> ``error: <message>``, exit code from
  :func:`~shipyard.errors.exit_code_for` (2 for bad input, unknown objects, conflicts);
* a usage error (unknown option, bad value, missing argument) -> ``error: <message>`` plus
  a pointer to ``--help``, exit code 2;
* invalid settings (a bad ``SHIPYARD_*`` variable) -> ``error: invalid settings: …``, 2;
* Ctrl-C -> exit code 130.

Only typer is imported here, so ``shipyard --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from shipyard.errors import ShipyardError, exit_code_for

try:  # newer typer vendors click as typer._click
    from typer._click import exceptions as _click_exceptions
except ImportError:  # pragma: no cover - older typer runs on the real click
    import click.exceptions as _click_exceptions  # type: ignore[no-redef]

ClickException: Any = _click_exceptions.ClickException

__all__ = ["ShipyardGroup", "fail", "one_line"]


def one_line(message: str) -> str:
    """``message`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(message).split())


def fail(message: str, code: int) -> None:
    """Print ``error: <message>`` as one line on stderr and exit with ``code``."""
    typer.echo(f"error: {one_line(message)}", err=True)
    sys.exit(code)


class ShipyardGroup(TyperGroup):
    """The root command group: runs the tree and maps errors to one line + an exit code."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False,
                              windows_expand_args=windows_expand_args, **extra)
        except ShipyardError as exc:
            fail(exc.message, exit_code_for(exc))
        except ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help is the message
                _show_help(exc)
                sys.exit(exc.exit_code)
            fail(_usage_message(exc), exc.exit_code)
        except typer.Abort:
            fail("aborted", 1)
        except Exception as exc:
            if not _is_settings_error(exc):
                raise
            fail(_settings_message(exc), 2)
        code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
        if not standalone_mode:
            return rv
        sys.exit(code)


def _is_settings_error(exc: Exception) -> bool:
    # pydantic's ValidationError, raised while reading SHIPYARD_* variables or shipyard.yaml;
    # matched by name so that pydantic is not imported before a command needs it.
    return type(exc).__name__ == "ValidationError" and type(exc).__module__.startswith(
        "pydantic")


def _settings_message(exc: Any) -> str:
    problems = [f"SHIPYARD_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                for e in exc.errors()]
    return "invalid settings: " + "; ".join(problems)


def _show_help(exc: Any) -> None:
    # With rich help, typer printed the help already while building the message.
    text = exc.format_message()
    if text.strip():
        typer.echo(text)


def _usage_message(exc: Any) -> str:
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message = f"{message.rstrip()} (see '{ctx.command_path} --help')"
    return message
