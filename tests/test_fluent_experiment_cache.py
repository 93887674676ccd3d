"""start_run remembers experiment ids by name and forgets them when they stop being right."""

from __future__ import annotations

from typing import Any

import pytest

import shipyard as sy
from shipyard import errors, fluent
from shipyard.client import default_client
from shipyard.tracking import RunStatus

pytestmark = pytest.mark.usefixtures("sdk_backend")


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names start_run looks up with get_or_create_experiment."""
    service = default_client().tracking
    seen: list[str] = []
    real = service.get_or_create_experiment

    def spy(name: str) -> Any:
        seen.append(name)
        return real(name)

    monkeypatch.setattr(service, "get_or_create_experiment", spy)
    return seen


def test_a_name_is_looked_up_once(lookups: list[str]) -> None:
    for _ in range(3):
        with sy.start_run(experiment="cached") as run:
            run.log_metric("m", 1.0)
    with sy.start_run():
        pass
    with sy.start_run():
        pass
    assert lookups == ["cached", "Default"]
    runs = sy.search_runs(["cached"], output_format="list")
    assert len(runs) == 3 and all(r.status is RunStatus.FINISHED for r in runs)


def test_a_deleted_experiment_raises_as_before(lookups: list[str]) -> None:
    with sy.start_run(experiment="gone") as run:
        pass
    default_client().tracking.delete_experiment(run.experiment_id)
    with pytest.raises(errors.Conflict, match="restore it"):
        sy.start_run(experiment="gone")
    assert sy.active_run() is None


def test_a_renamed_experiment_frees_its_name(lookups: list[str]) -> None:
    with sy.start_run(experiment="old") as first:
        pass
    default_client().tracking.rename_experiment(first.experiment_id, "new")
    with sy.start_run(experiment="old") as second:
        pass
    assert second.experiment_id != first.experiment_id
    assert default_client().tracking.get_experiment(second.experiment_id).name == "old"


def test_a_stale_id_is_dropped(lookups: list[str]) -> None:
    service = default_client().tracking
    fluent._cache_experiment_id(service, "moved", "987654")  # e.g. the database was emptied
    with sy.start_run(experiment="moved") as run:
        pass
    assert service.get_experiment(run.experiment_id).name == "moved"
    assert lookups == ["moved"]
    assert fluent._cached_experiment_id(service, "moved") == run.experiment_id
