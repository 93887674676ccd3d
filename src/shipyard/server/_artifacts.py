"""Artifact upload and download: streamed, size-limited, digest-checked."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from shipyard import errors
from shipyard.api import dumps, encode

__all__ = ["upload_endpoint", "download_endpoint", "MAX_UPLOAD_BYTES"]

MAX_UPLOAD_BYTES = int(os.environ.get("SHIPYARD_MAX_UPLOAD_MB", "2048")) * 2**20
_CHUNK = 1 << 20


def upload_endpoint(get_tracking: Callable[[Request], Any]) -> Callable[..., Any]:
    async def upload_artifact(request: Request) -> Response:
        """Store the request body as artifact ``path`` of ``run_id`` (streamed to disk)."""
        run_id, path = request.path_params["run_id"], request.path_params["path"]
        tracking = get_tracking(request)
        fd, tmp = tempfile.mkstemp(prefix="shipyard-upload-")
        try:
            size = 0
            with os.fdopen(fd, "wb") as fh:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > MAX_UPLOAD_BYTES:
                        raise errors.InvalidInput(f"upload is over the {MAX_UPLOAD_BYTES} byte "
                                                  "limit", field="body")
                    fh.write(chunk)
            info = await run_in_threadpool(tracking.log_artifact_file, run_id, tmp, path)
        finally:
            os.unlink(tmp)
        return Response(dumps(encode(info)), media_type="application/json")

    return upload_artifact


def download_endpoint(get_tracking: Callable[[Request], Any]) -> Callable[..., Any]:
    async def download_artifact(request: Request) -> Response:
        """Stream one artifact file; ``X-Shipyard-Digest`` lets the client verify it."""
        run_id, path = request.path_params["run_id"], request.path_params["path"]
        tracking = get_tracking(request)
        infos = await run_in_threadpool(tracking.list_artifacts, run_id, path)
        match = [a for a in infos if a.path == path.strip("/")]
        if not match:
            raise errors.NotFound(f"run {run_id} has no artifact file {path!r}")
        info = match[0]
        handle = await run_in_threadpool(tracking.artifacts._open, info.digest)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while True:
                    chunk = await run_in_threadpool(handle.read, _CHUNK)
                    if not chunk:
                        break
                    yield chunk
            finally:
                handle.close()

        return StreamingResponse(chunks(), media_type="application/octet-stream",
                                 headers={"X-Shipyard-Digest": info.digest,
                                          "Content-Length": str(info.size)})

    return download_artifact
