"""The model folder: integrity checks, missing libraries, refused input — three distinct errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import shipyard as sy
from shipyard import errors
from shipyard.models import MANIFEST, capture_environment, load_model_dir, save_model


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({"a": rng.normal(size=30), "b": rng.normal(size=30)})


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, str]:
    from sklearn.linear_model import LogisticRegression

    X = _frame()
    model = LogisticRegression().fit(X, (X["a"] > 0).astype(int))
    _, digest = save_model(model, tmp_path / "model", input_example=X)
    return tmp_path / "model", digest


def _payload_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != MANIFEST)


def test_the_three_errors_are_distinct_classes() -> None:
    kinds = (errors.IntegrityError, errors.MissingDependency, errors.InvalidInput)
    for a in kinds:
        for b in kinds:
            assert (a is b) == issubclass(a, b)


def test_saved_folder_loads_and_lists_every_file(saved: tuple[Path, str]) -> None:
    folder, digest = saved
    loaded = load_model_dir(folder, digest)
    assert set(loaded.manifest.files) == set(_payload_files(folder))
    assert _payload_files(folder) == ["input_example.json", "model.pkl"]


@pytest.mark.parametrize("name", ["model.pkl", "input_example.json"])
def test_tampering_any_file_is_an_integrity_error_naming_it(
        saved: tuple[Path, str], name: str) -> None:
    folder, digest = saved
    file = folder / name
    file.write_bytes(file.read_bytes() + b" ")
    for expected in (None, digest):
        with pytest.raises(errors.IntegrityError, match=f"model file {name} has SHA-256"):
            load_model_dir(folder, expected)


def test_a_missing_file_is_an_integrity_error_naming_it(saved: tuple[Path, str]) -> None:
    folder, digest = saved
    (folder / "model.pkl").unlink()
    with pytest.raises(errors.IntegrityError, match="model file model.pkl is missing"):
        load_model_dir(folder, digest)


def test_editing_the_manifest_breaks_the_registered_digest(saved: tuple[Path, str]) -> None:
    folder, digest = saved
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["metadata"] = {"sneaky": True}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(errors.IntegrityError, match=MANIFEST):
        load_model_dir(folder, digest)


def test_swapping_a_file_and_its_hash_is_still_caught_by_the_digest(
        saved: tuple[Path, str]) -> None:
    folder, digest = saved
    import hashlib

    payload = (folder / "model.pkl").read_bytes() + b"evil"
    (folder / "model.pkl").write_bytes(payload)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"]["model.pkl"] = hashlib.sha256(payload).hexdigest()
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(errors.IntegrityError, match="registered"):
        load_model_dir(folder, digest)


def test_a_corrupt_manifest_is_an_integrity_error(saved: tuple[Path, str]) -> None:
    folder, _ = saved
    (folder / MANIFEST).write_text('{"flavor": ')
    with pytest.raises(errors.IntegrityError, match=MANIFEST):
        load_model_dir(folder)


def test_a_different_expected_digest_is_an_integrity_error(saved: tuple[Path, str]) -> None:
    folder, digest = saved
    other = "0" * 64
    with pytest.raises(errors.IntegrityError) as info:
        load_model_dir(folder, other)
    assert digest in str(info.value) and other in str(info.value)


def test_tampered_registry_cache_is_refused(client: sy.Client) -> None:
    from sklearn.linear_model import LinearRegression

    X = _frame()
    model = LinearRegression().fit(X, X["a"] * 3)
    with sy.start_run("format", client=client) as run:
        info = run.log_model(model, input_example=X, registered_model_name="m")
    sy.load_model("models:/m/1", client=client)  # fills the local cache
    cached = client.registry.cache_dir / info.digest / "model.pkl"
    cached.write_bytes(cached.read_bytes()[:-1] + b"\x00")
    with pytest.raises(errors.IntegrityError, match="model.pkl"):
        sy.load_model("models:/m/1", client=client)


def test_folder_without_manifest_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidInput, match="not a Shipyard model folder"):
        load_model_dir(tmp_path)


def test_saving_into_a_non_empty_folder_is_refused(saved: tuple[Path, str]) -> None:
    folder, _ = saved
    with pytest.raises(errors.AlreadyExists):
        save_model(lambda df: df, folder)


# -- missing libraries -------------------------------------------------------------------------

def _xgboost_model() -> Any:
    xgb = pytest.importorskip("xgboost")
    X = _frame()
    return xgb.XGBRegressor(n_estimators=2, max_depth=2, n_jobs=1).fit(X, X["a"])


def _lightgbm_model() -> Any:
    lgb = pytest.importorskip("lightgbm")
    X = _frame()
    return lgb.LGBMRegressor(n_estimators=2, num_leaves=3, min_child_samples=3,
                             verbose=-1).fit(X, X["a"])


def _pytorch_model() -> Any:
    torch = pytest.importorskip("torch")
    return torch.nn.Sequential(torch.nn.Linear(2, 1))


def _onnx_model() -> Any:
    pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LinearRegression

    X = _frame().to_numpy(dtype=np.float32)
    return skl2onnx.to_onnx(LinearRegression().fit(X, X[:, 0]), X[:1])


def _sklearn_model() -> Any:
    from sklearn.linear_model import LinearRegression

    X = _frame()
    return LinearRegression().fit(X, X["a"])


@pytest.mark.parametrize(("build", "module", "extra"), [
    (_xgboost_model, "xgboost", "xgboost"),
    (_lightgbm_model, "lightgbm", "lightgbm"),
    (_pytorch_model, "torch", "pytorch"),
    (_onnx_model, "onnxruntime", "onnx"),
    (_sklearn_model, "sklearn", "sklearn"),
], ids=["xgboost", "lightgbm", "pytorch", "onnx", "sklearn"])
def test_missing_flavor_library_is_missing_dependency_naming_the_extra(
        build: Callable[[], Any], module: str, extra: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, digest = save_model(build(), tmp_path / "m")
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(errors.MissingDependency) as info:
        load_model_dir(tmp_path / "m", digest)
    message = str(info.value)
    assert f"pip install 'shipyard-mlops[{extra}]'" in message
    assert repr(module) in message and "not installed" in message


def test_broken_library_import_is_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from shipyard.models.flavors import require

    real = importlib.import_module

    def broken(name: str, *args: Any) -> Any:
        if name == "fancylib":
            raise ImportError("libfancy.so: cannot open shared object file")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(errors.MissingDependency, match="cannot be imported.*libfancy.so"):
        require("fancylib", "fancy")


# -- refused input -----------------------------------------------------------------------------

def test_input_the_signature_rejects_is_invalid_input(saved: tuple[Path, str]) -> None:
    folder, digest = saved
    loaded = load_model_dir(folder, digest)
    with pytest.raises(errors.InvalidInput, match="missing columns: b") as info:
        loaded.predict(pd.DataFrame({"a": [1.0]}))
    assert not isinstance(info.value, errors.IntegrityError | errors.MissingDependency)
    with pytest.raises(errors.InvalidInput, match="column 'a' is string"):
        loaded.predict_proba({"a": ["x"], "b": [1.0]})


def test_input_example_the_model_cannot_predict_is_invalid_input(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    X = _frame()
    model = LinearRegression().fit(X, X["a"])
    with pytest.raises(errors.InvalidInput, match="could not predict on input_example"):
        save_model(model, tmp_path / "m", input_example=pd.DataFrame({"zzz": ["q"]}))
    assert not (tmp_path / "m").exists()


# -- environment -------------------------------------------------------------------------------

def test_environment_pins_installed_versions_and_skips_absent_ones() -> None:
    env = capture_environment(("scikit-learn", "no-such-dist-shipyard-test"), ["extra-req==1"])
    pins = env["requirements"]
    assert pins[0].startswith("shipyard-mlops==")
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in pins
    assert f"pandas=={metadata.version('pandas')}" in pins
    assert not any(p.startswith("no-such-dist") for p in pins)
    assert pins[-1] == "extra-req==1"
    assert env["python"].count(".") == 2


def test_environment_capture_and_flavor_modules_import_no_ml_library() -> None:
    code = """
import sys
from shipyard.models import capture_environment, get_flavor, FLAVORS
packages = [p for name in FLAVORS for p in get_flavor(name).PACKAGES]
capture_environment(packages)
heavy = ("xgboost", "lightgbm", "torch", "onnx", "onnxruntime", "skl2onnx", "sklearn", "scipy")
print(",".join(m for m in heavy if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == ""
