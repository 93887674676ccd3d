"""``shipyard server``: the REST API over the configured stores."""

from __future__ import annotations

import typer

__all__ = ["server"]


def server(host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
           port: int = typer.Option(5000, help="TCP port."),
           workers: int = typer.Option(1, min=1, help="Worker processes."),
           log_level: str = typer.Option("warning", help="uvicorn log level."),
           auth: bool = typer.Option(False, "--auth", help="Require API tokens and check "
                                     "roles (same as SHIPYARD_AUTH=1).")) -> None:
    """Serve the tracking and registry API (/api/v1, /openapi.json, /health, /metrics)."""
    import os

    from shipyard.client import Client
    from shipyard.config import reset_settings
    from shipyard.server import serve

    if auth:
        os.environ["SHIPYARD_AUTH"] = "1"  # read by every worker process's settings
        reset_settings()
    client = Client()
    if client.is_remote:
        raise typer.BadParameter("SHIPYARD_URI is set: a server serves local stores, unset it")
    client.db  # migrate once before the workers start  # noqa: B018
    typer.echo(f"Shipyard server on http://{host}:{port} (database "
               f"{client.settings.db_url.split('@')[-1]}, artifacts "
               f"{client.settings.artifacts_uri}, auth "
               f"{'on' if client.settings.auth else 'off'})", err=True)
    serve(host=host, port=port, workers=workers, log_level=log_level)
