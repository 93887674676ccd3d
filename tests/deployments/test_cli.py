"""``shipyard deployments …`` through the CLI runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from shipyard.cli import app
from shipyard.client import Client

from .conftest import MODEL, register_versions

CANARY_ARGS = ["--model", MODEL, "--arm", "champion=@champion", "--arm", "challenger=3",
               "--strategy", "canary", "--percent", "10", "--steps", "10,25,50,100",
               "--step-interval", "300", "--guard", "error_rate<=0.01",
               "--guard", "latency_p99_ms<=50"]


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["deployments", *args], env={"COLUMNS": "250"})


@pytest.fixture
def client(client: Client) -> Client:
    register_versions(client.registry)
    return client


def test_create_canary_show_and_history(client: Client) -> None:
    result = run("create", "live", *CANARY_ARGS, "--manual")
    assert result.exit_code == 0, result.output
    assert "created deployment live (revision 1)" in result.output
    dep = client.deployments.get("live")
    assert dep.auto is False and dep.strategy.kind == "canary"
    assert dep.strategy.stable == "champion" and dep.strategy.canary == "challenger"
    assert dep.strategy.steps == [10, 25, 50, 100] and dep.strategy.step_interval_s == 300
    assert [str(g) for g in dep.guards] == ["error_rate<=0.01", "latency_p99_ms<=50"]
    client.deployments.record_reward("live", "challenger", 0.25, success=False)
    shown = run("show", "live")
    assert shown.exit_code == 0, shown.output
    for text in ("canary: 10% to challenger (stable champion)", "@champion", "v1", "v3",
                 "error_rate<=0.01", "create", "manual decisions", "0.25"):
        assert text in shown.output, text
    as_json = json.loads(run("show", "live", "-o", "json").output)
    assert as_json["arm_stats"]["challenger"]["failures"] == 1.0
    assert as_json["decisions"][0]["action"] == "create"
    listed = run("list")
    assert "live" in listed.output and "champion=v1, challenger=v3" in listed.output


def test_update_overlays_options_on_the_current_strategy(client: Client) -> None:
    assert run("create", "live", *CANARY_ARGS).exit_code == 0
    result = run("update", "live", "--percent", "25", "--reason", "looks good")
    assert result.exit_code == 0, result.output
    dep = client.deployments.get("live")
    assert dep.strategy.percent == 25 and dep.strategy.steps == [10, 25, 50, 100]
    assert dep.revision == 2 and dep.auto is True
    result = run("update", "live", "--strategy", "ab", "--weights", "champion=70,challenger=30",
                 "--manual")
    assert result.exit_code == 0, result.output
    dep = client.deployments.get("live")
    assert dep.strategy.weights == {"champion": 70, "challenger": 30} and not dep.auto
    history = run("history", "live")
    assert history.exit_code == 0 and "looks good" in history.output
    assert [d["action"] for d in json.loads(run("history", "live", "-o", "json").output)] == [
        "create", "update", "update"]


def test_other_strategies_take_defaults_from_the_arms(client: Client) -> None:
    arms = ["--model", MODEL, "--arm", "a=1", "--arm", "b=2", "--arm", "c=3"]
    assert run("create", "sh", *arms, "--strategy", "shadow").exit_code == 0
    shadow = client.deployments.get("sh").strategy
    assert (shadow.primary, shadow.shadows) == ("a", ["b", "c"])
    assert run("create", "ab", *arms, "--strategy", "ab").exit_code == 0
    assert client.deployments.get("ab").strategy.weights == {"a": 1, "b": 1, "c": 1}
    assert run("create", "bt", *arms, "--strategy", "bandit", "--algorithm", "epsilon_greedy",
               "--epsilon", "0.2").exit_code == 0
    bandit = client.deployments.get("bt").strategy
    assert (bandit.arms, bandit.algorithm, bandit.epsilon) == (["a", "b", "c"],
                                                               "epsilon_greedy", 0.2)
    assert run("create", "one", *arms).exit_code == 0
    assert client.deployments.get("one").strategy.arm == "a"


def test_create_from_a_spec_file(client: Client, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"model: {MODEL}\narms: {{champion: '@champion', challenger: 3}}\n"
                    "strategy: {kind: canary, stable: champion, canary: challenger, "
                    "percent: 5, steps: [5, 50, 100]}\nguards: ['accuracy>=0.9@50']\n")
    result = run("create", "file", "--file", str(spec), "--percent", "7")
    assert result.exit_code == 0, result.output
    dep = client.deployments.get("file")
    assert dep.strategy.percent == 7 and dep.guards[0].min_samples == 50


def test_promote_and_rollback(client: Client) -> None:
    assert run("create", "live", *CANARY_ARGS).exit_code == 0
    assert run("create", "other", *CANARY_ARGS).exit_code == 0
    result = run("rollback", "other", "--reason", "too slow")
    assert result.exit_code == 0 and "all traffic to champion (v1)" in result.output
    result = run("promote", "live", "challenger")
    assert result.exit_code == 0, result.output
    assert "credit@champion: v1 -> v3" in result.output
    assert client.registry.get_model(MODEL).aliases["champion"] == 3
    assert run("stop", "live").exit_code == 0


@pytest.mark.parametrize(("args", "message"), [
    (["create", "x", "--model", MODEL, "--arm", "champion"], "NAME=VALUE"),
    (["create", "x", "--model", MODEL, "--arm", "a=1", "--strategy", "canary",
      "--percent", "10"], "second arm"),
    (["create", "x", *CANARY_ARGS[:6], "--strategy", "canary", "--percent", "120"],
     "strategy.percent"),
    (["create", "x", "--model", MODEL, "--arm", "a=@nope"], "no alias 'nope'"),
    (["create", "x", "--model", MODEL, "--arm", "a=1", "--guard", "cpu<=1"], "cpu"),
    (["create", "x", "--arm", "a=1"], "--model"),
    (["create", "x", "--model", MODEL, "--arm", "a=1", "--arm", "b=2", "--strategy", "ab",
      "--weights", "a=1,b=x"], "weights"),
    (["create", "x", "--model", MODEL, "--arm", "a=1", "--strategy", "nope"], "nope"),
    (["show", "ghost"], "does not exist"),
    (["promote", "ghost", "a"], "does not exist"),
    (["create", "x", "--file", "missing.yaml"], "cannot read"),
])
def test_bad_input_is_one_line_and_exit_2(client: Client, args: list[str],
                                          message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert client.deployments.list() == []


def test_relative_guards_from_the_command_line(client: Client) -> None:
    args = [*CANARY_ARGS[:10], "--steps", "10,25,50", "--guard", "accuracy>=stable-0.02@50",
            "--guard", "latency_p99_ms<=stable*1.2"]
    result = run("create", "live", *args)
    assert result.exit_code == 0, result.output
    dep = client.deployments.get("live")
    assert [(str(g), g.compare, g.min_samples) for g in dep.guards] == [
        ("accuracy>=stable-0.02", "difference", 50),
        ("latency_p99_ms<=stable*1.2", "ratio", 100)]
    shown = run("show", "live")
    assert "accuracy>=stable-0.02 (min 50 samples)" in shown.output, shown.output
    as_json = json.loads(run("show", "live", "-o", "json").output)
    assert [g["compare"] for g in as_json["guards"]] == ["difference", "ratio"]


@pytest.mark.parametrize(("guard", "message"), [
    ("accuracy>=stable/2", "invalid guard 'accuracy>=stable/2'"),
    ("latency_p99_ms<=stable*0", "invalid guard 'latency_p99_ms<=stable*0'"),
    ("accuracy>=stable-0.02", "guards.0: accuracy>=stable-0.02 compares with the stable arm"),
])
def test_bad_relative_guards_are_one_line_and_exit_2(client: Client, guard: str,
                                                     message: str) -> None:
    result = run("create", "x", *CANARY_ARGS[:10], "--steps", "10,25,50,100", "--guard",
                 guard)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert client.deployments.list() == []
