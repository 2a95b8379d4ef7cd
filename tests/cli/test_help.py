"""`--help` on every `gpumarket` command and group, found by walking the click tree (a new
command is covered without editing this test)."""

from __future__ import annotations

import click
from click.testing import CliRunner

from gpumarket.cli import main


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths += command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


def test_every_command_has_help() -> None:
    paths = command_paths(main)
    assert len(paths) > 30  # the tree was walked, not just the root
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(main, [*path, "--help"], prog_name="gpumarket")
        assert result.exit_code == 0, (path, result.output)
        assert result.output.startswith("Usage: gpumarket"), (path, result.output[:200])
        command = main
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        assert command.help or command.short_help, f"{' '.join(path)} has no description"
