"""The error hierarchy and its one mapping to CLI exit codes and HTTP status codes."""

from __future__ import annotations

import pytest

from shipyard import errors
from shipyard.errors import EXIT_CODES, HTTP_STATUS, exit_code_for

ALL = [errors.ShipyardError, errors.NotFound, errors.AlreadyExists, errors.InvalidInput,
       errors.PermissionDenied, errors.Conflict, errors.IntegrityError,
       errors.MissingDependency]


def _http_status_for(error: errors.ShipyardError) -> int:
    return next(HTTP_STATUS[c] for c in type(error).__mro__ if c in HTTP_STATUS)


@pytest.mark.parametrize(
    ("cls", "exit_code", "http", "code"),
    [
        (errors.InvalidInput, 2, 400, "INVALID_PARAMETER_VALUE"),
        (errors.NotFound, 2, 404, "RESOURCE_DOES_NOT_EXIST"),
        (errors.AlreadyExists, 2, 409, "RESOURCE_ALREADY_EXISTS"),
        (errors.Conflict, 2, 409, "INVALID_STATE"),
        (errors.PermissionDenied, 3, 403, "PERMISSION_DENIED"),
        (errors.MissingDependency, 4, 501, "MISSING_DEPENDENCY"),
        (errors.IntegrityError, 5, 500, "DATA_INTEGRITY"),
        (errors.ShipyardError, 1, 500, "INTERNAL_ERROR"),
    ],
)
def test_mapping(cls: type[errors.ShipyardError], exit_code: int, http: int, code: str) -> None:
    error = cls("message")
    assert exit_code_for(error) == exit_code
    assert HTTP_STATUS[cls] == http
    assert _http_status_for(error) == http
    assert error.code == code


def test_every_error_is_mapped_and_public() -> None:
    assert set(EXIT_CODES) == set(ALL) == set(HTTP_STATUS)
    assert {c.__name__ for c in ALL} <= set(errors.__all__)
    assert all(issubclass(c, errors.ShipyardError) for c in ALL)
    assert len({c.code for c in ALL}) == len(ALL)
    assert all(400 <= s < 600 for s in HTTP_STATUS.values())


def test_a_subclass_gets_its_nearest_parents_mapping() -> None:
    class ModelNotFound(errors.NotFound):
        pass

    class Custom(errors.ShipyardError):
        pass

    assert exit_code_for(ModelNotFound("m")) == 2
    assert _http_status_for(ModelNotFound("m")) == 404
    assert ModelNotFound("m").code == "RESOURCE_DOES_NOT_EXIST"
    assert exit_code_for(Custom("c")) == 1


def test_to_dict_names_the_field() -> None:
    error = errors.InvalidInput("bad name", field="name")
    assert error.to_dict() == {"error_code": "INVALID_PARAMETER_VALUE", "message": "bad name",
                               "field": "name"}
    assert errors.NotFound("gone").to_dict() == {"error_code": "RESOURCE_DOES_NOT_EXIST",
                                                 "message": "gone"}
    assert str(error) == "bad name"
    assert error.field == "name"
