"""Users, tokens and roles: the service, and every route × role through the server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from shipyard import errors
from shipyard.api import ROUTES
from shipyard.auth import Role, role_allows
from shipyard.client import Client
from shipyard.server import create_app

ROLES = ["viewer", "editor", "approver", "admin"]


def test_tokens_authenticate_until_revoked_or_user_disabled(client: Client) -> None:
    auth = client.auth
    auth.create_user("ada", "editor")
    new = auth.create_token("ada", "laptop")
    assert new.token.startswith(f"sy_{new.token_id}_")
    assert auth.authenticate(new.token).name == "ada"
    assert all(new.token not in str(t.model_dump()) for t in auth.list_tokens())
    with pytest.raises(errors.PermissionDenied):
        auth.authenticate(new.token + "x")
    auth.revoke_token(new.token_id)
    with pytest.raises(errors.PermissionDenied, match="revoked"):
        auth.authenticate(new.token)
    other = auth.create_token("ada")
    auth.disable_user("ada")
    with pytest.raises(errors.PermissionDenied, match="disabled"):
        auth.authenticate(other.token)


def test_expired_token_is_refused(client: Client) -> None:
    client.auth.create_user("bob", "viewer")
    new = client.auth.create_token("bob", expires_in_days=-1)
    with pytest.raises(errors.PermissionDenied, match="expired"):
        client.auth.authenticate(new.token)


def test_bad_user_input(client: Client) -> None:
    with pytest.raises(errors.InvalidInput, match="role"):
        client.auth.create_user("eve", "superuser")
    with pytest.raises(errors.InvalidInput, match="user name"):
        client.auth.create_user("has space")
    client.auth.create_user("eve")
    with pytest.raises(errors.AlreadyExists):
        client.auth.create_user("eve")
    with pytest.raises(errors.NotFound):
        client.auth.create_token("nobody")


@pytest.fixture
def secured(client: Client) -> Iterator[tuple[TestClient, dict[str, str]]]:
    tokens = {}
    for role in ROLES:
        client.auth.create_user(f"u-{role}", role)
        tokens[role] = client.auth.create_token(f"u-{role}").token
    with TestClient(create_app(client, auth=True)) as http:
        yield http, tokens


def _url(route) -> str:  # noqa: ANN001
    path = route.path
    for name in route.path_params:
        path = path.replace("{" + name + "}", "1" if name in ("version", "experiment_id")
                            else "x")
    return path


def _call(http: TestClient, route, token: str | None):  # noqa: ANN001
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if route.verb == "GET":
        return http.get(_url(route), headers=headers)
    return http.request(route.verb, _url(route), json={}, headers=headers)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.verb}-{r.name}")
def test_every_route_needs_a_token_and_its_role(secured, route) -> None:  # noqa: ANN001
    http, tokens = secured
    assert _call(http, route, None).status_code == 401
    assert _call(http, route, "sy_bad_token").status_code == 401
    for role in ROLES:
        status = _call(http, route, tokens[role]).status_code
        if role_allows(role, route.role):
            assert status not in (401, 403), (role, route.name, status)
        else:
            assert status == 403, (role, route.name, status)


def test_artifact_routes_and_public_paths(secured) -> None:  # noqa: ANN001
    http, tokens = secured
    url = "/api/v1/runs/" + "0" * 32 + "/artifacts/a.txt"
    assert http.put(url, content=b"x").status_code == 401
    assert http.put(url, content=b"x", headers={
        "Authorization": f"Bearer {tokens['viewer']}"}).status_code == 403
    assert http.put(url, content=b"x", headers={
        "Authorization": f"Bearer {tokens['editor']}"}).status_code == 404  # no such run
    for path in ("/health", "/ready", "/metrics", "/openapi.json"):
        assert http.get(path).status_code == 200


def test_mutations_are_attributed_to_the_authenticated_user(secured, client: Client) -> None:
    http, tokens = secured
    response = http.post("/api/v1/experiments", json={"name": "owned"},
                         headers={"Authorization": f"Bearer {tokens['editor']}"})
    assert response.status_code == 200, response.text
    events = client.audit_events("experiment", response.json()["experiment_id"])
    assert [(e["action"], e["actor"]) for e in events] == [("experiment.create", "u-editor")]


def test_role_order() -> None:
    assert role_allows(Role.ADMIN, Role.EDITOR) and not role_allows(Role.VIEWER, Role.EDITOR)
    assert [r.value for r in Role] == ROLES


def test_remote_client_sends_its_token(client: Client) -> None:
    from .conftest import ServerThread

    client.auth.create_user("remote-editor", "editor")
    token = client.auth.create_token("remote-editor").token
    with ServerThread(create_app(client, auth=True)) as server:
        remote = Client(uri=server.url, token=token)
        exp = remote.create_experiment("via-token")
        assert exp.name == "via-token"
        with pytest.raises(errors.PermissionDenied):
            Client(uri=server.url, token="sy_nope_nope").list_experiments()
        with pytest.raises(errors.PermissionDenied, match="needs admin"):
            remote.auth.list_users()


def test_mlflow_routes_use_roles_and_mlflow_errors(secured) -> None:  # noqa: ANN001
    http, tokens = secured
    url = "/api/2.0/mlflow/experiments/search"
    denied = http.post(url, json={"max_results": 5})
    assert denied.status_code == 401 and denied.json()["error_code"] == "UNAUTHENTICATED"
    viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
    assert http.post(url, json={"max_results": 5}, headers=viewer).status_code == 200
    create = http.post("/api/2.0/mlflow/experiments/create", json={"name": "x"},
                       headers=viewer)
    assert create.status_code == 403 and create.json()["error_code"] == "PERMISSION_DENIED"
