"""docs/cli.md is generated from the command tree: a new or changed command must update it."""

from __future__ import annotations

from pathlib import Path

from shipyard.cli._docgen import render_cli_reference

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_cli_reference_is_up_to_date() -> None:
    assert DOCS.read_text(encoding="utf-8") == render_cli_reference(), (
        "docs/cli.md is out of date: run `python -m shipyard.cli._docgen --write`")


def test_every_command_is_documented() -> None:
    text = render_cli_reference()
    for path in ("shipyard experiments list", "shipyard runs search", "shipyard runs compare",
                 "shipyard runs gc", "shipyard db upgrade", "shipyard db current",
                 "shipyard quickstart"):
        assert f"## `{path}`" in text
