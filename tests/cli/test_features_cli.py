"""``shipyard features …`` through the in-process runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipyard.cli._features import KindChoice
from shipyard.features._repo import Kind

from ..features.test_repo import copy_example_repo, edit
from .conftest import Invoke
from .test_cli import assert_one_line_error


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    return copy_example_repo(tmp_path / "feature_repo", with_data=False)


def test_plan_then_apply_then_plan_again(invoke: Invoke, repo_dir: Path) -> None:
    planned = invoke("features", "plan", str(repo_dir))
    assert planned.exit_code == 0, planned.output
    assert "customer_profile" in planned.stdout and "new → v1" in planned.stdout
    assert "5 to create, 0 to update (0 breaking), 0 unchanged" in planned.stdout
    applied = invoke("features", "apply", str(repo_dir))
    assert applied.exit_code == 0, applied.output
    assert "5 created, 0 updated (0 breaking)" in applied.stdout
    again = json.loads(invoke("features", "plan", str(repo_dir), "-o", "json").stdout)
    assert again["applied"] is False
    assert {i["change"] for i in again["items"]} == {"unchanged"}


def test_repo_dir_defaults_to_the_current_folder(invoke: Invoke, repo_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo_dir)
    result = invoke("features", "apply", "-o", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["items"]) == 5


def test_breaking_change_is_shown_with_its_reason(invoke: Invoke, repo_dir: Path) -> None:
    invoke("features", "apply", str(repo_dir))
    edit(repo_dir / "customer.py", '        Feature(name="employment_years", '
         'dtype=ValueType.FLOAT64),\n', "")
    (repo_dir / "services.py").unlink()
    planned = invoke("features", "plan", str(repo_dir))
    assert planned.exit_code == 0, planned.output
    assert "update-breaking" in planned.stdout and "v1 → v2" in planned.stdout
    assert "BREAKING: removed feature 'employment_years'" in planned.stdout
    assert "not-in-repo" in planned.stdout and "apply never deletes" in planned.stdout
    assert invoke("features", "apply", str(repo_dir)).exit_code == 0

    described = invoke("features", "describe", "customer_profile")
    assert described.exit_code == 0, described.output
    for fragment in ("365 days", "customer", "income", "float64", "event_timestamp",
                     "customer_profile.parquet", "update-breaking", "v2"):
        assert fragment in described.stdout, fragment
    old = json.loads(invoke("features", "show", "customer_profile", "--version", "1",
                            "-o", "json").stdout)
    assert [f["name"] for f in old["spec"]["schema"]] == ["income", "age", "employment_years"]


def test_list_show_and_describe(invoke: Invoke, repo_dir: Path) -> None:
    invoke("features", "apply", str(repo_dir))
    listed = invoke("features", "list")
    assert listed.exit_code == 0, listed.output
    assert "transaction_stats" in listed.stdout and "txn_count_7d" in listed.stdout
    views = json.loads(invoke("features", "list", "--kind", "feature_view", "-o", "json").stdout)
    assert [(v["name"], v["version"]) for v in views] == [("customer_profile", 1),
                                                          ("transaction_stats", 1)]
    shown = invoke("features", "show", "transaction_stats")
    assert shown.exit_code == 0, shown.output
    assert "txn_amount_7d: float64" in shown.stdout and "P7D" in shown.stdout
    as_json = json.loads(invoke("features", "show", "credit_model_v1", "-o", "json").stdout)
    assert as_json["kind"] == "feature_service" and as_json["creator"]
    odfv = invoke("features", "describe", "debt_ratios")
    assert odfv.exit_code == 0, odfv.output
    assert "loan_amount: float64" in odfv.stdout and "ratios.loan_to_income" in odfv.stdout
    entity = invoke("features", "describe", "customer", "--kind", "entity")
    assert entity.exit_code == 0 and "customer_id" in entity.stdout


def test_bad_repositories_are_one_line_errors(invoke: Invoke, repo_dir: Path,
                                              tmp_path: Path) -> None:
    assert_one_line_error(invoke("features", "plan", str(tmp_path / "missing")),
                          "is not a folder")
    edit(repo_dir / "customer.py", "DATA = Path", "DATA = (Path")
    assert_one_line_error(invoke("features", "apply", str(repo_dir)),
                          f"{repo_dir / 'customer.py'}:", "syntax error")
    assert invoke("features", "list", "-o", "json").stdout.strip() == "[]"


def test_unknown_and_ambiguous_names_are_one_line_errors(invoke: Invoke, repo_dir: Path) -> None:
    invoke("features", "apply", str(repo_dir))
    assert_one_line_error(invoke("features", "show", "nope"), "'nope' is not in the feature")
    assert_one_line_error(invoke("features", "show", "customer_profile", "--version", "7"),
                          "version 7")
    assert_one_line_error(invoke("features", "list", "--kind", "view"), "view")
    edit(repo_dir / "services.py", 'name="credit_model_v1"', 'name="customer"')
    assert invoke("features", "apply", str(repo_dir)).exit_code == 0
    assert_one_line_error(invoke("features", "describe", "customer"), "--kind")


def test_kind_choices_are_the_registry_kinds() -> None:
    assert [k.value for k in KindChoice] == [k.value for k in Kind]


def test_materialize_then_read_online(invoke: Invoke, repo_dir: Path) -> None:
    import pandas as pd

    from tests.features.example_repo._data import write_example_data

    write_example_data(repo_dir)
    data = repo_dir / "data" / "customer_profile.parquet"
    frame = pd.read_parquet(data)
    frame["event_timestamp"] = pd.Timestamp.now(tz="UTC").floor("h")  # fresh, within TTL
    frame.groupby("customer_id").tail(1).to_parquet(data, index=False)
    assert invoke("features", "apply", str(repo_dir)).exit_code == 0
    done = invoke("features", "materialize", "--view", "customer_profile")
    assert done.exit_code == 0, done.output
    assert "customer_profile" in done.stdout
    online = invoke("features", "online", "-f", "customer_profile:income",
                    "-e", "customer_id=1001", "-e", "customer_id=5", "-o", "json")
    assert online.exit_code == 0, online.output
    got = json.loads(online.stdout)
    assert got[0]["statuses"]["income"] == "present" and got[0]["values"]["income"] > 0
    assert got[1]["statuses"]["income"] == "missing"
    bad = invoke("features", "online", "-f", "customer_profile:income", "-e", "nokey")
    assert bad.exit_code == 2
