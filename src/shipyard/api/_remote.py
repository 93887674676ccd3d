"""The remote client: the services' own classes, with route methods sent over HTTP.

For each service, :func:`remote_service` builds a subclass of the local class in which
every method named in the route table becomes an HTTP call (arguments bound with the local
method's signature, the response decoded with its return annotation). Methods that are not
routes — ``log_metric`` (→ ``log_batch``), ``log_model``, ``load_model`` — keep their local
code, which now calls the remote methods; artifact transfer is streamed.
"""

from __future__ import annotations

import inspect
import os
import tempfile
import typing
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shipyard import errors

from ._routes import CLIENT_ONLY_PARAMS, Route, routes_for
from ._wire import decode, dumps, encode, error_from_body, loads

__all__ = ["Transport", "remote_service", "RemoteTrackingMixin"]

_CHUNK = 1 << 20


class Transport:
    """One HTTP connection pool to a Shipyard server, with the caller's token."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 60.0) -> None:
        import httpx

        headers = {"User-Agent": "shipyard-python"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def call(self, route: Route, path_args: dict[str, Any], args: dict[str, Any]) -> Any:
        path = route.path
        for name in route.path_params:
            path = path.replace("{" + name + "}", urllib.parse.quote(str(path_args[name]),
                                                                     safe=""))
        if route.verb == "GET":
            params = {k: v for k, v in encode(args).items() if v is not None}
            response = self.request(route.verb, path, params=params)
        else:
            response = self.request(route.verb, path, content=dumps(encode(args)),
                                    headers={"Content-Type": "application/json"})
        return loads(response.content) if response.content else None

    def request(self, verb: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self.http.request(verb, path, **kwargs)
        except httpx.TransportError as exc:
            raise errors.ShipyardError(f"cannot reach the Shipyard server at {self.base_url}: "
                                       f"{exc}") from exc
        if response.status_code >= 400:
            try:
                body = loads(response.content)
            except ValueError:
                body = response.text
            raise error_from_body(response.status_code, body)
        return response


def _route_method(route: Route, local: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(local)
    returns = typing.get_type_hints(local).get("return")

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError as exc:
            raise errors.InvalidInput(f"{route.name}: {exc}") from None
        bound.apply_defaults()
        values = {k: v for k, v in bound.arguments.items() if k not in CLIENT_ONLY_PARAMS}
        values.pop("self")
        path_args = {name: values.pop(name) for name in route.path_params}
        return decode(self._transport.call(route, path_args, values), returns)

    method.__name__ = route.name
    method.__doc__ = local.__doc__
    method.__signature__ = signature  # type: ignore[attr-defined]
    return method


def remote_service(local_cls: type, service: str, transport: Transport,
                   mixin: type | None = None, **attrs: Any) -> Any:
    """An instance of a remote twin of ``local_cls`` whose route methods go over HTTP."""
    methods: dict[str, Any] = {r.name: _route_method(r, getattr(local_cls, r.name))
                               for r in routes_for(service)}
    bases = (mixin, local_cls) if mixin else (local_cls,)
    cls = type(f"Remote{local_cls.__name__}", bases, methods)
    obj: Any = object.__new__(cls)
    obj._transport = transport
    for key, value in attrs.items():
        setattr(obj, key, value)
    return obj


class RemoteTrackingMixin:
    """Artifact transfer for the remote tracking service (streamed, digest-checked)."""

    _transport: Transport

    def log_artifact_file(self, run_id: str, local_path: str | os.PathLike[str],
                          artifact_path: str) -> Any:
        from shipyard.tracking import ArtifactInfo
        from shipyard.tracking import _validation as v

        path = v.check_artifact_path(artifact_path)
        if not Path(local_path).is_file():
            raise errors.InvalidInput(f"no such file: {local_path}", field="local_path")
        with open(local_path, "rb") as fh:
            response = self._transport.request("PUT", self._artifact_url(run_id, path),
                                               content=iter(lambda: fh.read(_CHUNK), b""))
        return ArtifactInfo.model_validate(loads(response.content))

    def log_artifact_bytes(self, run_id: str, data: bytes, artifact_path: str) -> Any:
        from shipyard.tracking import ArtifactInfo
        from shipyard.tracking import _validation as v

        path = v.check_artifact_path(artifact_path)
        response = self._transport.request("PUT", self._artifact_url(run_id, path),
                                           content=data)
        return ArtifactInfo.model_validate(loads(response.content))

    def read_artifact(self, run_id: str, path: str) -> bytes:
        from shipyard.artifacts import sha256_bytes

        response = self._transport.request("GET", self._artifact_url(run_id, path))
        digest = response.headers.get("X-Shipyard-Digest")
        if digest and sha256_bytes(response.content) != digest:
            raise errors.IntegrityError(f"artifact {path!r} of run {run_id} arrived corrupted")
        return bytes(response.content)

    def download_artifacts(self, run_id: str, path: str = "",
                           dst: str | os.PathLike[str] = ".") -> Path:
        from shipyard.tracking import _validation as v

        infos = self.list_artifacts(run_id, path)  # type: ignore[attr-defined]
        if not infos:
            raise errors.NotFound(f"run {run_id} has no artifact {path!r}")
        root = Path(dst)
        for info in infos:
            self._download_one(run_id, info.path, info.digest, root / info.path)
        prefix = v.check_artifact_path(path, allow_empty=True)
        return root / prefix if prefix else root

    def _download_one(self, run_id: str, path: str, digest: str, target: Path) -> None:
        import hashlib

        target.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out, self._transport.http.stream(
                    "GET", self._artifact_url(run_id, path)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_body(response.status_code, loads(response.content))
                for chunk in response.iter_bytes(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != digest:
                raise errors.IntegrityError(f"artifact {path!r} of run {run_id} arrived "
                                            "corrupted (digest mismatch)")
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)

    @staticmethod
    def _artifact_url(run_id: str, path: str) -> str:
        return (f"/api/v1/runs/{urllib.parse.quote(run_id, safe='')}/artifacts/"
                f"{urllib.parse.quote(path)}")
