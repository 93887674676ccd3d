"""The app factory uvicorn imports in each worker process."""

from __future__ import annotations

from fastapi import FastAPI

from ._app import create_app


def app() -> FastAPI:
    return create_app()
