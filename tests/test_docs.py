"""The documentation keeps up with the code: settings, public surfaces, capability READMEs."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from shipyard.config import Settings

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["shipyard", "shipyard.store", "shipyard.artifacts", "shipyard.tracking",
            "shipyard.models", "shipyard.registry", "shipyard.features", "shipyard.auth",
            "shipyard.api", "shipyard.server", "shipyard.serving", "shipyard.deployments",
            "shipyard.rollout",
            "shipyard.client", "shipyard.fluent", "shipyard.errors", "shipyard.config"]


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented(field: str) -> None:
    text = (ROOT / "docs" / "settings.md").read_text()
    assert f"`SHIPYARD_{field.upper()}`" in text, f"SHIPYARD_{field.upper()} not in settings.md"
    assert f"`{field}`" in text


def test_every_setting_has_a_description() -> None:
    missing = [n for n, f in Settings.model_fields.items() if not f.description]
    assert missing == []


@pytest.mark.parametrize("package", PACKAGES)
def test_public_names_exist(package: str) -> None:
    module = importlib.import_module(package)
    exported = module.__all__
    assert exported, f"{package} declares no public API"
    for name in exported:
        assert getattr(module, name) is not None, f"{package}.{name}"


@pytest.mark.parametrize("capability", ["store", "artifacts", "tracking", "models",
                                        "registry", "features", "auth", "serving",
                                        "deployments", "rollout"])
def test_each_capability_folder_has_a_readme_naming_its_api(capability: str) -> None:
    readme = ROOT / "src" / "shipyard" / capability / "README.md"
    module = importlib.import_module(f"shipyard.{capability}")
    text = readme.read_text()
    undocumented = [n for n in module.__all__ if n not in text]
    assert undocumented == [], f"{readme} does not name {undocumented}"


def test_readme_has_the_two_setup_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "pip install . && shipyard quickstart" in text
    assert 'pip install -e ".[dev]" && python -m pytest -n 2' in text
    assert 'pip install -e ".[dev]" && python -m pytest -n 2' in (ROOT / ".ci" / "run").read_text()


def test_import_shipyard_is_light() -> None:
    import subprocess
    import sys

    code = ("import sys, shipyard; heavy = [m for m in ('sqlalchemy', 'pandas', 'numpy', "
            "'sklearn', 'pydantic') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
