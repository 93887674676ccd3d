"""The error hierarchy of Shipyard, mapped once to CLI exit codes and HTTP status codes.

Services raise these; stores translate driver errors into them; interfaces map them with
:data:`EXIT_CODES` / :data:`HTTP_STATUS` and never by inspecting messages.
"""

from __future__ import annotations

__all__ = [
    "ShipyardError",
    "NotFound",
    "AlreadyExists",
    "InvalidInput",
    "PermissionDenied",
    "Conflict",
    "IntegrityError",
    "MissingDependency",
    "EXIT_CODES",
    "HTTP_STATUS",
]


class ShipyardError(Exception):
    """Base class: every error Shipyard raises on purpose derives from it."""

    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str]:
        body = {"error_code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return body


class NotFound(ShipyardError):
    """The named object does not exist (or was deleted and the call needs it alive)."""

    code = "RESOURCE_DOES_NOT_EXIST"


class AlreadyExists(ShipyardError):
    """An object with that unique name or id exists already."""

    code = "RESOURCE_ALREADY_EXISTS"


class InvalidInput(ShipyardError):
    """The caller's input is malformed: bad name, wrong type, bad filter, bad path."""

    code = "INVALID_PARAMETER_VALUE"


class PermissionDenied(ShipyardError):
    """The caller may not do this."""

    code = "PERMISSION_DENIED"


class Conflict(ShipyardError):
    """The request contradicts stored state (e.g. re-logging a param with another value)."""

    code = "INVALID_STATE"


class IntegrityError(ShipyardError):
    """Stored data failed a check: an artifact whose bytes do not match its digest."""

    code = "DATA_INTEGRITY"


class MissingDependency(ShipyardError):
    """An optional dependency is not installed; the message names the pip extra."""

    code = "MISSING_DEPENDENCY"


#: Exit code of the CLI for each error class (checked in MRO order, most specific first).
EXIT_CODES: dict[type[ShipyardError], int] = {
    InvalidInput: 2,
    NotFound: 2,
    AlreadyExists: 2,
    Conflict: 2,
    PermissionDenied: 3,
    MissingDependency: 4,
    IntegrityError: 5,
    ShipyardError: 1,
}

#: HTTP status for each error class.
HTTP_STATUS: dict[type[ShipyardError], int] = {
    InvalidInput: 400,
    NotFound: 404,
    AlreadyExists: 409,
    Conflict: 409,
    PermissionDenied: 403,
    MissingDependency: 501,
    IntegrityError: 500,
    ShipyardError: 500,
}


def exit_code_for(error: ShipyardError) -> int:
    """The CLI exit code for ``error``: the entry of its nearest class in :data:`EXIT_CODES`."""
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1
