"""MLflow's artifact proxy (``mlflow-artifacts:/``) over Shipyard's content-addressed store.

A run's ``artifact_uri`` is ``mlflow-artifacts:/<experiment_id>/<run_id>/artifacts``; the
client uploads each file with ``PUT /api/2.0/mlflow-artifacts/artifacts/<that path>/<file>``,
streamed here to a temporary file and stored with ``TrackingService.log_artifact_file``.
Downloads stream the object and check its SHA-256 before the last bytes leave, so a corrupt
object ends in a broken transfer, never in silently wrong bytes.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from shipyard import errors

from .._artifacts import MAX_UPLOAD_BYTES
from ._http import Args, Ctx, json_response, not_implemented, response_for, services
from ._ids import ExperimentIds, artifact_uri, check_relative, parse_artifact_path

__all__ = ["listing", "upload", "download", "list_proxy", "delete_proxy", "list_run_artifacts",
           "server_info"]

_CHUNK = 1 << 20


def listing(infos: list[Any], prefix: str, *, full: bool) -> list[dict[str, Any]]:
    """The direct children of ``prefix`` among a run's artifact files (all under ``prefix``).

    ``full``: paths relative to the run's root (``artifacts/list``) rather than to ``prefix``
    (the proxy's list, which answers base names as MLflow's server does).
    """
    if prefix and len(infos) == 1 and infos[0].path == prefix:  # a file, not a folder
        return [{"path": prefix if full else posixpath.basename(prefix), "is_dir": False,
                 "file_size": infos[0].size}]
    files: list[dict[str, Any]] = []
    folders: set[str] = set()
    for info in infos:
        rest = info.path[len(prefix) + 1:] if prefix else info.path
        head, sep, _ = rest.partition("/")
        if sep:
            folders.add(head)
        else:
            files.append({"path": head, "is_dir": False, "file_size": info.size})
    entries = files + [{"path": name, "is_dir": True} for name in folders]
    if full and prefix:
        for entry in entries:
            entry["path"] = f"{prefix}/{entry['path']}"
    return sorted(entries, key=lambda e: e["path"])


async def upload(request: Request) -> Response:
    """Store the request body as one artifact file of the run the path names."""
    try:
        _, run_id, rel = parse_artifact_path(request.path_params["path"])
        if not rel:
            raise errors.InvalidInput("the artifact path needs a file name", field="path")
        tracking = services(request)["tracking"]
        await run_in_threadpool(tracking.get_run, run_id)  # fail before reading the body
        fd, tmp = tempfile.mkstemp(prefix="shipyard-mlflow-upload-")
        try:
            size = 0
            with os.fdopen(fd, "wb") as fh:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > MAX_UPLOAD_BYTES:
                        raise errors.InvalidInput(
                            f"upload is over the {MAX_UPLOAD_BYTES} byte limit", field="body")
                    fh.write(chunk)
            await run_in_threadpool(tracking.log_artifact_file, run_id, tmp, rel)
        finally:
            os.unlink(tmp)
    except Exception as exc:  # noqa: BLE001 - MLflow's error format for every failure
        return response_for(exc, request)
    return json_response({})


async def download(request: Request) -> Response:
    """Stream one artifact file, digest-checked."""
    try:
        _, run_id, rel = parse_artifact_path(request.path_params["path"])
        tracking = services(request)["tracking"]
        infos = await run_in_threadpool(tracking.list_artifacts, run_id, rel)
        match = [a for a in infos if a.path == rel]
        if not rel or not match:
            raise errors.NotFound(f"run {run_id} has no artifact file {rel!r}")
        info = match[0]
        store = tracking.artifacts
        handle = await run_in_threadpool(store.fs.open, store.object_path(info.digest), "rb")
    except FileNotFoundError:
        return response_for(errors.NotFound("the artifact's object is missing from the store"),
                            request)
    except Exception as exc:  # noqa: BLE001
        return response_for(exc, request)

    async def chunks() -> AsyncIterator[bytes]:
        digest = hashlib.sha256()
        try:
            pending = await run_in_threadpool(handle.read, _CHUNK)
            while pending:
                following = await run_in_threadpool(handle.read, _CHUNK)
                digest.update(pending)
                if not following and digest.hexdigest() != info.digest:
                    raise errors.IntegrityError(  # the transfer breaks before its last bytes
                        f"artifact {rel!r} of run {run_id} does not match its digest")
                yield pending
                pending = following
        finally:
            handle.close()

    return StreamingResponse(chunks(), media_type="application/octet-stream",
                             headers={"Content-Length": str(info.size),
                                      "X-Shipyard-Digest": info.digest})


def list_proxy(ctx: Ctx, a: Args) -> Any:
    """``GET mlflow-artifacts/artifacts?path=<experiment>/<run>/artifacts/<dir>``."""
    path = check_relative(a.text("path") or "")
    if path.count("/") < 2:  # the root or an experiment: nothing is listed above a run
        return {"files": []}
    _, run_id, rel = parse_artifact_path(path)
    return {"files": listing(ctx.tracking.list_artifacts(run_id, rel), rel, full=False)}


def delete_proxy(ctx: Ctx, a: Args) -> Any:
    raise not_implemented("deleting artifacts (Shipyard's artifacts are immutable)")


def list_run_artifacts(ctx: Ctx, a: Args) -> Any:
    """``GET /api/2.0/mlflow/artifacts/list?run_id=&path=``: paths relative to the run root."""
    run_id = a.text("run_id") or a.req("run_uuid")
    rel = check_relative(a.text("path") or "")
    run = ctx.tracking.get_run(run_id)
    eid = ExperimentIds(ctx.tracking).to_mlflow(run.experiment_id)
    return {"root_uri": artifact_uri(eid, run_id),
            "files": listing(ctx.tracking.list_artifacts(run_id, rel), rel, full=True)}


def server_info(ctx: Ctx, a: Args) -> Any:
    """What MLflow's client probes before large transfers: no multipart, no workspaces."""
    return {"store_type": "SqlStore", "workspaces_enabled": False,
            "multipart_uploads_enabled": False, "multipart_downloads_enabled": False}
