"""The ``shipyard`` CLI through typer's runner (in-process) and, for the entry point, for real."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shipyard._version import __version__
from shipyard.client import Client
from shipyard.store import HEAD_REVISION

from .conftest import History, Invoke


def assert_one_line_error(result, *fragments: str, code: int = 2) -> None:
    """Exit ``code``, nothing but one ``error: …`` line on stderr, no traceback anywhere."""
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr


# -- root ---------------------------------------------------------------------------------------

def test_version(invoke: Invoke) -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"shipyard {__version__}"


def test_help_lists_the_command_groups(invoke: Invoke) -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for group in ("experiments", "runs", "db", "quickstart"):
        assert group in result.stdout


def test_unknown_command_is_a_one_line_usage_error(invoke: Invoke) -> None:
    assert_one_line_error(invoke("teleport"), "No such command", "shipyard --help")


def test_bad_option_value_is_a_one_line_usage_error(invoke: Invoke) -> None:
    assert_one_line_error(invoke("runs", "list", "--limit", "many"), "--limit")


def test_invalid_settings_are_a_one_line_error(invoke: Invoke,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_FLUSH_INTERVAL", "-1")
    assert_one_line_error(invoke("runs", "list"), "SHIPYARD_FLUSH_INTERVAL")


@pytest.mark.parametrize("content", [None, "- not\n- a mapping\n", "db: [unclosed\n"])
def test_bad_config_file_is_a_one_line_error(invoke: Invoke, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             content: str | None) -> None:
    config = tmp_path / "cfg.yaml"
    if content is not None:
        config.write_text(content)
    monkeypatch.setenv("SHIPYARD_CONFIG", str(config))
    assert_one_line_error(invoke("experiments", "list"), "cfg.yaml")


# -- experiments --------------------------------------------------------------------------------

def test_experiments_create_and_list(invoke: Invoke) -> None:
    result = invoke("experiments", "create", "fraud", "--tag", "team=risk", "-t", "tier=1")
    assert result.exit_code == 0, result.stderr
    assert "'fraud'" in result.stdout
    listed = invoke("experiments", "list")
    assert listed.exit_code == 0
    assert "fraud" in listed.stdout and "team=risk" in listed.stdout
    data = json.loads(invoke("experiments", "list", "-o", "json").stdout)
    assert [e["name"] for e in data] == ["fraud"]
    assert data[0]["tags"] == {"team": "risk", "tier": "1"}


def test_experiments_create_rejects_duplicates_and_bad_tags(invoke: Invoke) -> None:
    assert invoke("experiments", "create", "fraud").exit_code == 0
    assert_one_line_error(invoke("experiments", "create", "fraud"), "already exists")
    assert_one_line_error(invoke("experiments", "create", "x", "--tag", "novalue"), "KEY=VALUE")


def test_experiments_rename_by_name_and_id(invoke: Invoke, history: History) -> None:
    assert invoke("experiments", "rename", "credit", "credit-v2").exit_code == 0
    assert invoke("experiments", "rename", history.experiment_id, "credit-v3").exit_code == 0
    names = [e["name"] for e in json.loads(invoke("experiments", "list", "-o", "json").stdout)]
    assert "credit-v3" in names and "credit" not in names
    assert_one_line_error(invoke("experiments", "rename", "credit-v3", "churn"),
                          "already exists")


def test_experiments_delete_and_restore(invoke: Invoke, history: History) -> None:
    assert invoke("experiments", "delete", "churn").exit_code == 0
    active = invoke("experiments", "list", "-o", "json").stdout
    deleted = invoke("experiments", "list", "--view", "deleted_only", "-o", "json").stdout
    assert [e["name"] for e in json.loads(active)] == ["credit"]
    assert [e["name"] for e in json.loads(deleted)] == ["churn"]
    assert_one_line_error(invoke("experiments", "delete", "churn"), "already deleted")
    assert invoke("experiments", "restore", history.other_experiment_id).exit_code == 0
    assert len(json.loads(invoke("experiments", "list", "-o", "json").stdout)) == 2


@pytest.mark.parametrize("command", ["delete", "restore"])
def test_unknown_experiment_is_exit_2(invoke: Invoke, command: str) -> None:
    assert_one_line_error(invoke("experiments", command, "nope"),
                          "experiment 'nope' does not exist")


def test_experiments_list_rejects_a_bad_view(invoke: Invoke) -> None:
    assert_one_line_error(invoke("experiments", "list", "--view", "recent"), "--view")


# -- runs list / show ---------------------------------------------------------------------------

def test_runs_list(invoke: Invoke, history: History) -> None:
    result = invoke("runs", "list")
    assert result.exit_code == 0, result.stderr
    for run_id in (history.best, history.worst, history.child, history.other):
        assert run_id in result.stdout
    only = json.loads(invoke("runs", "list", "--experiment", "churn", "-o", "json").stdout)
    assert [r["run_id"] for r in only] == [history.other]
    assert only[0]["experiment_name"] == "churn"
    assert len(json.loads(invoke("runs", "list", "--limit", "2", "-o", "json").stdout)) == 2


def test_runs_list_unknown_experiment(invoke: Invoke) -> None:
    assert_one_line_error(invoke("runs", "list", "--experiment", "ghost"),
                          "experiment 'ghost' does not exist")


def test_runs_show(invoke: Invoke, history: History) -> None:
    result = invoke("runs", "show", history.best)
    assert result.exit_code == 0, result.stderr
    for text in ("gbm-big", "credit", "FINISHED", "model", "gbm", "auc", "0.9", "owner",
                 "applications", "notes/readme.txt", "5 B"):
        assert text in result.stdout, text
    parent = invoke("runs", "show", history.middle)
    assert history.child in parent.stdout


def test_runs_show_json(invoke: Invoke, history: History) -> None:
    data = json.loads(invoke("runs", "show", history.middle, "-o", "json").stdout)
    assert data["params"] == {"model": "gbm", "lr": "0.3"}
    assert data["metrics"] == {"auc": 0.85, "loss": 0.35}
    assert data["child_run_ids"] == [history.child]
    best = json.loads(invoke("runs", "show", history.best, "-o", "json").stdout)
    assert best["inputs"][0]["name"] == "applications"
    assert best["artifacts"][0]["path"] == "notes/readme.txt"


@pytest.mark.parametrize(("run_id", "message"), [
    ("not-a-run", "invalid run id"),
    ("0" * 32, "does not exist"),
])
def test_runs_show_bad_run_id(invoke: Invoke, run_id: str, message: str) -> None:
    assert_one_line_error(invoke("runs", "show", run_id), message)


# -- runs search --------------------------------------------------------------------------------

def test_runs_search_filters_and_orders(invoke: Invoke, history: History) -> None:
    result = invoke("runs", "search", "--filter", "metrics.auc > 0.8 and params.model = 'gbm'",
                    "--order-by", "metrics.auc DESC", "-o", "json")
    assert result.exit_code == 0, result.stderr
    ids = [r["run_id"] for r in json.loads(result.stdout)]
    assert ids == [history.best, history.middle, history.child]


def test_runs_search_table_and_experiments(invoke: Invoke, history: History) -> None:
    result = invoke("runs", "search", "-e", "credit", "-e", "churn", "--filter",
                    "metrics.loss >= 0.5", "--order-by", "metrics.loss")
    assert result.exit_code == 0, result.stderr
    assert history.worst in result.stdout and history.other in result.stdout
    assert history.best not in result.stdout
    assert "metrics.loss" in result.stdout and "params.model" in result.stdout


def test_runs_search_csv(invoke: Invoke, history: History) -> None:
    result = invoke("runs", "search", "-e", "credit", "--order-by", "metrics.auc ASC",
                    "--max-results", "2", "-o", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["run_id"] for r in rows] == [history.worst, history.child]
    assert rows[0]["metrics.auc"] == "0.7" and rows[0]["experiment"] == "credit"


@pytest.mark.parametrize("bad", ["metrics.auc >> 0.8", "metrics.auc > 0.8 OR params.x = 'y'",
                                 "bogus.key = 1", "metrics.auc >"])
def test_runs_search_bad_filter_is_one_line(invoke: Invoke, history: History, bad: str) -> None:
    assert_one_line_error(invoke("runs", "search", "--filter", bad), "invalid filter")


def test_runs_search_bad_order_by(invoke: Invoke) -> None:
    result = invoke("runs", "search", "--order-by", "metrics.auc SIDEWAYS")
    assert_one_line_error(result)


# -- runs compare -------------------------------------------------------------------------------

def test_runs_compare_table(invoke: Invoke, history: History) -> None:
    result = invoke("runs", "compare", history.best, history.worst, history.middle)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "≠ model" in out and "≠ lr" in out
    assert "0.9 *" in out  # best auc
    assert "0.3 *" in out  # lowest loss wins


def test_runs_compare_json(invoke: Invoke, history: History) -> None:
    result = invoke("runs", "compare", history.best, history.worst, "-o", "json")
    data = json.loads(result.stdout)
    assert data["differing_params"] == ["model"]
    assert data["best"] == {"auc": [history.best], "loss": [history.best]}
    assert data["metrics"]["auc"] == {history.best: 0.9, history.worst: 0.7}


def test_runs_compare_needs_two_runs(invoke: Invoke, history: History) -> None:
    assert_one_line_error(invoke("runs", "compare", history.best), "at least two")
    assert_one_line_error(invoke("runs", "compare", history.best, history.best), "at least two")
    assert_one_line_error(invoke("runs", "compare", history.best, "f" * 32), "does not exist")


# -- runs delete / restore / gc -----------------------------------------------------------------

def test_runs_delete_and_restore(invoke: Invoke, history: History) -> None:
    assert invoke("runs", "delete", history.worst).exit_code == 0
    listed = json.loads(invoke("runs", "list", "-o", "json").stdout)
    assert history.worst not in {r["run_id"] for r in listed}
    deleted = json.loads(invoke("runs", "list", "--view", "deleted_only", "-o", "json").stdout)
    assert [r["run_id"] for r in deleted] == [history.worst]
    assert_one_line_error(invoke("runs", "delete", history.worst), "already deleted")
    assert invoke("runs", "restore", history.worst).exit_code == 0
    assert_one_line_error(invoke("runs", "restore", history.worst), "already active")


def test_runs_gc_marks_orphans_failed(invoke: Invoke, client: Client) -> None:
    assert invoke("runs", "gc").stdout.strip() == "no orphaned runs"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    exp = client.tracking.create_experiment("gc")
    orphan = client.tracking.create_run(exp.experiment_id, owner_pid=dead.pid)
    result = invoke("runs", "gc", "--stale-after", "3600")
    assert result.exit_code == 0, result.stderr
    assert orphan.run_id in result.stdout
    assert client.tracking.get_run(orphan.run_id).status.value == "FAILED"


def test_runs_gc_rejects_negative_staleness(invoke: Invoke) -> None:
    assert_one_line_error(invoke("runs", "gc", "--stale-after", "-5"), "--stale-after")


# -- db -----------------------------------------------------------------------------------------

def test_db_current_and_upgrade(invoke: Invoke, shipyard_home: Path) -> None:
    fresh = invoke("db", "current")
    assert fresh.exit_code == 0
    assert "not initialized" in fresh.stdout
    assert not (shipyard_home / "shipyard.db").exists()  # looking does not create it
    assert invoke("db", "current", "--check").exit_code == 1
    upgraded = invoke("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.stderr
    assert HEAD_REVISION in upgraded.stdout
    current = invoke("db", "current", "--check")
    assert current.exit_code == 0
    assert f"revision: {HEAD_REVISION} (up to date)" in current.stdout
    assert "already at revision" in invoke("db", "upgrade").stdout


# -- the real entry point -----------------------------------------------------------------------

def _shipyard_command() -> list[str]:
    script = Path(sys.executable).with_name("shipyard")
    if script.exists():
        return [str(script)]
    found = shutil.which("shipyard")
    return [found] if found else [sys.executable, "-m", "shipyard.cli"]


def test_entry_point_as_a_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "SHIPYARD_HOME": str(tmp_path / "home")}
    cmd = _shipyard_command()
    helped = subprocess.run([*cmd, "--help"], capture_output=True, text=True, env=env,
                            timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert "experiments" in helped.stdout
    version = subprocess.run([*cmd, "--version"], capture_output=True, text=True, env=env,
                             timeout=60)
    assert version.stdout.strip() == f"shipyard {__version__}"
    bad = subprocess.run([*cmd, "experiments", "delete", "nope"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr == "error: experiment 'nope' does not exist\n"


def test_importing_the_cli_stays_light() -> None:
    code = ("import sys, shipyard.cli; heavy = ('sqlalchemy', 'pandas', 'numpy', 'sklearn', "
            "'shipyard.client', 'shipyard.tracking', 'alembic'); "
            "print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
