"""Every native REST route, once: the server mounts them and the remote client calls them.

A route names a service (``tracking``, ``registry``) and one of its public methods; the
arguments are the method's own parameters (path parameters by name, the rest as a JSON
body, or as the query string for GET), and the response is the method's return value as
JSON. Nothing here is written twice: the server and the remote client both read this table
and the methods' signatures.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Route", "ROUTES", "routes_for", "CLIENT_ONLY_PARAMS"]

#: Parameters that only make sense inside one process (e.g. ``validated=True`` from the
#: buffered writer, which already validated): never taken from, nor sent over, the wire.
CLIENT_ONLY_PARAMS = frozenset({"validated"})


@dataclass(frozen=True)
class Route:
    service: str
    name: str
    verb: str
    path: str
    #: the role a caller needs when auth is on: "viewer" (read) or "editor" (write)
    role: str = "viewer"

    @property
    def path_params(self) -> list[str]:
        return [part[1:-1].split(":")[0] for part in self.path.split("/")
                if part.startswith("{") and part.endswith("}")]


def _r(service: str, name: str, verb: str, path: str) -> Route:
    return Route(service, name, verb, f"/api/v1{path}",
                 "viewer" if verb == "GET" or name.startswith(("search", "list")) else "editor")


ROUTES: list[Route] = [
    # -- tracking: experiments
    _r("tracking", "create_experiment", "POST", "/experiments"),
    _r("tracking", "list_experiments", "GET", "/experiments"),
    _r("tracking", "get_experiment_by_name", "GET", "/experiments/by-name/{name}"),
    _r("tracking", "get_experiment", "GET", "/experiments/{experiment_id}"),
    _r("tracking", "get_or_create_experiment", "POST", "/experiments/get-or-create"),
    _r("tracking", "rename_experiment", "POST", "/experiments/{experiment_id}/rename"),
    _r("tracking", "delete_experiment", "POST", "/experiments/{experiment_id}/delete"),
    _r("tracking", "restore_experiment", "POST", "/experiments/{experiment_id}/restore"),
    _r("tracking", "set_experiment_tag", "POST", "/experiments/{experiment_id}/tags"),
    # -- tracking: runs
    _r("tracking", "create_run", "POST", "/runs"),
    _r("tracking", "search_runs", "POST", "/runs/search"),
    _r("tracking", "get_runs", "POST", "/runs/get-many"),
    _r("tracking", "gc_runs", "POST", "/runs/gc"),
    _r("tracking", "get_run", "GET", "/runs/{run_id}"),
    _r("tracking", "end_run", "POST", "/runs/{run_id}/end"),
    _r("tracking", "set_run_name", "POST", "/runs/{run_id}/rename"),
    _r("tracking", "delete_run", "POST", "/runs/{run_id}/delete"),
    _r("tracking", "restore_run", "POST", "/runs/{run_id}/restore"),
    _r("tracking", "log_batch", "POST", "/runs/{run_id}/log-batch"),
    _r("tracking", "delete_tag", "POST", "/runs/{run_id}/delete-tag"),
    _r("tracking", "get_metric_history", "GET", "/runs/{run_id}/metrics/{key}/history"),
    _r("tracking", "log_input", "POST", "/runs/{run_id}/inputs"),
    _r("tracking", "list_artifacts", "GET", "/runs/{run_id}/artifact-list"),
    _r("tracking", "audit_events", "GET", "/audit-events"),
    # -- registry
    _r("registry", "create_model", "POST", "/models"),
    _r("registry", "search_models", "POST", "/models/search"),
    _r("registry", "search_versions", "POST", "/models/versions/search"),
    _r("registry", "register", "POST", "/models/register"),
    _r("registry", "resolve", "GET", "/models/resolve"),
    _r("registry", "lineage", "GET", "/models/lineage"),
    _r("registry", "get_model", "GET", "/models/{name}"),
    _r("registry", "update_model", "POST", "/models/{name}/update"),
    _r("registry", "get_version", "GET", "/models/{name}/versions/{version}"),
    _r("registry", "set_version_status", "POST", "/models/{name}/versions/{version}/status"),
    _r("registry", "archive_version", "POST", "/models/{name}/versions/{version}/archive"),
    _r("registry", "delete_version", "POST", "/models/{name}/versions/{version}/delete"),
    _r("registry", "set_version_tag", "POST", "/models/{name}/versions/{version}/tags"),
    _r("registry", "set_alias", "POST", "/models/{name}/aliases/{alias}"),
    _r("registry", "delete_alias", "POST", "/models/{name}/aliases/{alias}/delete"),
    _r("registry", "alias_history", "GET", "/models/{name}/alias-history"),
    _r("registry", "alias_at", "GET", "/models/{name}/aliases/{alias}/at"),
    # -- deployments (rollouts); the arm-state writes come from the router's workers
    _r("deployments", "create", "POST", "/deployments"),
    _r("deployments", "list", "GET", "/deployments"),
    _r("deployments", "assignment_of", "GET", "/deployment-assignments/{prediction_id}"),
    _r("deployments", "get", "GET", "/deployments/{name}"),
    _r("deployments", "update", "POST", "/deployments/{name}/update"),
    _r("deployments", "step", "POST", "/deployments/{name}/step"),
    _r("deployments", "promote", "POST", "/deployments/{name}/promote"),
    _r("deployments", "rollback", "POST", "/deployments/{name}/rollback"),
    _r("deployments", "stop", "POST", "/deployments/{name}/stop"),
    _r("deployments", "decisions", "GET", "/deployments/{name}/decisions"),
    _r("deployments", "arm_stats", "GET", "/deployments/{name}/arm-stats"),
    _r("deployments", "record_pulls", "POST", "/deployments/{name}/pulls"),
    _r("deployments", "record_reward", "POST", "/deployments/{name}/rewards"),
    _r("deployments", "record_rewards", "POST", "/deployments/{name}/rewards/batch"),
    _r("deployments", "record_evidence", "POST", "/deployments/{name}/evidence"),
    _r("deployments", "evidence", "GET", "/deployments/{name}/evidence"),
    _r("deployments", "record_assignments", "POST", "/deployments/{name}/assignments"),
    _r("deployments", "prune_assignments", "POST", "/deployments/{name}/assignments/prune"),
    # -- feature store (serving reads are a viewer's right, though they are POSTs)
    Route("features", "get_online_features", "POST", "/api/v1/features/online", "viewer"),
    # -- users and tokens (admin only)
    Route("auth", "create_user", "POST", "/api/v1/users", "admin"),
    Route("auth", "list_users", "GET", "/api/v1/users", "admin"),
    Route("auth", "get_user", "GET", "/api/v1/users/{name}", "admin"),
    Route("auth", "set_role", "POST", "/api/v1/users/{name}/role", "admin"),
    Route("auth", "disable_user", "POST", "/api/v1/users/{name}/disable", "admin"),
    Route("auth", "create_token", "POST", "/api/v1/tokens", "admin"),
    Route("auth", "list_tokens", "GET", "/api/v1/tokens", "admin"),
    Route("auth", "revoke_token", "POST", "/api/v1/tokens/{token_id}/revoke", "admin"),
]


def routes_for(service: str) -> list[Route]:
    return [r for r in ROUTES if r.service == service]
