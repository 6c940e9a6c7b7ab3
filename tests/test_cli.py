from __future__ import annotations

import pytest
from typer.testing import CliRunner

from recert.cli import app

runner = CliRunner()

COMMANDS = [
    ["demo"],
    ["init"],
    ["discover"],
    ["owners"],
    ["campaign", "open"],
    ["campaign", "status"],
    ["notify"],
    ["enforce"],
    ["reenable"],
    ["report", "orphans"],
    ["report", "stale"],
    ["report", "risky"],
    ["report", "enforcement"],
    ["inventory"],
    ["evidence", "export"],
    ["evidence", "verify"],
    ["audit", "verify"],
    ["web"],
    ["catalog", "validate"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert len(result.output.strip().splitlines()) > 3


def test_bad_usage_exits_2() -> None:
    assert runner.invoke(app, ["inventory", "--format", "yaml"]).exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2
