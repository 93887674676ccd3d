"""The module-level SDK (``sy.start_run`` …) on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import shipyard as sy
from shipyard import errors, fluent
from shipyard.client import Client, default_client, reset_default_client
from shipyard.config import reset_settings
from shipyard.tracking import RunStatus

pytestmark = pytest.mark.usefixtures("sdk_backend")


def _stored(run_id: str) -> sy.Run:  # type: ignore[name-defined]
    """The run as the database holds it now, without flushing this process's buffer."""
    return default_client().tracking.get_run(run_id)


def _user_tags(tags: dict[str, str]) -> dict[str, str]:
    """Tags without the ones Shipyard adds itself (source name, git commit)."""
    return {k: v for k, v in tags.items() if not k.startswith("shipyard.")}


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(f"SHIPYARD_{key.upper()}", value)
    reset_settings()
    reset_default_client()


@pytest.fixture
def slow_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """Buffered mode whose background thread never writes on its own during a test."""
    _settings(monkeypatch, flush_interval="3600", buffer_size="100000")


def test_with_block_logs_and_finishes(slow_flush: None) -> None:
    with sy.start_run(experiment="exp", run_name="r1", tags={"team": "a"}) as run:
        assert sy.active_run() is run
        assert run.log_param("lr", 0.1) == 0.1
        run.log_params({"depth": 3})
        run.log_metric("loss", 0.5, step=1)
        run.log_metrics({"loss": 0.25, "acc": 0.9}, step=2)
        run.set_tag("stage", "dev")
        run.set_tags({"x": 1})
    assert sy.active_run() is None
    stored = _stored(run.run_id)
    assert stored.status is RunStatus.FINISHED
    assert stored.end_time is not None
    assert stored.run_name == "r1"
    assert stored.params == {"lr": "0.1", "depth": "3"}
    assert stored.metrics == {"loss": 0.25, "acc": 0.9}
    assert _user_tags(stored.tags) == {"team": "a", "stage": "dev", "x": "1"}
    assert default_client().tracking.get_experiment(stored.experiment_id).name == "exp"


def test_buffered_data_is_visible_after_flush(slow_flush: None) -> None:
    run = sy.start_run()
    sy.log_metric("m", 1.0)
    sy.log_param("p", "v")
    sy.set_tag("t", "x")
    assert (_stored(run.run_id).metrics, _stored(run.run_id).params) == ({}, {})
    sy.flush()
    stored = _stored(run.run_id)
    assert (stored.metrics, stored.params, _user_tags(stored.tags)) == (
        {"m": 1.0}, {"p": "v"}, {"t": "x"})
    sy.log_metric("m", 2.0, step=1)
    assert run.data().metrics == {"m": 2.0}  # reads flush first
    sy.log_metric("m", 3.0, step=2)
    assert sy.get_run(run.run_id).metrics == {"m": 3.0}
    sy.end_run()
    assert _stored(run.run_id).status is RunStatus.FINISHED


def test_buffered_data_is_visible_after_run_end(slow_flush: None) -> None:
    with sy.start_run() as run:
        for i in range(100):
            sy.log_metric("m", float(i), step=i)
        assert _stored(run.run_id).metrics == {}
    assert _stored(run.run_id).metrics == {"m": 99.0}
    assert len(default_client().tracking.get_metric_history(run.run_id, "m")) == 100


def test_sync_logging_is_visible_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _settings(monkeypatch, sync_logging="1", flush_interval="3600")
    with sy.start_run() as run:
        sy.log_metric("m", 1.5, step=3, timestamp=1234)
        sy.log_params({"p": 1})
        sy.set_tags({"t": "x"})
        stored = _stored(run.run_id)
        assert (stored.metrics, stored.params, _user_tags(stored.tags)) == (
            {"m": 1.5}, {"p": "1"}, {"t": "x"})
        assert fluent._writers == {}  # no buffer in sync mode
        with pytest.raises(errors.Conflict):
            sy.log_param("p", 2)
    history = default_client().tracking.get_metric_history(run.run_id, "m")
    assert [(m.step, m.timestamp) for m in history] == [(3, 1234)]


@pytest.mark.parametrize("sync", ["0", "1"])
def test_conflicting_param_raises_at_the_call(monkeypatch: pytest.MonkeyPatch,
                                              sync: str) -> None:
    _settings(monkeypatch, sync_logging=sync, flush_interval="3600")
    with sy.start_run() as run:
        sy.log_param("p", 1)
        sy.log_param("p", "1")
        with pytest.raises(errors.Conflict, match="immutable"):
            sy.log_param("p", 2)
        with pytest.raises(errors.Conflict):
            sy.log_params({"q": 1, "p": 3})
    assert _stored(run.run_id).params == {"p": "1"}


def test_bad_input_raises_at_the_call_in_buffered_mode(slow_flush: None) -> None:
    with sy.start_run() as run:
        with pytest.raises(errors.InvalidInput):
            sy.log_metric("m", "high")  # type: ignore[arg-type]
        with pytest.raises(errors.InvalidInput):
            sy.log_metric("", 1.0)
        with pytest.raises(errors.InvalidInput):
            sy.log_metric("m", 1.0, step=0.5)  # type: ignore[arg-type]
        with pytest.raises(errors.InvalidInput, match="timestamp"):
            sy.log_metric("m", 1.0, timestamp="now")  # type: ignore[arg-type]
        with pytest.raises(errors.InvalidInput):
            sy.log_metrics({"ok": 1.0, "bad key;": 2.0})
        with pytest.raises(errors.InvalidInput):
            sy.set_tag("x" * 300, "v")
        assert fluent._writer_for(default_client()).pending() == 0
    assert _stored(run.run_id).metrics == {}


def test_background_write_error_surfaces_on_flush(slow_flush: None) -> None:
    run = sy.start_run()
    default_client().tracking.delete_run(run.run_id)  # e.g. by someone else
    sy.log_metric("m", 1.0)
    with pytest.raises(errors.Conflict, match="deleted"):
        sy.flush()
    sy.flush()  # reported once
    with pytest.raises(errors.Conflict, match="deleted"):
        sy.log_metric("m", 2.0)
        run.end()
    assert _stored(run.run_id).status is RunStatus.FINISHED  # the run still ended
    assert sy.active_run() is None


def test_nested_runs(slow_flush: None) -> None:
    with sy.start_run(experiment="nest") as parent:
        with pytest.raises(errors.Conflict, match="already active"):
            sy.start_run()
        with sy.start_run(nested=True) as child:
            assert sy.active_run() is child
            sy.log_metric("m", 1.0)
            with sy.start_run(nested=True) as grandchild:
                sy.log_metric("m", 2.0)
            assert sy.active_run() is child
        assert sy.active_run() is parent
        sy.log_metric("m", 0.0)
    assert _stored(child.run_id).parent_run_id == parent.run_id
    assert _stored(grandchild.run_id).parent_run_id == child.run_id
    assert _stored(parent.run_id).parent_run_id is None
    assert [_stored(r.run_id).metrics["m"] for r in (parent, child, grandchild)] == [0, 1, 2]
    assert child.experiment_id == parent.experiment_id


def test_exception_marks_the_run_failed(slow_flush: None) -> None:
    with pytest.raises(ZeroDivisionError), sy.start_run() as run:
        sy.log_metric("m", 1.0)
        _ = 1 / 0
    stored = _stored(run.run_id)
    assert stored.status is RunStatus.FAILED
    assert stored.metrics == {"m": 1.0}  # nothing lost


def test_keyboard_interrupt_marks_the_run_killed(slow_flush: None) -> None:
    with pytest.raises(KeyboardInterrupt), sy.start_run() as run:
        sy.log_metric("m", 1.0)
        raise KeyboardInterrupt
    assert _stored(run.run_id).status is RunStatus.KILLED
    assert _stored(run.run_id).metrics == {"m": 1.0}


def test_end_run_with_status_and_without_a_run(slow_flush: None) -> None:
    sy.end_run()  # no active run: nothing to do
    run = sy.start_run()
    sy.end_run("KILLED")
    assert _stored(run.run_id).status is RunStatus.KILLED
    run.end()  # ending twice is a no-op
    assert _stored(run.run_id).status is RunStatus.KILLED


def test_module_functions_need_an_active_run() -> None:
    for call in (lambda: sy.log_metric("m", 1.0), lambda: sy.log_param("p", 1),
                 lambda: sy.set_tag("t", 1), lambda: sy.log_text("x", "x.txt")):
        with pytest.raises(errors.Conflict, match="no active run"):
            call()


def test_set_experiment(slow_flush: None) -> None:
    exp_id = sy.set_experiment("chosen")
    with sy.start_run() as run:
        pass
    assert run.experiment_id == exp_id
    with sy.start_run(experiment="other") as other:
        pass
    assert other.experiment_id != exp_id


def test_default_experiment(slow_flush: None) -> None:
    fluent._experiment.clear()
    with sy.start_run() as run:
        pass
    assert default_client().tracking.get_experiment(run.experiment_id).name == "Default"


def test_artifact_functions(slow_flush: None, tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    df = pd.DataFrame({"x": [1.0, 2.0]})
    fig = plt.figure()
    with sy.start_run() as run:
        sy.log_artifact(src / "a.txt")
        sy.log_artifact(src / "a.txt", "copies")
        sy.log_artifacts(src, "tree")
        sy.log_dict({"k": [1, 2]}, "d/config.json")
        sy.log_text("hello", "notes.txt")
        sy.log_figure(fig, "fig.png")
        sy.log_table(df, "t.parquet")
    plt.close(fig)
    service = default_client().tracking
    assert [a.path for a in service.list_artifacts(run.run_id)] == [
        "a.txt", "copies/a.txt", "d/config.json", "fig.png", "notes.txt", "t.parquet",
        "tree/a.txt", "tree/sub/b.txt"]
    assert service.read_artifact(run.run_id, "tree/sub/b.txt") == b"b"
    assert service.read_artifact(run.run_id, "d/config.json").replace(b" ", b"").replace(
        b"\n", b"") == b'{"k":[1,2]}'
    import io

    pd.testing.assert_frame_equal(
        pd.read_parquet(io.BytesIO(service.read_artifact(run.run_id, "t.parquet"))), df)


@pytest.mark.parametrize("artifact_path", ["/abs", "../up", "a\\b"])
def test_log_artifact_refuses_bad_folders(slow_flush: None, tmp_path: Path,
                                          artifact_path: str) -> None:
    local = tmp_path / "f.txt"
    local.write_text("x")
    with sy.start_run() as run:
        with pytest.raises(errors.InvalidInput):
            sy.log_artifact(local, artifact_path)
        with pytest.raises(errors.InvalidInput):
            sy.log_artifacts(tmp_path, artifact_path)
    assert default_client().tracking.list_artifacts(run.run_id) == []


def test_log_artifacts_checks_every_name_before_writing(slow_flush: None,
                                                        tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("fine")
    (src / "b\\c.txt").write_text("a backslash in a file name (legal on POSIX)")
    with sy.start_run() as run, pytest.raises(errors.InvalidInput):
        sy.log_artifacts(src)
    assert default_client().tracking.list_artifacts(run.run_id) == []


def test_artifact_input_errors(slow_flush: None, tmp_path: Path) -> None:
    with sy.start_run() as run:
        with pytest.raises(errors.InvalidInput):
            sy.log_artifacts(tmp_path / "missing")
        with pytest.raises(errors.InvalidInput):
            sy.log_text(b"bytes", "x.txt")  # type: ignore[arg-type]
        with pytest.raises(errors.InvalidInput, match="parquet"):
            sy.log_table(pd.DataFrame({"a": [1]}), "t.csv")
        with pytest.raises(errors.InvalidInput):
            sy.log_dict({"a": 1}, "../x.json")
    assert default_client().tracking.list_artifacts(run.run_id) == []


def test_log_input(slow_flush: None) -> None:
    df = pd.DataFrame({"a": [1, 2, 3]})
    with sy.start_run() as run:
        dataset_id = sy.log_input(df, name="train", source="memory")
        assert sy.log_input(df, name="train") == dataset_id
        sy.log_input(np.zeros((4, 2)), name="eval", context="evaluation")
    inputs = {d.name: d for d in _stored(run.run_id).inputs}
    assert inputs["train"].num_rows == 3
    assert inputs["train"].dataset_id == dataset_id
    assert inputs["eval"].context == "evaluation"
    assert inputs["eval"].schema_ == {"0": "float64", "1": "float64"}


def test_search_runs(slow_flush: None) -> None:
    for lr in (0.1, 0.2):
        with sy.start_run(experiment="search"):
            sy.log_param("lr", lr)
            sy.log_metric("acc", lr * 4)
    df = sy.search_runs(["search"], order_by=["metrics.acc DESC"])
    assert list(df["params.lr"]) == ["0.2", "0.1"]
    assert list(df["metrics.acc"]) == [0.8, 0.4]
    runs = sy.search_runs(["search"], filter_string="params.lr = '0.1'", output_format="list")
    assert [r.params["lr"] for r in runs] == ["0.1"]
    with pytest.raises(errors.InvalidInput):
        sy.search_runs(output_format="csv")
    with pytest.raises(errors.NotFound):
        sy.search_runs(["no-such-experiment"])


def test_search_sees_unflushed_data(slow_flush: None) -> None:
    with sy.start_run(experiment="own-writes"):
        sy.log_metric("m", 7.0)
        df = sy.search_runs(["own-writes"])
        assert list(df["metrics.m"]) == [7.0]


def test_system_metrics_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    _settings(monkeypatch, system_metrics_interval="0.01", flush_interval="3600")
    with sy.start_run(log_system_metrics=True) as run:
        sampler = run._sampler
        assert sampler is not None
        got_samples = threading.Event()
        original = sampler.log

        def counting(metrics, step):  # type: ignore[no-untyped-def]
            original(metrics, step=step)
            if step >= 2:
                got_samples.set()

        sampler.log = counting
        assert got_samples.wait(30)
    metrics = _stored(run.run_id).metrics
    assert {"system/cpu_utilization_percentage", "system/process_rss_megabytes"} <= set(metrics)
    history = default_client().tracking.get_metric_history(run.run_id,
                                                           "system/process_rss_megabytes")
    assert len(history) >= 3
    assert [m.step for m in history] == list(range(len(history)))


def test_system_metrics_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    _settings(monkeypatch, system_metrics="true", system_metrics_interval="3600")
    with sy.start_run() as run:
        pass
    # Even a run shorter than one interval gets its final sample.
    assert "system/system_memory_usage_percentage" in _stored(run.run_id).metrics
    with sy.start_run(log_system_metrics=False) as quiet:
        pass
    assert _stored(quiet.run_id).metrics == {}


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_resuming_a_run_takes_it_over(slow_flush: None) -> None:
    service = default_client().tracking
    exp = service.create_experiment("resume")
    crashed = service.create_run(exp.experiment_id, owner_pid=_dead_pid())
    with sy.start_run(run_id=crashed.run_id) as run:
        sy.log_metric("m", 1.0)
        assert sy.get_run(run.run_id).status is RunStatus.RUNNING  # not failed as orphan
        assert service.gc_runs() == []
        assert _stored(run.run_id).end_time is None
    assert _stored(run.run_id).status is RunStatus.FINISHED
    assert _stored(run.run_id).metrics == {"m": 1.0}


def test_clients_on_different_databases_keep_their_data_apart(slow_flush: None,
                                                              tmp_path: Path) -> None:
    def url(i: int) -> str:
        return f"sqlite:///{tmp_path / f'db{i}.sqlite'}"

    run_ids = []
    for i in range(4):
        # The client of the previous round was freed just before: CPython usually hands
        # this one the same id().
        client = Client(db=url(i), artifacts=str(tmp_path / "art"))
        with sy.start_run(client=client) as run:
            sy.log_metric("m", float(i))
        run_ids.append(run.run_id)
        del client, run
    for i, run_id in enumerate(run_ids):
        assert Client(db=url(i)).tracking.get_run(run_id).metrics == {"m": float(i)}


def test_normal_exit_finishes_open_runs(sdk_backend: str, tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import shipyard as sy
        run = sy.start_run(experiment="atexit")
        for i in range(1000):
            sy.log_metric("m", float(i), step=i)
        print(run.run_id)
    """)
    env = {**__import__("os").environ, "SHIPYARD_FLUSH_INTERVAL": "3600"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, check=True)
    run_id = out.stdout.strip()
    stored = default_client().tracking.get_run(run_id)
    assert stored.status is RunStatus.FINISHED
    assert stored.metrics == {"m": 999.0}
    assert len(default_client().tracking.get_metric_history(run_id, "m")) == 1000
