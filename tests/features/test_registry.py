"""The feature registry on SQLite and PostgreSQL: plan, apply, versions, audit, atomicity."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from shipyard import errors
from shipyard.features import (
    DataFrameSource,
    Entity,
    Feature,
    FeatureView,
    FileSource,
    OnDemandFeatureView,
)
from shipyard.features import _registry as registry_module
from shipyard.features._registry import Change, FeatureRegistry, diff_specs
from shipyard.features._repo import Kind, Repo, load_repo
from shipyard.store import Database, edges_of, tables

from .test_repo import copy_example_repo, edit


@pytest.fixture
def registry(database: Database, tmp_path: Path) -> FeatureRegistry:
    return FeatureRegistry(database, "tester", home=tmp_path / "home")


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    return copy_example_repo(tmp_path / "feature_repo", with_data=False)


def audit_events(db: Database) -> list[dict]:
    t = tables.audit_events
    with db.read() as conn:
        rows = conn.execute(sa.select(t).where(t.c.action == "feature.apply")
                            .order_by(t.c.id)).mappings().all()
    return [dict(r) for r in rows]


def stored_rows(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(
            tables.feature_objects)).scalar_one())


# -- plan and apply --------------------------------------------------------------------------

def test_plan_on_an_empty_registry_creates_everything_and_writes_nothing(
        registry: FeatureRegistry, repo_dir: Path, database: Database) -> None:
    plan = registry.plan(load_repo(repo_dir))
    assert not plan.applied and plan.has_changes
    assert [(i.kind.value, i.name, i.change, i.to_version) for i in plan.items] == [
        ("entity", "customer", Change.CREATE, 1),
        ("feature_view", "customer_profile", Change.CREATE, 1),
        ("feature_view", "transaction_stats", Change.CREATE, 1),
        ("on_demand_view", "debt_ratios", Change.CREATE, 1),
        ("feature_service", "credit_model_v1", Change.CREATE, 1)]
    assert plan.items[1].file == str(repo_dir / "customer.py")
    assert plan.summary() == "5 to create, 0 to update (0 breaking), 0 unchanged, 0 not in repo"
    assert stored_rows(database) == 0 and registry.list() == []


def test_apply_stores_specs_and_a_replan_is_unchanged(registry: FeatureRegistry, repo_dir: Path,
                                                      database: Database) -> None:
    repo = load_repo(repo_dir)
    applied = registry.apply(repo)
    assert applied.applied and len(applied.of(Change.CREATE)) == 5
    listed = registry.list()
    assert [(o.kind, o.name, o.version, o.creator) for o in listed][:2] == [
        (Kind.ENTITY, "customer", 1, "tester"), (Kind.FEATURE_VIEW, "customer_profile", 1,
                                                 "tester")]
    assert all(len(o.digest) == 64 for o in listed)
    assert registry.get(Kind.FEATURE_VIEW, "customer_profile") == repo.feature_views[
        "customer_profile"]
    assert [o.name for o in registry.list("feature_view")] == ["customer_profile",
                                                               "transaction_stats"]

    again = registry.plan(load_repo(repo_dir))
    assert {i.change for i in again.items} == {Change.UNCHANGED} and not again.has_changes
    assert registry.apply(load_repo(repo_dir)).of(Change.UNCHANGED) == again.items
    assert stored_rows(database) == 5 and len(audit_events(database)) == 5


def test_compatible_change_is_a_new_version_not_breaking(registry: FeatureRegistry,
                                                         repo_dir: Path) -> None:
    registry.apply(load_repo(repo_dir))
    edit(repo_dir / "transactions.py", "timedelta(days=7)", "timedelta(days=14)")
    edit(repo_dir / "transactions.py", '        Feature(name="late_payments_90d"',
         '        Feature(name="txn_max_7d", dtype=ValueType.FLOAT64),\n'
         '        Feature(name="late_payments_90d"')
    plan = registry.plan(load_repo(repo_dir))
    [item] = plan.of(Change.UPDATE_COMPATIBLE)
    assert (item.name, item.from_version, item.to_version, item.breaking) == (
        "transaction_stats", 1, 2, False)
    assert item.reasons == []
    assert item.changes == ["added feature 'txn_max_7d'", "ttl: P7D → P14D"]
    assert len(plan.of(Change.UNCHANGED)) == 4

    registry.apply(load_repo(repo_dir))
    assert "txn_max_7d" in registry.get("feature_view", "transaction_stats").features
    assert "txn_max_7d" not in registry.get("feature_view", "transaction_stats", 1).features
    assert [o.version for o in registry.versions("feature_view", "transaction_stats")] == [1, 2]


def test_breaking_change_says_why_and_keeps_the_old_version(registry: FeatureRegistry,
                                                            repo_dir: Path,
                                                            database: Database) -> None:
    registry.apply(load_repo(repo_dir))
    edit(repo_dir / "customer.py", 'Feature(name="age", dtype=ValueType.INT64)',
         'Feature(name="age", dtype=ValueType.FLOAT64)')
    edit(repo_dir / "customer.py", '        Feature(name="employment_years", '
         'dtype=ValueType.FLOAT64),\n', "")
    edit(repo_dir / "customer.py", 'description="A borrower."', 'description="A client."')
    plan = registry.plan(load_repo(repo_dir))
    view = next(i for i in plan.items if i.name == "customer_profile")
    assert view.change is Change.UPDATE_BREAKING and view.breaking
    assert view.reasons == ["feature 'age': dtype int64 → float64",
                            "removed feature 'employment_years'"]
    entity = next(i for i in plan.items if i.name == "customer")
    assert entity.change is Change.UPDATE_COMPATIBLE
    assert entity.changes == ["description: A borrower. → A client."]
    assert plan.summary() == "0 to create, 2 to update (1 breaking), 3 unchanged, 0 not in repo"

    applied = registry.apply(load_repo(repo_dir))
    assert applied.summary() == "0 created, 2 updated (1 breaking), 3 unchanged, 0 not in repo"
    old = registry.get("feature_view", "customer_profile", version=1)
    new = registry.get("feature_view", "customer_profile")
    assert old.features == ["income", "age", "employment_years"]
    assert new.features == ["income", "age"]
    events = audit_events(database)
    assert len(events) == 7
    last = [e for e in events if e["object_id"] == "customer_profile"][-1]
    assert last["object_type"] == "feature_view" and last["actor"] == "tester"
    assert '"breaking": true' in last["details"] and '"version": 2' in last["details"]
    history = registry.history("feature_view", "customer_profile")
    assert [(h.change, h.to_version) for h in history] == [
        (Change.CREATE, 1), (Change.UPDATE_BREAKING, 2)]


def test_definitions_missing_from_the_repo_are_listed_never_deleted(
        registry: FeatureRegistry, repo_dir: Path) -> None:
    registry.apply(load_repo(repo_dir))
    (repo_dir / "services.py").unlink()
    plan = registry.apply(load_repo(repo_dir))
    [gone] = plan.of(Change.NOT_IN_REPO)
    assert (gone.kind, gone.name, gone.from_version, gone.to_version) == (
        Kind.FEATURE_SERVICE, "credit_model_v1", 1, None)
    assert registry.get("feature_service", "credit_model_v1").features


def test_lineage_edges_link_each_version_to_what_it_reads(registry: FeatureRegistry,
                                                          repo_dir: Path,
                                                          database: Database) -> None:
    registry.apply(load_repo(repo_dir))
    with database.read() as conn:
        view_edges = edges_of(conn, ("feature_view", "customer_profile/1"))
        service_edges = edges_of(conn, ("feature_service", "credit_model_v1/1"))
    assert {(e["src_type"], e["src_id"], e["relation"]) for e in view_edges} >= {
        ("entity", "customer/1", "input_of"), }
    assert {(e["src_type"], e["src_id"]) for e in service_edges} == {
        ("feature_view", "customer_profile/1"), ("feature_view", "transaction_stats/1"),
        ("on_demand_view", "debt_ratios/1")}


def test_a_failure_in_the_middle_of_apply_writes_nothing(registry: FeatureRegistry,
                                                         repo_dir: Path, database: Database,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = registry_module.record_event

    def failing(conn: sa.Connection, **kwargs: object) -> None:
        calls.append(kwargs["object_id"])
        if len(calls) == 3:
            raise errors.InvalidInput(f"invalid definition {kwargs['object_id']}")
        real(conn, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(registry_module, "record_event", failing)
    with pytest.raises(errors.InvalidInput, match="invalid definition"):
        registry.apply(load_repo(repo_dir))
    assert len(calls) == 3
    assert stored_rows(database) == 0 and audit_events(database) == []
    with database.read() as conn:
        assert edges_of(conn, ("feature_view", "customer_profile/1")) == []


def test_an_invalid_source_found_during_apply_writes_nothing(registry: FeatureRegistry,
                                                             repo_dir: Path,
                                                             database: Database) -> None:
    loaded = load_repo(repo_dir)
    bad = FeatureView(name="zz_last", entities=["customer"],
                      schema=[Feature(name="x", dtype="int64")],
                      source=DataFrameSource.of("frame", pd.DataFrame({"x": [1]})))
    repo = Repo.of([d for _, d in loaded.definitions()] + [bad])
    with pytest.raises(errors.InvalidInput, match="no timestamp column 'event_timestamp'"):
        registry.apply(repo)
    assert stored_rows(database) == 0 and audit_events(database) == []
    assert not registry.sources_dir.exists()


# -- sources ---------------------------------------------------------------------------------

def _frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": range(n), "x": [float(i) for i in range(n)],
                         "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC")})


def _frame_repo(frame: pd.DataFrame) -> Repo:
    view = FeatureView(name="scores", entities=["customer"],
                       schema=[Feature(name="x", dtype="float64")],
                       source=DataFrameSource.of("scores_frame", frame))
    return Repo.of([Entity(name="customer", join_keys=["customer_id"]), view])


def test_a_dataframe_source_is_stored_as_parquet_under_the_home(registry: FeatureRegistry,
                                                                tmp_path: Path) -> None:
    registry.apply(_frame_repo(_frame(3)))
    stored = registry.get("feature_view", "scores")
    assert isinstance(stored.source, FileSource)
    path = Path(stored.source.path)
    assert path.parent == tmp_path / "home" / "features" / "sources"
    assert path.name.startswith("scores_frame-") and len(path.stem) == len("scores_frame-") + 12
    pd.testing.assert_frame_equal(pd.read_parquet(path), _frame(3))
    assert registry.plan(_frame_repo(_frame(3))).of(Change.UNCHANGED)[1].name == "scores"
    changed = registry.plan(_frame_repo(_frame(4)))
    [item] = changed.of(Change.UPDATE_COMPATIBLE)
    assert item.changes[0].startswith("source.path:")


def test_relative_file_paths_are_resolved_against_the_repo(registry: FeatureRegistry,
                                                           tmp_path: Path) -> None:
    view = FeatureView(name="v", entities=["customer"], schema=[Feature(name="x", dtype="int64")],
                       source=FileSource(path="data/v.parquet"))
    repo = Repo.of([Entity(name="customer"), view], path=tmp_path / "repo")
    registry.apply(repo)
    stored = registry.get("feature_view", "v")
    assert stored.source.path == str(tmp_path / "repo" / "data" / "v.parquet")  # type: ignore


# -- reading ---------------------------------------------------------------------------------

def test_an_on_demand_view_comes_back_without_its_function(registry: FeatureRegistry,
                                                           repo_dir: Path) -> None:
    registry.apply(load_repo(repo_dir))
    odfv = registry.get("on_demand_view", "debt_ratios")
    assert isinstance(odfv, OnDemandFeatureView)
    assert odfv.function_name == "ratios.loan_to_income"
    assert "def loan_to_income" in odfv.function_source
    with pytest.raises(errors.Conflict, match="load the feature repository"):
        odfv.function  # noqa: B018


def test_unknown_names_versions_and_kinds(registry: FeatureRegistry, repo_dir: Path) -> None:
    registry.apply(load_repo(repo_dir))
    with pytest.raises(errors.NotFound, match="feature view 'nope' is not in"):
        registry.get("feature_view", "nope")
    with pytest.raises(errors.NotFound, match="version 9"):
        registry.get("feature_view", "customer_profile", 9)
    with pytest.raises(errors.NotFound):
        registry.versions("entity", "nope")
    with pytest.raises(errors.InvalidInput, match="unknown kind 'view'"):
        registry.list("view")


# -- the versioning rule (no database) -------------------------------------------------------

VIEW_SPEC = {"name": "v", "entities": ["customer"], "ttl": "P7D", "owner": "a",
             "schema": [{"name": "x", "dtype": "int64", "description": ""}],
             "source": {"kind": "file", "path": "/a.parquet", "timestamp_field": "ts"}}


@pytest.mark.parametrize(("kind", "old", "new", "breaking", "compatible"), [
    (Kind.FEATURE_VIEW, VIEW_SPEC, {**VIEW_SPEC, "entities": ["customer", "merchant"]},
     ["entities: [\"customer\"] → [\"customer\", \"merchant\"]"], []),
    (Kind.FEATURE_VIEW, VIEW_SPEC,
     {**VIEW_SPEC, "source": {**VIEW_SPEC["source"], "timestamp_field": "event_ts"}},
     ["source.timestamp_field: ts → event_ts"], []),
    (Kind.FEATURE_VIEW, VIEW_SPEC,
     {**VIEW_SPEC, "source": {**VIEW_SPEC["source"], "path": "/b.parquet"}, "owner": "b",
      "tags": {"t": "1"}},
     [], ["source.path: /a.parquet → /b.parquet", "owner: a → b", 'tags: unset → {"t": "1"}']),
    (Kind.ENTITY, {"name": "c", "join_keys": ["id"], "value_type": "int64"},
     {"name": "c", "join_keys": ["id"], "value_type": "string"},
     ["value_type: int64 → string"], []),
    (Kind.FEATURE_SERVICE, {"name": "s", "features": ["a:x", "b"]},
     {"name": "s", "features": ["b", "c:y"]}, ["removed feature 'a:x'"], ["added feature 'c:y'"]),
    (Kind.ON_DEMAND_VIEW,
     {"name": "o", "inputs": ["v:x"], "request_schema": [], "function_source": "a",
      "schema": [{"name": "y", "dtype": "float64"}]},
     {"name": "o", "inputs": ["v:x"], "request_schema": [{"name": "r", "dtype": "int64"}],
      "function_source": "b",
      "schema": [{"name": "y", "dtype": "float64"}, {"name": "z", "dtype": "float64"}]},
     ["added request field 'r'", "function source changed"], ["added feature 'z'"]),
])
def test_which_changes_are_breaking(kind: Kind, old: dict, new: dict, breaking: list[str],
                                    compatible: list[str]) -> None:
    assert diff_specs(kind, old, new) == (breaking, compatible)
