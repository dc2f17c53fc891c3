"""Every `recsys` command and subcommand answers --help with a description."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from qianmian.cli import app


def command_paths(group: typer.core.TyperGroup, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        paths.append((*prefix, name))
        if isinstance(command, typer.core.TyperGroup):
            paths.extend(command_paths(command, (*prefix, name)))
    return paths


ROOT = typer.main.get_command(app)
PATHS = command_paths(ROOT)


def test_the_main_commands_are_there() -> None:
    names = {path[0] for path in PATHS}
    assert {"validate", "synth", "train", "recommend", "caps", "publish", "serve", "events"} <= names
    assert ("caps", "simulate") in PATHS


@pytest.mark.parametrize("path", PATHS, ids=" ".join)
def test_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    command = ROOT
    for name in path:
        command = command.commands[name]
    assert (command.help or command.short_help or "").strip(), f"`recsys {' '.join(path)}` has no help text"
