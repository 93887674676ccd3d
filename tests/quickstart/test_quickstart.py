"""The quickstart: its data set, its step structure, and a real end-to-end run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from shipyard import errors
from shipyard.cli import app
from shipyard.client import Client
from shipyard.config import Settings
from shipyard.quickstart import (
    FEATURES,
    LABEL,
    PROTECTED_ATTRIBUTE,
    STEPS,
    make_credit_data,
    resolve_home,
    run_quickstart,
)
from shipyard.serving import read_predictions

COLUMNS = {
    "customer_id", "application_date", "age", "gender", "income", "employment_years",
    "home_ownership", "debt", "debt_to_income", "credit_history_months", "num_open_accounts",
    "num_late_payments", "loan_amount", "loan_purpose", "default",
}


# -- the data set -------------------------------------------------------------------------------

def test_credit_data_is_deterministic_per_seed() -> None:
    pd.testing.assert_frame_equal(make_credit_data(800, seed=3), make_credit_data(800, seed=3))
    assert not make_credit_data(800, seed=3).equals(make_credit_data(800, seed=4))


def test_credit_data_columns_and_types() -> None:
    df = make_credit_data(2000, seed=7)
    assert set(df.columns) == COLUMNS
    assert len(df) == 2000
    assert df["customer_id"].is_unique
    assert df.notna().all().all()
    assert set(df[LABEL].unique()) == {0, 1}
    assert PROTECTED_ATTRIBUTE in df.columns and PROTECTED_ATTRIBUTE not in FEATURES
    for col in ("loan_purpose", "home_ownership", "gender"):
        assert isinstance(df[col].dtype, pd.CategoricalDtype)
    assert pd.api.types.is_datetime64_any_dtype(df["application_date"])
    assert df["application_date"].is_monotonic_increasing
    span = df["application_date"].max() - df["application_date"].min()
    assert pd.Timedelta(days=600) < span <= pd.Timedelta(days=731)
    assert df["age"].between(21, 75).all()
    assert (df["income"] > 0).all()
    assert ((df["debt"] / df["income"]).round(4) - df["debt_to_income"]).abs().max() < 1e-3


@pytest.mark.parametrize("seed", [1, 7, 42])
def test_credit_data_default_rate_is_sane(seed: int) -> None:
    rate = make_credit_data(5000, seed=seed)[LABEL].mean()
    assert 0.15 <= rate <= 0.25


def test_credit_data_default_depends_on_risk_drivers() -> None:
    df = make_credit_data(5000, seed=7)
    late = df[df["num_late_payments"] >= 2][LABEL].mean()
    clean = df[df["num_late_payments"] == 0][LABEL].mean()
    assert late > clean + 0.1


@pytest.mark.parametrize("bad", [0, -5, 2.5])
def test_credit_data_rejects_bad_row_counts(bad: object) -> None:
    with pytest.raises(errors.InvalidInput):
        make_credit_data(bad)  # type: ignore[arg-type]


# -- the walk-through ---------------------------------------------------------------------------

def test_steps_are_named_and_end_with_where_to_look() -> None:
    names = [s.name for s in STEPS]
    assert names[:3] == ["data", "train", "compare"]
    assert names[-2:] == ["rollout", "where-to-look"]
    assert len(set(names)) == len(names)


def test_resolve_home_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "env-home"))
    assert resolve_home(tmp_path / "given") == tmp_path / "given"
    assert resolve_home() == tmp_path / "env-home"
    monkeypatch.delenv("SHIPYARD_HOME")
    assert resolve_home() == Path.cwd().resolve() / ".shipyard"


def test_run_quickstart_with_chosen_steps(tmp_path: Path) -> None:
    ctx = run_quickstart(tmp_path / "qs-home", rows=300, seed=1, steps=[STEPS[0]])
    assert ctx.data is not None and len(ctx.data) == 300
    assert ctx.home == tmp_path / "qs-home"
    assert ctx.client.settings.home == tmp_path / "qs-home"


def test_quickstart_rejects_too_few_rows() -> None:
    result = CliRunner().invoke(app, ["quickstart", "--rows", "10"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    with pytest.raises(errors.InvalidInput):
        run_quickstart(rows=10)


def test_quickstart_end_to_end(tmp_path: Path) -> None:
    """The real command in a fresh folder: results land in ./.shipyard next to the user."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env["COLUMNS"] = "120"
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run([sys.executable, "-m", "shipyard.cli", "quickstart", "--rows", "1500",
                           "--seed", "3"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "shipyard runs compare" in done.stdout
    home = work / ".shipyard"
    assert (home / "shipyard.db").exists()

    service = Client(Settings(home=home)).tracking
    exp = service.get_experiment_by_name("credit-risk")
    runs, _ = service.search_runs([exp.experiment_id], order_by=["metrics.roc_auc DESC"])
    parents = [r for r in runs if r.parent_run_id is None]
    children = [r for r in runs if r.parent_run_id is not None]
    assert [p.run_name for p in parents] == ["model-selection"]
    assert len(children) >= 3
    assert {c.parent_run_id for c in children} == {parents[0].run_id}
    for child in children:
        assert child.status.value == "FINISHED"
        assert child.metrics["roc_auc"] > 0.6
        assert {"accuracy", "f1", "precision", "recall", "log_loss"} <= set(child.metrics)
        assert [i.name for i in child.inputs] == ["credit-applications"]
        paths = {a.path for a in service.list_artifacts(child.run_id)}
        assert {"feature_importance.parquet", "roc_curve.parquet"} <= paths
    assert parents[0].tags["best_run_id"] == children[0].run_id
    boosting = next(c for c in children if c.run_name == "hist_gradient_boosting")
    assert len(service.get_metric_history(boosting.run_id, "valid_roc_auc")) >= 10
    assert f"Best run: {children[0].run_id}" in done.stdout

    registry = Client(Settings(home=home)).registry
    champion = registry.resolve("models:/credit-risk@champion")
    assert champion.run_id == children[0].run_id  # the best candidate
    assert champion.metrics["roc_auc"] == pytest.approx(children[0].metrics["roc_auc"])
    assert [d["name"] for d in registry.lineage(champion.uri)["run"]["datasets"]] == [
        "credit-applications"]
    assert "credit-risk@champion" in done.stdout and "shipyard models lineage" in done.stdout

    features = Client(Settings(home=home)).features
    assert {o.name for o in features.list("feature_view")} == {"customer_profile",
                                                                 "credit_activity"}
    feature_exp = service.get_experiment_by_name("credit-risk-features")
    (training,), _ = service.search_runs([feature_exp.experiment_id])
    assert training.run_name == "training-data"
    assert [i.name for i in training.inputs] == ["features:credit_model_features"]
    assert "Online features of customer" in done.stdout and "(present)" in done.stdout

    # the rollout step: the champion served, the runner-up canaried, the router decided
    deployments = Client(Settings(home=home)).deployments
    deployment = deployments.get("credit-risk")
    decisions = deployments.decisions("credit-risk")
    assert [d.action for d in decisions[:2]] == ["create", "update"]
    final = decisions[-1]
    assert final.actor == "router" and final.action in ("promote", "rollback")
    assert deployment.status == ("promoted" if final.action == "promote" else "rolled_back")
    assert final.evidence["arms"]["challenger"]["requests"] > 0
    # the accuracy guard is relative: the challenger judged against the champion's arm
    assert [str(g) for g in deployments.get("credit-risk", revision=2).guards] == [
        "error_rate<=0.01", "accuracy>=stable-0.02"]
    assert final.evidence["stable_arm"] == "production"
    assert final.evidence["arms"]["production"]["accuracy_samples"] >= 50
    [judged] = [r for r in final.evidence["guards"]["challenger"]
                if r.startswith("accuracy>=stable-0.02: ")]
    assert " vs production " in judged and "difference" in judged
    assert ("The router protected production" if final.action == "rollback"
            else "The challenger held every guard") in done.stdout
    challenger = registry.resolve("models:/credit-risk@challenger")
    assert challenger.run_id == children[1].run_id  # the runner-up
    production = registry.resolve("models:/credit-risk@production").version
    assert production == (challenger.version if final.action == "promote"
                          else champion.version)
    assert registry.resolve("models:/credit-risk@champion").version == champion.version
    assert "Router decision:" in done.stdout
    assert "shipyard deployments history credit-risk" in done.stdout
    served = read_predictions(home, "credit-risk")
    assert set(served["deployment"].dropna()) == {"credit-risk"}
    assert {"production", "challenger"} <= set(served["arm"].dropna())
