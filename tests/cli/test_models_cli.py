"""``shipyard models …`` through the in-process runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

import shipyard as sy
from shipyard.client import Client

from .conftest import Invoke
from .test_cli import assert_one_line_error


@pytest.fixture
def registered(client: Client) -> Client:
    X = pd.DataFrame({"income": np.linspace(10, 90, 50), "debt": np.linspace(9, 1, 50)})
    y = (X["income"] > 45).astype(int)
    for c in (0.1, 1.0):
        with sy.start_run(experiment="credit-risk") as run:
            run.log_metric("auc", 0.8 + c / 10)
            run.log_input(X, name="applications")
            run.log_model(LogisticRegression(C=c).fit(X, y), input_example=X.head(),
                          registered_model_name="credit")
    return client


def test_list_and_versions(invoke: Invoke, registered: Client) -> None:
    listed = invoke("models", "list", "-o", "json")
    assert listed.exit_code == 0, listed.output
    assert [(m["name"], m["latest_version"]) for m in json.loads(listed.stdout)] == [
        ("credit", 2)]
    table = invoke("models", "versions", "credit")
    assert table.exit_code == 0 and "ready" in table.stdout


def test_alias_set_move_history_and_delete(invoke: Invoke, registered: Client) -> None:
    assert invoke("models", "alias", "credit", "champion", "1").stdout.strip() == \
        "credit@champion: unset → v1"
    moved = invoke("models", "alias", "credit", "champion", "2", "--reason", "better")
    assert moved.stdout.strip() == "credit@champion: v1 → v2"
    shown = json.loads(invoke("models", "show", "credit@champion", "-o", "json").stdout)
    assert shown["version"] == 2 and shown["aliases"] == ["champion"]
    history = invoke("models", "alias", "credit", "champion", "--history")
    assert "better" in history.stdout
    deleted = invoke("models", "alias", "credit", "champion", "--delete")
    assert deleted.stdout.strip() == "credit@champion: v2 → unset"
    assert registered.registry.get_model("credit").aliases == {}


def test_archive_is_refused_while_aliased(invoke: Invoke, registered: Client) -> None:
    invoke("models", "alias", "credit", "production", "1")
    assert_one_line_error(invoke("models", "archive", "credit/1"), "production")
    assert invoke("models", "archive", "credit/2").exit_code == 0
    assert registered.registry.get_version("credit", 2).status.value == "archived"


def test_lineage_shows_run_metrics_and_dataset(invoke: Invoke, registered: Client) -> None:
    result = invoke("models", "lineage", "credit/2")
    assert result.exit_code == 0, result.output
    assert "auc=0.9" in result.stdout and "dataset applications" in result.stdout
    graph = json.loads(invoke("models", "lineage", "credit/2", "-o", "json").stdout)
    assert graph["run"]["datasets"][0]["num_rows"] == 50


def test_download_and_package(invoke: Invoke, registered: Client, tmp_path: Path) -> None:
    dl = invoke("models", "download", "credit/1", "--out", str(tmp_path / "dl"))
    assert dl.exit_code == 0, dl.output
    from shipyard.models import load_model_dir

    loaded = load_model_dir(tmp_path / "dl", registered.registry.get_version("credit", 1).digest)
    assert loaded.flavor == "sklearn"
    pkg = invoke("models", "package", "credit/latest", "--out", str(tmp_path / "pkg"))
    assert pkg.exit_code == 0, pkg.output
    hpa = yaml.safe_load((tmp_path / "pkg" / "k8s" / "hpa.yaml").read_text())
    assert hpa["spec"]["minReplicas"] == 2


def test_bad_references_are_one_line_errors(invoke: Invoke, registered: Client) -> None:
    assert_one_line_error(invoke("models", "show", "credit/9"), "no version 9")
    assert_one_line_error(invoke("models", "show", "credit@nope"), "no alias 'nope'")
    assert_one_line_error(invoke("models", "alias", "credit", "bad alias!", "1"),
                          "invalid alias")
    assert_one_line_error(invoke("models", "register", "runs:/zz/model", "x"), "invalid model URI")
