"""Every tracking mutation appends exactly one audit event in its own transaction."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shipyard import errors
from shipyard.store import tables
from shipyard.tracking import RunStatus, TrackingService


def _row_counts(tracking: TrackingService) -> dict[str, int]:
    with tracking.db.read() as conn:
        return {t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                for t in tables.metadata.sorted_tables}


@pytest.fixture
def world(tracking: TrackingService, tmp_path: Path) -> dict[str, Any]:
    exp = tracking.create_experiment("audited")
    run = tracking.create_run(exp.experiment_id)
    tracking.set_tag(run.run_id, "t", "v")
    local = tmp_path / "f.txt"
    local.write_text("content")
    return {"exp": exp.experiment_id, "run": run.run_id, "file": local}


MUTATIONS: dict[str, tuple[str, str, Callable[[TrackingService, dict[str, Any]], Any]]] = {
    "create_experiment": ("experiment.create", "experiment",
                          lambda s, w: s.create_experiment("another")),
    "rename_experiment": ("experiment.rename", "experiment",
                          lambda s, w: s.rename_experiment(w["exp"], "renamed")),
    "delete_experiment": ("experiment.delete", "experiment",
                          lambda s, w: s.delete_experiment(w["exp"])),
    "set_experiment_tag": ("experiment.set_tag", "experiment",
                           lambda s, w: s.set_experiment_tag(w["exp"], "k", "v")),
    "create_run": ("run.create", "run", lambda s, w: s.create_run(w["exp"])),
    "nested_run": ("run.create", "run",
                   lambda s, w: s.create_run(w["exp"], parent_run_id=w["run"])),
    "end_run": ("run.set_status", "run", lambda s, w: s.end_run(w["run"], RunStatus.FAILED)),
    "set_run_name": ("run.rename", "run", lambda s, w: s.set_run_name(w["run"], "new")),
    "delete_run": ("run.delete", "run", lambda s, w: s.delete_run(w["run"])),
    "log_batch": ("run.log_batch", "run", lambda s, w: s.log_batch(
        w["run"], metrics=[("m", 1.0, 0, 1), ("m", 2.0, 1, 2)], params={"p": 1},
        tags={"x": "y"})),
    "log_metric": ("run.log_batch", "run", lambda s, w: s.log_metric(w["run"], "m", 1.0)),
    "log_param": ("run.log_batch", "run", lambda s, w: s.log_param(w["run"], "p", 1)),
    "delete_tag": ("run.delete_tag", "run", lambda s, w: s.delete_tag(w["run"], "t")),
    "log_input": ("run.log_input", "run",
                  lambda s, w: s.log_input(w["run"], name="d", digest="a" * 64)),
    "log_artifact_file": ("run.log_artifact", "run",
                          lambda s, w: s.log_artifact_file(w["run"], w["file"], "f.txt")),
    "log_artifact_bytes": ("run.log_artifact", "run",
                           lambda s, w: s.log_artifact_bytes(w["run"], b"x", "x.bin")),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_mutation_writes_one_event(tracking: TrackingService, world: dict[str, Any],
                                        name: str) -> None:
    action, object_type, call = MUTATIONS[name]
    before = tracking.audit_events()
    call(tracking, world)
    new = tracking.audit_events()[len(before):]
    assert [(e["action"], e["object_type"], e["actor"]) for e in new] == [
        (action, object_type, "tester")]
    assert new[0]["id"] > before[-1]["id"]


def test_restore_events(tracking: TrackingService, world: dict[str, Any]) -> None:
    tracking.delete_experiment(world["exp"])
    tracking.restore_experiment(world["exp"])
    tracking.delete_run(world["run"])
    tracking.restore_run(world["run"])
    actions = [e["action"] for e in tracking.audit_events()[-4:]]
    assert actions == ["experiment.delete", "experiment.restore", "run.delete", "run.restore"]


def test_event_details_describe_the_change(tracking: TrackingService,
                                           world: dict[str, Any]) -> None:
    tracking.log_batch(world["run"], metrics=[("m", 1.0, 0, 1)] * 3, params={"b": 1, "a": 2},
                       tags={"z": "1"})
    details = json.loads(tracking.audit_events("run", world["run"])[-1]["details"])
    assert details == {"metrics": 3, "params": ["a", "b"], "tags": ["z"]}
    tracking.rename_experiment(world["exp"], "later")
    details = json.loads(tracking.audit_events("experiment", world["exp"])[-1]["details"])
    assert details == {"from": "audited", "to": "later"}


FAILURES: dict[str, tuple[type[errors.ShipyardError],
                          Callable[[TrackingService, dict[str, Any]], Any]]] = {
    "duplicate experiment": (errors.AlreadyExists, lambda s, w: s.create_experiment("audited")),
    "rename onto a taken name": (errors.AlreadyExists, lambda s, w: (
        s.create_experiment("taken"), s.rename_experiment(w["exp"], "taken"))),
    "bad experiment tag": (errors.InvalidInput,
                           lambda s, w: s.create_experiment("new", tags={"": "x"})),
    "unknown parent": (errors.NotFound,
                       lambda s, w: s.create_run(w["exp"], parent_run_id="0" * 32)),
    "param conflict mid-batch": (errors.Conflict, lambda s, w: (
        s.log_param(w["run"], "p", 1),
        s.log_batch(w["run"], metrics=[("m", 1.0, 0, 1)], params={"q": 1, "p": 2},
                    tags={"new": "tag"}))),
    "bad metric in a batch": (errors.InvalidInput, lambda s, w: s.log_batch(
        w["run"], metrics=[("ok", 1.0, 0, 1), ("bad", "x", 0, 1)])),
    "bad status": (errors.InvalidInput, lambda s, w: s.end_run(w["run"], "DONE")),
    "delete missing tag": (errors.NotFound, lambda s, w: s.delete_tag(w["run"], "nope")),
    "log to deleted run": (errors.Conflict, lambda s, w: (
        s.delete_run(w["run"]), s.log_metric(w["run"], "m", 1.0))),
    "artifact escaping the root": (errors.InvalidInput,
                                   lambda s, w: s.log_artifact_bytes(w["run"], b"x", "../x")),
    "too long dataset context": (errors.InvalidInput, lambda s, w: s.log_input(
        w["run"], name="d", digest="a" * 64, context="c" * 65)),
}


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_failed_mutation_writes_no_event_and_nothing_else(
        tracking: TrackingService, world: dict[str, Any], name: str) -> None:
    error, call = FAILURES[name]

    def attempt() -> None:
        with pytest.raises(error):
            call(tracking, world)

    # Steps before the failing call in a tuple are legitimate mutations: count after them.
    probe = _row_counts(tracking)
    events_before = len(tracking.audit_events())
    attempt()
    after = _row_counts(tracking)
    legit = len(tracking.audit_events()) - events_before
    assert legit <= 1  # at most the set-up step inside the tuple
    if legit == 0:
        assert after == probe
    else:  # the set-up step wrote exactly its own rows; the failing call added nothing
        grew = {k: after[k] - probe[k] for k in after if after[k] != probe[k]}
        assert grew.pop("audit_events") == 1
        assert all(n == 1 for n in grew.values()), grew
