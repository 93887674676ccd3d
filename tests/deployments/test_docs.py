"""The package README and docs/rollouts.md keep up with the code."""

from __future__ import annotations

from pathlib import Path

import shipyard.deployments as deployments
from shipyard.api import routes_for
from shipyard.cli._deployments import app

ROOT = Path(__file__).resolve().parents[2]
ROLLOUTS = (ROOT / "docs" / "rollouts.md").read_text()


def test_the_readme_names_the_public_api() -> None:
    text = (ROOT / "src" / "shipyard" / "deployments" / "README.md").read_text()
    assert [n for n in deployments.__all__ if n not in text] == []
    for name in deployments.__all__:
        assert getattr(deployments, name) is not None


def test_every_route_is_in_the_rollouts_doc() -> None:
    routes = routes_for("deployments")
    assert len(routes) == 18
    missing = [r.name for r in routes if f"`{r.verb} {r.path}`" not in ROLLOUTS
               or f"`{r.name}(" not in ROLLOUTS]
    assert missing == []


def test_every_command_is_in_the_rollouts_doc() -> None:
    names = {c.name for c in app.registered_commands}
    ours = {"create", "update", "list", "show", "promote", "rollback", "stop", "history"}
    assert ours <= names  # the router's commands (serve, analyze) are documented by it
    assert sorted(n for n in ours if f"`shipyard deployments {n}" not in ROLLOUTS) == []


def test_every_strategy_and_guard_metric_is_described() -> None:
    for kind in ("single", "shadow", "canary", "ab", "bandit"):
        assert f"| `{kind}` |" in ROLLOUTS
    for metric in deployments.GUARD_METRICS:
        assert f"`{metric}`" in ROLLOUTS
