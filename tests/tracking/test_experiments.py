"""Experiments through the tracking service, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from shipyard import errors
from shipyard.tracking import LifecycleStage, TrackingService


def test_create_get_and_list(tracking: TrackingService) -> None:
    exp = tracking.create_experiment("credit", artifact_location="s3://b/p",
                                     tags={"team": "risk", "tier": 1})
    assert exp.name == "credit"
    assert exp.artifact_location == "s3://b/p"
    assert exp.tags == {"team": "risk", "tier": "1"}
    assert exp.lifecycle_stage is LifecycleStage.ACTIVE
    assert exp.creation_time == exp.last_update_time > 0
    assert tracking.get_experiment(exp.experiment_id) == exp
    assert tracking.get_experiment(int(exp.experiment_id)) == exp
    assert tracking.get_experiment_by_name("credit") == exp
    other = tracking.create_experiment("fraud")
    assert [e.name for e in tracking.list_experiments()] == ["credit", "fraud"]
    assert int(other.experiment_id) > int(exp.experiment_id)


def test_duplicate_name_already_exists(tracking: TrackingService) -> None:
    tracking.create_experiment("dup")
    with pytest.raises(errors.AlreadyExists) as info:
        tracking.create_experiment("dup")
    assert info.value.field == "name"
    assert len(tracking.list_experiments(view="all")) == 1


def test_get_or_create_is_idempotent(tracking: TrackingService) -> None:
    first = tracking.get_or_create_experiment("shared")
    assert tracking.get_or_create_experiment("shared") == first
    assert len(tracking.list_experiments()) == 1


def test_rename(tracking: TrackingService) -> None:
    exp = tracking.create_experiment("old")
    tracking.create_experiment("taken")
    renamed = tracking.rename_experiment(exp.experiment_id, "new")
    assert renamed.name == "new"
    assert renamed.experiment_id == exp.experiment_id
    assert renamed.last_update_time >= exp.last_update_time
    with pytest.raises(errors.NotFound):
        tracking.get_experiment_by_name("old")
    with pytest.raises(errors.AlreadyExists):
        tracking.rename_experiment(exp.experiment_id, "taken")
    assert tracking.rename_experiment(exp.experiment_id, "new").name == "new"  # same name: ok
    assert tracking.get_experiment(exp.experiment_id).name == "new"


def test_delete_and_restore(tracking: TrackingService) -> None:
    exp = tracking.create_experiment("gone")
    tracking.delete_experiment(exp.experiment_id)
    assert tracking.get_experiment(exp.experiment_id).lifecycle_stage is LifecycleStage.DELETED
    assert tracking.list_experiments() == []
    assert [e.name for e in tracking.list_experiments("deleted_only")] == ["gone"]
    assert [e.name for e in tracking.list_experiments("all")] == ["gone"]
    with pytest.raises(errors.Conflict, match="deleted"):
        tracking.create_run(exp.experiment_id)
    with pytest.raises(errors.Conflict, match="deleted"):
        tracking.get_or_create_experiment("gone")
    with pytest.raises(errors.Conflict):
        tracking.delete_experiment(exp.experiment_id)
    with pytest.raises(errors.AlreadyExists):  # a deleted experiment still holds its name
        tracking.create_experiment("gone")
    tracking.restore_experiment(exp.experiment_id)
    assert tracking.get_experiment(exp.experiment_id).lifecycle_stage is LifecycleStage.ACTIVE
    with pytest.raises(errors.Conflict):
        tracking.restore_experiment(exp.experiment_id)
    assert tracking.create_run(exp.experiment_id).experiment_id == exp.experiment_id


def test_experiment_tags(tracking: TrackingService) -> None:
    exp = tracking.create_experiment("tagged", tags={"a": "1"})
    tracking.set_experiment_tag(exp.experiment_id, "a", "2")
    tracking.set_experiment_tag(exp.experiment_id, "b", 3.5)
    assert tracking.get_experiment(exp.experiment_id).tags == {"a": "2", "b": "3.5"}
    with pytest.raises(errors.InvalidInput):
        tracking.set_experiment_tag(exp.experiment_id, "", "x")
    with pytest.raises(errors.NotFound):
        tracking.set_experiment_tag("999999", "a", "x")


@pytest.mark.parametrize("name", ["", "   ", "x" * 251, None, 3, "a\nb", "nul\x00"])
def test_invalid_names_write_nothing(tracking: TrackingService, name: object) -> None:
    with pytest.raises(errors.InvalidInput) as info:
        tracking.create_experiment(name)  # type: ignore[arg-type]
    assert info.value.field == "experiment"
    assert tracking.list_experiments(view="all") == []
    assert tracking.audit_events() == []


def test_longest_name_is_accepted(tracking: TrackingService) -> None:
    assert tracking.create_experiment("é" * 250).name == "é" * 250


@pytest.mark.parametrize("bad_id", ["abc", "", "1.5", None])
def test_invalid_experiment_id(tracking: TrackingService, bad_id: object) -> None:
    with pytest.raises(errors.InvalidInput):
        tracking.get_experiment(bad_id)  # type: ignore[arg-type]


def test_unknown_experiment(tracking: TrackingService) -> None:
    with pytest.raises(errors.NotFound):
        tracking.get_experiment("424242")
    with pytest.raises(errors.NotFound):
        tracking.get_experiment_by_name("nope")
    with pytest.raises(errors.NotFound):
        tracking.rename_experiment("424242", "x")
    with pytest.raises(errors.NotFound):
        tracking.delete_experiment("424242")
    with pytest.raises(errors.NotFound):
        tracking.create_run("424242")
    assert tracking.audit_events() == []


def test_bad_view(tracking: TrackingService) -> None:
    with pytest.raises(errors.InvalidInput, match="view"):
        tracking.list_experiments("everything")


def test_concurrent_get_or_create_returns_one_experiment(tracking: TrackingService) -> None:
    import threading

    names = [f"race-{i}" for i in range(10)]
    results: dict[str, set[str]] = {n: set() for n in names}
    failures: list[BaseException] = []
    barrier = threading.Barrier(6)

    def work() -> None:
        barrier.wait()
        for name in names:
            try:
                results[name].add(tracking.get_or_create_experiment(name).experiment_id)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert all(len(ids) == 1 for ids in results.values())
    assert sorted(e.name for e in tracking.list_experiments()) == sorted(names)
