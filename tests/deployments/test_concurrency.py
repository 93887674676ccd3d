"""Arm state shared by worker processes: concurrent atomic additions lose nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shipyard.deployments import DeploymentService

from .conftest import ARMS, MODEL

WORKER = Path(__file__).with_name("_reward_worker.py")
PROCESSES, EACH = 4, 500


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["single", "batch"])
def test_four_processes_add_rewards_and_pulls_exactly(
        deployments: DeploymentService, backend_url: str, tmp_path: Path, mode: str) -> None:
    """``single``: a transaction per reward (``record_reward``); ``batch``: rows of both
    arms at once (``record_rewards``), from four processes at the same time."""
    deployments.create("bandit", MODEL, ARMS, {"kind": "bandit",
                                               "arms": ["champion", "challenger"]})
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    procs = [subprocess.Popen([sys.executable, str(WORKER), backend_url,
                               str(tmp_path / "worker-artifacts"), "bandit", str(EACH), mode],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(PROCESSES)]
    try:
        for proc in procs:  # every worker is connected before any starts writing
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0 and out.strip() == "done", err[-2000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    stats = deployments.arm_stats("bandit")
    c, champion = stats["challenger"], stats["champion"]
    total = PROCESSES * EACH
    assert c.rewards == total
    assert c.reward_sum == PROCESSES * EACH * (EACH + 1) / 2
    assert c.reward_sq_sum == PROCESSES * EACH * (EACH + 1) * (2 * EACH + 1) / 6
    assert (c.successes, c.failures) == (total / 2, total / 2)
    assert (champion.pulls, c.pulls) == (total, 2 * total)
    if mode == "batch":
        assert (champion.rewards, champion.reward_sum) == (total, total * 0.5)
        assert champion.reward_sq_sum == total * 0.25
        assert (champion.successes, champion.failures) == (0, 0)
    else:
        assert champion.rewards == 0
