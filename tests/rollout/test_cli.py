"""``shipyard deployments serve``: bad input fails fast with one line (the serving itself is
exercised as a real subprocess in ``test_workers.py``)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from shipyard.cli import app
from shipyard.client import Client


@pytest.mark.parametrize("args", [["nope"], ["known", "--workers", "0"],
                                  ["known", "--refresh-interval", "0"]])
def test_serve_bad_input_is_one_line_and_exit_2(client: Client, credit: str,
                                                 args: list[str]) -> None:
    client.deployments.create("known", credit, {"a": "1"}, {"kind": "single", "arm": "a"})
    done = CliRunner().invoke(app, ["deployments", "serve", *args])
    assert done.exit_code == 2, done.output
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1


def test_serve_documents_its_options() -> None:
    done = CliRunner().invoke(app, ["deployments", "serve", "--help"],
                              env={"COLUMNS": "200"})
    assert done.exit_code == 0
    for option in ("--workers", "--max-batch-size", "--refresh-interval",
                   "--control-interval", "--flush-interval", "--shadow-queue", "--decide"):
        assert option in done.stdout
