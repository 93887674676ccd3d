"""Bandits through the live router: feedback credits the arm that answered, in the shared
state every worker reads, and traffic follows the reward."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import pytest

from shipyard.client import Client

from .conftest import row, serving, wait_for

if TYPE_CHECKING:
    from starlette.testclient import TestClient


def bandit(client: Client, name: str, **extra: object) -> None:
    client.deployments.create(name, "credit", {"a": "1", "b": "2"},
                              {"kind": "bandit", "arms": ["a", "b"], **extra}, auto=False)


def predict(http: TestClient) -> tuple[str, int]:
    body = http.post("/predict", json=row()).json()
    return body["prediction_ids"][0], body["model_version"]


@pytest.mark.parametrize("algorithm", ["thompson", "epsilon_greedy"])
def test_traffic_goes_to_the_arm_with_the_higher_reward(client: Client, credit: str,
                                                        algorithm: str) -> None:
    bandit(client, "bandit", algorithm=algorithm, epsilon=0.1)
    rewards = {1: 0.0, 2: 1.0}  # v2 (arm b) converts, v1 (arm a) never does
    with serving("bandit", client) as (http, router):
        sent = 0
        for _ in range(6):  # learning rounds: predict, reward, let the state catch up
            for _ in range(20):
                pid, version = predict(http)
                http.post("/feedback", json={"prediction_id": pid,
                                             "reward": rewards[version]})
                sent += 1
            wait_for(lambda n=sent: sum(s.rewards for s in router.stats.values()) >= n,
                     what="the rewards to reach the shared state")
        later = Counter(predict(http)[1] for _ in range(150))
    stats = client.deployments.arm_stats("bandit")
    assert stats["b"].reward_mean == 1.0 and stats["a"].reward_mean in (0.0, None)
    assert stats["a"].rewards + stats["b"].rewards == 120
    assert stats["a"].pulls + stats["b"].pulls == 120 + 150  # flushed when the router closed
    assert later[2] > 0.8 * 150, later


def test_feedback_reaching_another_worker_credits_the_right_arm(client: Client,
                                                               credit: str) -> None:
    """Two routers of one deployment (as two worker processes): a prediction from one,
    its feedback to the other, credited through the recorded assignment."""
    bandit(client, "shared")
    with serving("shared", client) as (first, router_a), \
            serving("shared", client) as (second, router_b):
        made = [predict(first) for _ in range(30)]
        router_a.worker.flush()  # the assignments reach the database
        for pid, _ in made:
            response = second.post("/feedback", json={"prediction_id": pid, "reward": 1.0})
            assert response.status_code == 200
        router_b.worker.flush()
        assert len(router_b.memory) == 0  # router b never saw these predictions
    by_arm = Counter("a" if version == 1 else "b" for _, version in made)
    stats = client.deployments.arm_stats("shared")
    assert {arm: stats[arm].rewards for arm in "ab"} == {"a": by_arm["a"],
                                                          "b": by_arm["b"]}
    assert {arm: stats[arm].successes for arm in "ab"} == {"a": by_arm["a"],
                                                            "b": by_arm["b"]}


def test_labels_are_rewards_when_the_bandit_learns_accuracy(client: Client,
                                                           credit: str) -> None:
    bandit(client, "accurate", reward="accuracy")
    with serving("accurate", client) as (http, router):
        made = [predict(http) for _ in range(20)]
        for pid, _ in made:
            http.post("/feedback", json={"prediction_id": pid, "label": 1})  # v2 is right
        router.worker.flush()
    stats = client.deployments.arm_stats("accurate")
    assert stats["b"].reward_mean in (1.0, None) and stats["a"].reward_mean in (0.0, None)
    assert stats["a"].rewards + stats["b"].rewards == 20


def test_feedback_for_an_unknown_prediction_is_counted_not_credited(
        client: Client, credit: str) -> None:
    bandit(client, "strangers")
    with serving("strangers", client) as (http, router):
        response = http.post("/feedback", json={"prediction_id": "f" * 32, "reward": 1.0})
        assert response.status_code == 200
        router.worker.flush(final=True)
        text = http.get("/metrics").text
    assert 'shipyard_rollout_feedback_total{deployment="strangers",' \
           'outcome="unknown_prediction"} 1.0' in text
    assert sum(s.rewards for s in client.deployments.arm_stats("strangers").values()) == 0


def test_feedback_is_credited_in_one_batch_per_flush_and_at_close(
        client: Client, credit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bandit(client, "batched")
    service = client.deployments
    batches: list[int] = []
    record_rewards = service.record_rewards

    def counting(name: str, rows: list[tuple[str, float, bool | None]]) -> None:
        batches.append(len(rows))
        record_rewards(name, rows)

    def one_at_a_time(*args: object, **kwargs: object) -> None:
        raise AssertionError("the router credited a reward on its own")

    monkeypatch.setattr(service, "record_rewards", counting)
    monkeypatch.setattr(service, "record_reward", one_at_a_time)
    with serving("batched", client, start=False) as (http, router):
        made = [predict(http) for _ in range(25)]
        for pid, version in made:
            http.post("/feedback", json={"prediction_id": pid, "reward": float(version)})
        assert batches == []  # nothing is written on the request path
        router.worker.flush()
        assert batches == [25]
        for pid, _ in made[:5]:  # still queued when the router closes …
            http.post("/feedback", json={"prediction_id": pid, "reward": 10.0})
    assert batches == [25, 5]  # … and written by the close
    by_arm = Counter("a" if version == 1 else "b" for _, version in made)
    again = Counter("a" if version == 1 else "b" for _, version in made[:5])
    stats = client.deployments.arm_stats("batched")
    for arm, version in (("a", 1), ("b", 2)):
        assert stats[arm].rewards == by_arm[arm] + again[arm]
        assert stats[arm].reward_sum == by_arm[arm] * version + again[arm] * 10.0
        assert stats[arm].successes == by_arm[arm] + again[arm]


def test_rewards_that_fail_to_be_written_are_written_later(
        client: Client, credit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from shipyard import errors

    bandit(client, "retried")
    service = client.deployments
    record_rewards = service.record_rewards
    down = [True]

    def flaky(name: str, rows: list[tuple[str, float, bool | None]]) -> None:
        if down[0]:
            raise errors.ShipyardError("the database is down")
        record_rewards(name, rows)

    monkeypatch.setattr(service, "record_rewards", flaky)
    with serving("retried", client, start=False) as (http, router):
        made = [predict(http) for _ in range(10)]
        for pid, _ in made:
            http.post("/feedback", json={"prediction_id": pid, "reward": 1.0})
        with pytest.raises(errors.ShipyardError):
            router.worker.flush()
        assert sum(s.rewards for s in service.arm_stats("retried").values()) == 0
        down[0] = False
        router.worker.flush()
    assert sum(s.rewards for s in service.arm_stats("retried").values()) == 10
