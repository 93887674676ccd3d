"""Running the server with uvicorn."""

from __future__ import annotations

__all__ = ["serve"]


def serve(host: str = "127.0.0.1", port: int = 5000, workers: int = 1,
          log_level: str = "warning") -> None:
    """Serve the app on ``host:port`` with ``workers`` processes (blocks)."""
    import uvicorn

    uvicorn.run("shipyard.server._factory:app", host=host, port=port, workers=workers,
                factory=True, log_level=log_level, lifespan="off")
