"""``shipyard users …`` and ``shipyard tokens …``: who may use the server, with which role."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from ._options import Output, output_option

if TYPE_CHECKING:
    from shipyard.auth import AuthService

__all__ = ["users_app", "tokens_app"]

users_app = typer.Typer(help="Users of the server and their roles (viewer, editor, "
                        "approver, admin).", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens: shown once at creation, stored as a hash.",
                         no_args_is_help=True)


def _auth() -> AuthService:
    from shipyard.client import Client

    return Client().auth


@users_app.command("create")
def create_user(name: str = typer.Argument(..., help="User name."),
                role: str = typer.Option("viewer", help="viewer, editor, approver or admin.")
                ) -> None:
    """Create a user."""
    user = _auth().create_user(name, role)
    typer.echo(f"created user {user.name!r} with role {user.role.value}")


@users_app.command("list")
def list_users(output: Output = output_option()) -> None:
    """List users with their role and state."""
    from ._output import console, fmt_time, make_table, print_json

    users = _auth().list_users()
    if output is Output.json:
        print_json([u.model_dump(mode="json") for u in users])
        return
    table = make_table("Users", ["name", "role", "state", "created", "by"])
    for u in users:
        table.add_row(u.name, u.role.value, "disabled" if u.disabled else "active",
                      fmt_time(u.creation_time), u.creator or "")
    console().print(table)


@users_app.command("disable")
def disable_user(name: str = typer.Argument(..., help="User name.")) -> None:
    """Disable a user; their tokens stop working at once."""
    _auth().disable_user(name)
    typer.echo(f"disabled user {name!r}")


@users_app.command("set-role")
def set_role(name: str = typer.Argument(..., help="User name."),
             role: str = typer.Argument(..., help="viewer, editor, approver or admin.")) -> None:
    """Change a user's role."""
    user = _auth().set_role(name, role)
    typer.echo(f"user {user.name!r} now has role {user.role.value}")


@tokens_app.command("create")
def create_token(user: str = typer.Argument(..., help="The user the token acts as."),
                 description: str = typer.Option(None, help="What the token is for."),
                 expires_in_days: float = typer.Option(None, help="Expire after this long.")
                 ) -> None:
    """Create a token and print it once (store it now: only its hash is kept)."""
    new = _auth().create_token(user, description, expires_in_days)
    typer.echo(new.token)
    typer.echo(f"token id {new.token_id} for {new.user_name!r}: shown once, keep it safe",
               err=True)


@tokens_app.command("list")
def list_tokens(user: str = typer.Option(None, help="Only this user's tokens."),
                output: Output = output_option()) -> None:
    """List tokens (ids and metadata, never the secrets)."""
    from ._output import console, fmt_time, make_table, print_json

    tokens = _auth().list_tokens(user)
    if output is Output.json:
        print_json([t.model_dump(mode="json") for t in tokens])
        return
    table = make_table("API tokens", ["id", "user", "state", "created", "expires",
                                      "description"])
    for t in tokens:
        table.add_row(t.token_id, t.user_name, "revoked" if t.revoked else "active",
                      fmt_time(t.creation_time),
                      fmt_time(t.expires_time) if t.expires_time else "never",
                      t.description or "")
    console().print(table)


@tokens_app.command("revoke")
def revoke_token(token_id: str = typer.Argument(..., help="The token's id (see list).")) -> None:
    """Revoke a token."""
    _auth().revoke_token(token_id)
    typer.echo(f"revoked token {token_id}")
