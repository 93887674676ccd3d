"""Fixtures for CLI tests: an in-process runner and a small tracked history to look at."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from shipyard.cli import app
from shipyard.client import Client


@dataclass
class Invoke:
    """Run ``shipyard <args>`` in-process; wide columns so tables do not fold run ids."""

    runner: CliRunner

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(app, list(args), env={"COLUMNS": "250"})


@pytest.fixture
def invoke() -> Invoke:
    return Invoke(CliRunner())


@dataclass
class History:
    """Ids of what :func:`history` logged."""

    experiment_id: str
    other_experiment_id: str
    best: str  # auc 0.9, model gbm
    worst: str  # auc 0.7, model lr
    middle: str  # auc 0.85, model gbm, has a child run
    child: str
    other: str  # in experiment "churn"


@pytest.fixture
def history(client: Client, tmp_path: Path) -> History:
    """Two experiments and five finished runs with params, metric history, tags, a dataset
    input, an artifact and one nested child run (written synchronously, no buffering)."""
    svc = client.tracking
    exp = svc.create_experiment("credit", tags={"team": "risk"})
    other_exp = svc.create_experiment("churn")

    def run(exp_id: str, name: str, params: dict, auc: float, loss: float,
            parent: str | None = None) -> str:
        r = svc.create_run(exp_id, run_name=name, parent_run_id=parent, tags={"owner": "ana"})
        svc.log_batch(r.run_id, params=params, metrics=[
            ("auc", auc - 0.1, 1, 1000), ("auc", auc, 2, 2000), ("loss", loss, 2, 2000)])
        return r.run_id

    best = run(exp.experiment_id, "gbm-big", {"model": "gbm", "lr": "0.1"}, 0.9, 0.30)
    worst = run(exp.experiment_id, "logreg", {"model": "lr", "lr": "0.1"}, 0.7, 0.50)
    middle = run(exp.experiment_id, "gbm-small", {"model": "gbm", "lr": "0.3"}, 0.85, 0.35)
    child = run(exp.experiment_id, "gbm-small-fold1", {"model": "gbm"}, 0.84, 0.36,
                parent=middle)
    other = run(other_exp.experiment_id, "churn-1", {"model": "rf"}, 0.6, 0.6)
    svc.log_input(best, name="applications", digest="d" * 64, num_rows=100,
                  schema={"x": "int64"}, context="training")
    svc.log_artifact_bytes(best, b"hello", "notes/readme.txt")
    for run_id in (best, worst, middle, child, other):
        svc.end_run(run_id, "FINISHED")
    return History(exp.experiment_id, other_exp.experiment_id, best, worst, middle, child,
                   other)
