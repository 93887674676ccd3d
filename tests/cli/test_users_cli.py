"""``shipyard users`` and ``shipyard tokens`` through the in-process runner."""

from __future__ import annotations

import json

from shipyard.client import Client

from .conftest import Invoke
from .test_cli import assert_one_line_error


def test_users_and_tokens_lifecycle(invoke: Invoke, client: Client) -> None:
    created = invoke("users", "create", "ada", "--role", "editor")
    assert created.exit_code == 0 and "role editor" in created.stdout
    token = invoke("tokens", "create", "ada", "--description", "ci")
    assert token.exit_code == 0
    secret = token.stdout.strip()
    assert client.auth.authenticate(secret).name == "ada"
    listed = json.loads(invoke("tokens", "list", "-o", "json").stdout)
    assert [t["user_name"] for t in listed] == ["ada"] and secret not in json.dumps(listed)
    assert invoke("tokens", "revoke", listed[0]["token_id"]).exit_code == 0
    assert invoke("users", "set-role", "ada", "admin").exit_code == 0
    assert invoke("users", "disable", "ada").exit_code == 0
    users = json.loads(invoke("users", "list", "-o", "json").stdout)
    assert users[0]["role"] == "admin" and users[0]["disabled"] is True


def test_bad_role_and_unknown_user_are_one_line_errors(invoke: Invoke) -> None:
    assert_one_line_error(invoke("users", "create", "bob", "--role", "root"), "invalid role")
    assert_one_line_error(invoke("tokens", "create", "nobody"), "does not exist")
