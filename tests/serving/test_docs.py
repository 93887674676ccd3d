"""The serving docs keep up with the code: README names the API, docs name every option."""

from __future__ import annotations

from pathlib import Path

import shipyard.serving
from shipyard.cli import app

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_names_the_public_api() -> None:
    text = (ROOT / "src" / "shipyard" / "serving" / "README.md").read_text()
    assert [n for n in shipyard.serving.__all__ if n not in text] == []


def test_docs_name_every_serve_and_predict_option() -> None:
    import typer

    text = (ROOT / "docs" / "serving.md").read_text()
    group = typer.main.get_command(app)
    for name in ("serve", "predict"):
        command = group.commands[name]  # type: ignore[attr-defined]
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("--"):
                    assert opt in text, f"docs/serving.md does not mention {name} {opt}"
