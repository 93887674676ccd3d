"""Child processes of test_reliability.py (run as scripts, never imported by pytest).

``stress N``: start a run, print its id, wait for "go" on stdin, log N metrics, end the run.
``crash``: start a run (and a second one through the service), log and flush 1,000 steps,
print the ids, then keep logging until the parent SIGKILLs it.
"""

from __future__ import annotations

import json
import sys

import shipyard as sy
from shipyard.client import default_client

FLUSHED_STEPS = 1000


def stress(count: int) -> None:
    run = sy.start_run(experiment="stress")
    print(run.run_id, flush=True)
    sys.stdin.readline()
    for i in range(count):
        sy.log_metric("m", float(i), step=i)
    sy.end_run()
    print("done", flush=True)


def crash() -> None:
    run = sy.start_run(experiment="crash")
    service = default_client().tracking
    other = service.create_run(run.experiment_id, run_name="owned-by-the-same-process")
    for i in range(FLUSHED_STEPS):
        sy.log_metrics({"a": i, "b": i, "c": i}, step=i)
    sy.flush()
    print(json.dumps({"run_id": run.run_id, "other_id": other.run_id}), flush=True)
    i = FLUSHED_STEPS
    while True:  # until SIGKILL; the background thread keeps writing batches
        sy.log_metrics({"a": i, "b": i, "c": i}, step=i)
        i += 1


if __name__ == "__main__":
    if sys.argv[1] == "stress":
        stress(int(sys.argv[2]))
    else:
        crash()
