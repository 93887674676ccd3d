"""``shipyard db …``: migrate the metadata database and show its schema revision."""

from __future__ import annotations

import typer

__all__ = ["app", "probe_revision"]

app = typer.Typer(help="Migrate the metadata database and show its schema revision.",
                  no_args_is_help=True)


def probe_revision(url: str) -> str | None:
    """The Alembic revision of the database at ``url`` without migrating (or creating) it;
    None when the database or its ``alembic_version`` table does not exist yet."""
    from pathlib import Path

    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    from shipyard import errors

    sa_url = sa.engine.make_url(url)
    if sa_url.get_backend_name() == "sqlite":
        path = sa_url.database
        if not path or path == ":memory:" or not Path(path).expanduser().exists():
            return None
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except sa.exc.SQLAlchemyError as exc:
        safe = sa_url.render_as_string(hide_password=True)
        raise errors.ShipyardError(f"cannot read the database {safe}: {exc}") from exc
    finally:
        engine.dispose()


def _safe_url(url: str) -> str:
    import sqlalchemy as sa

    return sa.engine.make_url(url).render_as_string(hide_password=True)


@app.command("upgrade")
def upgrade() -> None:
    """Create or migrate the database to the newest schema and print its revision."""
    from shipyard.config import get_settings
    from shipyard.store import Database

    url = get_settings().db_url
    before = probe_revision(url)
    db = Database(url)  # migrates to head on open
    db.upgrade()
    after = db.current_revision()
    if before == after:
        typer.echo(f"{_safe_url(url)} is already at revision {after}")
    else:
        typer.echo(f"upgraded {_safe_url(url)} from {before or 'an empty database'} "
                   f"to revision {after}")


@app.command("current")
def current(check: bool = typer.Option(
        False, "--check", help="Exit with code 1 unless the database is at the newest "
        "revision (for deploy scripts).")) -> None:
    """Print the database's schema revision and whether it is the newest one."""
    from shipyard.config import get_settings
    from shipyard.store import HEAD_REVISION

    url = get_settings().db_url
    revision = probe_revision(url)
    if revision is None:
        state = "not initialized (run: shipyard db upgrade)"
    elif revision == HEAD_REVISION:
        state = "up to date"
    else:
        state = f"behind the newest revision {HEAD_REVISION} (run: shipyard db upgrade)"
    typer.echo(f"database: {_safe_url(url)}")
    typer.echo(f"revision: {revision or 'none'} ({state})")
    if check and revision != HEAD_REVISION:
        raise typer.Exit(1)
