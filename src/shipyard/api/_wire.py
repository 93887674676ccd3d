"""The wire format shared by the server and the remote client.

JSON, with one extension: non-finite floats travel as the literals ``NaN``, ``Infinity``
and ``-Infinity`` (what Python's ``json`` reads and writes), because metrics keep them.
Errors travel as ``{"error": {"code": ..., "message": ..., "field": ...}}`` with the HTTP
status of :data:`shipyard.errors.HTTP_STATUS`; :func:`error_from_body` turns that back into
the same exception class on the client.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from datetime import datetime
from functools import lru_cache
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel, TypeAdapter

from shipyard import errors

__all__ = ["encode", "decode", "dumps", "loads", "error_body", "error_from_body"]

_BY_CODE: dict[str, type[errors.ShipyardError]] = {
    cls.code: cls for cls in (errors.NotFound, errors.AlreadyExists, errors.InvalidInput,
                              errors.PermissionDenied, errors.Conflict, errors.IntegrityError,
                              errors.MissingDependency)
}


def encode(value: Any) -> Any:
    """A JSON-able form of a service method's return value."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return encode({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    return value


@lru_cache(maxsize=256)
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def decode(data: Any, annotation: Any) -> Any:
    """``data`` (parsed JSON) as an instance of ``annotation`` (the method's return type)."""
    if annotation is None or annotation is type(None):
        return None
    return _adapter(annotation).validate_python(data)


def dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True, separators=(",", ":")).encode()


def loads(data: bytes | str) -> Any:
    return json.loads(data)


def error_body(exc: errors.ShipyardError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.field:
        body["field"] = exc.field
    return {"error": body}


def error_from_body(status: int, body: Any) -> errors.ShipyardError:
    """The exception a server's error response stands for."""
    info = body.get("error") if isinstance(body, dict) else None
    if not isinstance(info, dict):
        return errors.ShipyardError(f"server answered HTTP {status}: {str(body)[:200]}")
    cls = _BY_CODE.get(str(info.get("code")), errors.ShipyardError)
    if cls is errors.ShipyardError and status == 401:
        cls = errors.PermissionDenied
    return cls(str(info.get("message", f"HTTP {status}")), field=info.get("field"))
