"""A child process of test_concurrency.py (run as a script, never imported by pytest).

``_reward_worker.py DB_URL ARTIFACTS DEPLOYMENT N [single|batch]``: wait for a line on
stdin, then credit arm "challenger" with rewards 1..N (success when even) and record one
pull per reward on both arms — ``single``: one ``record_reward`` call (transaction) per
reward; ``batch``: ``record_rewards`` calls of up to 37 rows that also credit "champion"
with 0.5 per row (no Bernoulli outcome) — then print "done".
"""

from __future__ import annotations

import sys
from pathlib import Path

from shipyard.artifacts import ArtifactStore
from shipyard.deployments import DeploymentService
from shipyard.registry import RegistryService
from shipyard.store import Database
from shipyard.tracking import TrackingService

BATCH = 37


def main(url: str, artifacts: str, name: str, count: int, mode: str) -> None:
    tracking = TrackingService(Database(url), ArtifactStore(artifacts), actor="worker")
    service = DeploymentService(RegistryService(tracking, Path(artifacts) / "cache"))
    print("ready", flush=True)
    sys.stdin.readline()
    if mode == "batch":
        rows: list[tuple[str, float, bool | None]] = []
        for i in range(1, count + 1):
            rows += [("challenger", float(i), i % 2 == 0), ("champion", 0.5, None)]
            if len(rows) >= BATCH or i == count:
                service.record_rewards(name, rows)
                rows = []
            service.record_pulls(name, {"champion": 1, "challenger": 2})
    else:
        for i in range(1, count + 1):
            service.record_reward(name, "challenger", float(i), success=i % 2 == 0)
            service.record_pulls(name, {"champion": 1, "challenger": 2})
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]),
         sys.argv[5] if len(sys.argv) > 5 else "single")
