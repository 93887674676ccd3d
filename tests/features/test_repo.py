"""Loading a feature repository: collection, sibling imports, checks, one-line errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from shipyard import errors
from shipyard.features import (
    DataFrameSource,
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    FileSource,
)
from shipyard.features._repo import Kind, Repo, load_repo

from .example_repo._data import write_example_data

EXAMPLE_REPO = Path(__file__).with_name("example_repo")

HEADER = "from shipyard.features import *\nfrom datetime import timedelta\n"


def copy_example_repo(dest: Path, *, with_data: bool = True) -> Path:
    """A copy of ``tests/features/example_repo`` at ``dest``, with its Parquet sources."""
    shutil.copytree(EXAMPLE_REPO, dest, ignore=shutil.ignore_patterns("__pycache__", "data"))
    if with_data:
        write_example_data(dest)
    return dest


def edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` (which must occur) by ``new`` in a repository file."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def write_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (root / name).write_text(textwrap.dedent(body))
    return root


@pytest.fixture
def example_repo(tmp_path: Path) -> Path:
    return copy_example_repo(tmp_path / "feature_repo")


ENTITY = 'customer = Entity(name="customer", join_keys=["customer_id"])\n'
VIEW = ('profile = FeatureView(name="profile", entities=["customer"], '
        'schema=[Feature(name="income", dtype="float64")], source=FileSource(path="p.parquet"))\n')


# -- loading ---------------------------------------------------------------------------------

def test_loads_every_definition_of_the_example(example_repo: Path) -> None:
    repo = load_repo(example_repo)
    assert [(k.value, d.name) for k, d in repo.definitions()] == [
        ("entity", "customer"), ("feature_view", "customer_profile"),
        ("feature_view", "transaction_stats"), ("on_demand_view", "debt_ratios"),
        ("feature_service", "credit_model_v1")]
    assert len(repo) == 5
    assert repo.file_of(Kind.FEATURE_VIEW, "transaction_stats") == str(
        example_repo / "transactions.py")
    profile = repo.feature_views["customer_profile"]
    assert profile.ttl == timedelta(days=365)
    assert Path(profile.source.path).is_file()  # type: ignore[union-attr]
    assert profile.source.path.startswith(str(example_repo))  # type: ignore[union-attr]
    odfv = repo.on_demand_views["debt_ratios"]
    assert odfv.function_name == "ratios.loan_to_income"
    out = odfv.function(pd.DataFrame({"income": [50_000.0], "loan_amount": [10_000.0]}))
    assert out["loan_to_income"].tolist() == [0.2]


def test_modules_are_forgotten_so_a_reload_reads_the_files_again(example_repo: Path) -> None:
    before = load_repo(example_repo)
    assert not {"customer", "transactions", "ratios", "services"} & set(sys.modules)
    edit(example_repo / "transactions.py", "timedelta(days=7)", "timedelta(days=8)")
    after = load_repo(example_repo)
    assert before.feature_views["transaction_stats"].ttl == timedelta(days=7)
    assert after.feature_views["transaction_stats"].ttl == timedelta(days=8)


def test_files_can_import_each_other_and_helpers(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "r", {
        "_shared.py": "OWNER = 'risk'\n",
        "entities.py": HEADER + "from _shared import OWNER\n" + ENTITY.replace(
            ")\n", ", owner=OWNER)\n"),
        "views.py": HEADER + "from entities import customer\n" + VIEW.replace(
            'entities=["customer"]', "entities=[customer.name]"),
    })
    repo = load_repo(root)
    # the entity is reachable from both files, but it is one definition
    assert list(repo.entities) == ["customer"]
    assert repo.entities["customer"].owner == "risk"
    assert repo.file_of(Kind.ENTITY, "customer") == str(root / "entities.py")
    assert "_shared" not in sys.modules


def test_skips_private_setup_and_conftest_files(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "r", {"defs.py": HEADER + ENTITY})
    (root / "_private.py").write_text("raise RuntimeError('never imported')\n")
    (root / "setup.py").write_text("raise RuntimeError('never imported')\n")
    (root / "sub").mkdir()
    (root / "sub" / "nested.py").write_text("raise RuntimeError('never imported')\n")
    assert list(load_repo(root).entities) == ["customer"]


def test_repo_of_objects_declared_in_code() -> None:
    customer = Entity(name="customer", join_keys=["customer_id"])
    view = FeatureView(name="v", entities=["customer"], schema=[Feature(name="x", dtype="int64")],
                       source=FileSource(path="/data/v.parquet"))
    repo = Repo.of([customer, view, FeatureService(name="s", features=["v:x"])])
    assert repo.path is None and len(repo) == 3


# -- checks ----------------------------------------------------------------------------------

def test_duplicate_names_name_both_files(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "r", {"a.py": HEADER + ENTITY,
                                       "b.py": HEADER + ENTITY.replace("customer_id", "cid")})
    with pytest.raises(errors.InvalidInput) as info:
        load_repo(root)
    message = info.value.message
    assert "duplicate entity 'customer'" in message
    assert str(root / "a.py") in message and str(root / "b.py") in message


def test_a_view_and_an_on_demand_view_cannot_share_a_name() -> None:
    customer = Entity(name="customer")
    view = FeatureView(name="v", entities=["customer"], schema=[Feature(name="x", dtype="int64")],
                       source=FileSource(path="/v.parquet"))
    from shipyard.features import OnDemandFeatureView

    odfv = OnDemandFeatureView.of(lambda df: df, name="v", inputs=["v:x"],
                                  schema=[Feature(name="y", dtype="int64")])
    with pytest.raises(errors.InvalidInput, match="view names must be unique"):
        Repo.of([customer, view, odfv])


@pytest.mark.parametrize(("defs", "fragment"), [
    (VIEW, "names unknown entity 'customer'"),
    (ENTITY + VIEW + 'svc = FeatureService(name="svc", features=["nope:x"])\n',
     "references 'nope:x': no feature view or on-demand view named 'nope'"),
    (ENTITY + VIEW + 'svc = FeatureService(name="svc", features=["profile:age"])\n',
     "view 'profile' has no feature 'age' (it has income)"),
    (ENTITY + VIEW + 'svc = FeatureService(name="svc", features=["a:b:c"])\n',
     "invalid feature reference 'a:b:c'"),
    (ENTITY + VIEW + 'odfv = OnDemandFeatureView.of(lambda df: df, name="odfv", '
     'inputs=["profile:nope"], schema=[Feature(name="y", dtype="float64")])\n',
     "on demand view 'odfv'"),
    (ENTITY + 'other = Entity(name="other", join_keys=["customer_id"], value_type="string")\n',
     "join key 'customer_id' is int64 in entity 'customer'"),
    (ENTITY + VIEW.replace('name="income", dtype="float64"', 'name="customer_id", dtype="string"'),
     "feature 'customer_id' is string but the join key of that name is int64"),
    (ENTITY + VIEW.replace('[Feature(name="income", dtype="float64")]',
                           '[Feature(name="a", dtype="int64"), Feature(name="a", dtype="int64")]'),
     "declares feature(s) a twice"),
])
def test_invalid_references_are_reported_with_their_file(tmp_path: Path, defs: str,
                                                         fragment: str) -> None:
    root = write_repo(tmp_path / "r", {"defs.py": HEADER + defs})
    with pytest.raises(errors.InvalidInput) as info:
        load_repo(root)
    assert fragment in info.value.message
    assert "\n" not in info.value.message


def test_a_dataframe_source_needs_a_frame() -> None:
    view = FeatureView(name="v", entities=["customer"], schema=[Feature(name="x", dtype="int64")],
                       source=DataFrameSource(name="frame"))
    with pytest.raises(errors.InvalidInput, match="has no frame"):
        Repo.of([Entity(name="customer"), view])


# -- errors while importing ------------------------------------------------------------------

@pytest.mark.parametrize(("body", "where", "fragment"), [
    (HEADER + "x = (\n", "defs.py:3", "syntax error"),
    (HEADER + ENTITY + "y = undefined_name\n", "defs.py:4",
     "NameError: name 'undefined_name' is not defined"),
    (HEADER + "v = FeatureView(name='v', entities=[], schema=[], source=FileSource(path='x'))\n",
     "defs.py:3", "invalid FeatureView: entities: Value error, a feature view needs at least one "
     "entity"),
    (HEADER + "import sys\nsys.exit(3)\n", "defs.py:4", "SystemExit: 3"),
])
def test_errors_in_a_file_name_the_file_and_line(tmp_path: Path, body: str, where: str,
                                                 fragment: str) -> None:
    root = write_repo(tmp_path / "r", {"defs.py": body})
    with pytest.raises(errors.InvalidInput) as info:
        load_repo(root)
    message = info.value.message
    assert message.startswith(str(root / where) + ":"), message
    assert fragment in message
    assert "Traceback" not in message and "\n" not in message
    assert "defs" not in sys.modules and str(root) not in sys.path


def test_an_error_in_an_imported_sibling_names_the_sibling(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "r", {"a.py": "import helper\n",
                                       "helper.py": "def f():\n    return 1 / 0\n\nf()\n"})
    with pytest.raises(errors.InvalidInput) as info:
        load_repo(root)
    assert info.value.message.startswith(f"{root / 'helper.py'}:2: ZeroDivisionError")


def test_a_syntax_error_in_a_sibling_names_the_sibling(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "r", {"a.py": "import helper\n", "helper.py": "def (:\n"})
    with pytest.raises(errors.InvalidInput) as info:
        load_repo(root)
    assert info.value.message.startswith(f"{root / 'helper.py'}:1: syntax error")


@pytest.mark.parametrize("name", ["json.py", "pytest.py"])
def test_a_file_named_like_an_installed_module_is_refused(tmp_path: Path, name: str) -> None:
    root = write_repo(tmp_path / "r", {name: HEADER + ENTITY})
    with pytest.raises(errors.InvalidInput, match="or installed module; rename the file"):
        load_repo(root)


def test_folder_problems_are_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidInput, match="is not a folder"):
        load_repo(tmp_path / "missing")
    empty = write_repo(tmp_path / "empty", {})
    with pytest.raises(errors.InvalidInput, match="has no Python files"):
        load_repo(empty)
    nothing = write_repo(tmp_path / "nothing", {"a.py": "x = 1\n"})
    with pytest.raises(errors.InvalidInput, match="no feature definitions"):
        load_repo(nothing)


def test_loading_imports_no_pandas_duckdb_or_pyarrow(tmp_path: Path) -> None:
    root = copy_example_repo(tmp_path / "repo", with_data=False)
    code = ("import sys; from shipyard.features._repo import load_repo; "
            f"repo = load_repo({str(root)!r}); assert len(repo) == 5; "
            "print(','.join(m for m in ('pandas', 'duckdb', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
