"""``analyze``: the A/B comparison from the prediction log and the feedback, and its CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipyard import errors
from shipyard.cli import app
from shipyard.client import Client
from shipyard.deployments import compare_arms
from shipyard.rollout import analyze_deployment

from .conftest import row, serving

KEY = "X-Shipyard-Routing-Key"


@pytest.fixture
def ab_test(client: Client, credit: str) -> dict[str, list[float]]:
    """An A/B test with 160 predictions; arm b's reward rate is 0.7, arm a's 0.2, and
    every prediction gets a label (1) as well. Returns the rewards sent per arm."""
    client.deployments.create("exp", credit, {"a": "1", "b": "2"},
                              {"kind": "ab", "weights": {"a": 1, "b": 1}}, auto=False)
    rng = random.Random(5)
    sent: dict[str, list[float]] = {"a": [], "b": []}
    with serving("exp", client) as (http, _):
        for i in range(160):
            body = http.post("/predict", json=row(), headers={KEY: f"u{i}"}).json()
            arm = "a" if body["model_version"] == 1 else "b"
            reward = float(rng.random() < (0.2 if arm == "a" else 0.7))
            sent[arm].append(reward)
            http.post("/feedback", json={"prediction_id": body["prediction_ids"][0],
                                         "reward": reward, "label": 1})
        # a prediction outside the test must not count
        http.post("/feedback", json={"prediction_id": "0" * 32, "reward": 100.0})
    return sent


def test_the_reward_difference_with_its_interval(client: Client,
                                                 ab_test: dict[str, list[float]]) -> None:
    result = analyze_deployment("exp", metric="reward")
    assert result.baseline == "a"
    summary = {a.arm: a for a in result.arms}
    assert summary["a"].n == len(ab_test["a"]) and summary["b"].n == len(ab_test["b"])
    assert summary["a"].versions == [1] and summary["b"].versions == [2]
    assert summary["b"].mean == pytest.approx(sum(ab_test["b"]) / len(ab_test["b"]))
    expected = compare_arms(ab_test["a"], ab_test["b"], kind="mean")
    found = result.comparisons["b"]
    assert found.diff == pytest.approx(expected.diff)
    assert (found.ci_low, found.ci_high) == pytest.approx((expected.ci_low, expected.ci_high))
    assert found.p_value == pytest.approx(expected.p_value) and found.p_value < 0.05
    assert "b's mean reward is higher than a's" in result.verdict
    assert "significant at 95%" in result.verdict


def test_accuracy_compares_labels_with_predictions(client: Client,
                                                   ab_test: dict[str, list[float]]) -> None:
    result = analyze_deployment("exp", metric="accuracy", confidence=0.9)
    means = {a.arm: a.mean for a in result.arms}
    assert means == {"a": 0.0, "b": 1.0}  # v1 predicts 0, v2 predicts 1; every label is 1
    assert result.comparisons["b"].test == "two_proportion_z"
    assert result.comparisons["b"].confidence == 0.9


def test_no_traffic_yet_is_said_plainly(client: Client, credit: str) -> None:
    client.deployments.create("quiet", credit, {"a": "1", "b": "2"},
                              {"kind": "ab", "weights": {"a": 1, "b": 1}}, auto=False)
    result = analyze_deployment("quiet")
    assert result.arms == [] and "no logged predictions" in result.verdict
    with pytest.raises(errors.InvalidInput):
        analyze_deployment("quiet", confidence=1.5)


def test_the_cli_prints_the_table_and_the_verdict(ab_test: dict[str, list[float]],
                                                  shipyard_home: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["deployments", "analyze", "exp"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "Difference from a" in done.stdout and "welch_t" in done.stdout
    assert "significant at 95%" in done.stdout
    as_json = runner.invoke(app, ["deployments", "analyze", "exp", "--metric", "accuracy",
                                  "--output", "json"])
    assert as_json.exit_code == 0, as_json.output
    parsed = json.loads(as_json.stdout)
    assert parsed["metric"] == "accuracy" and parsed["comparisons"]["b"]["diff"] == 1.0


@pytest.mark.parametrize("args", [["exp", "--confidence", "1.5"], ["exp", "--metric", "x"],
                                  ["nope"]])
def test_cli_bad_input_is_one_line(client: Client, credit: str, args: list[str]) -> None:
    client.deployments.create("exp", credit, {"a": "1", "b": "2"},
                              {"kind": "ab", "weights": {"a": 1, "b": 1}}, auto=False)
    done = CliRunner().invoke(app, ["deployments", "analyze", *args])
    assert done.exit_code == 2
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
