"""The command set of `torchship`: every command the README's CLI section documents is one `torchship --help`
lists, each lives in its group's module under torchship/cli (the ci helpers in torchship/ci) and has help."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.core import TyperGroup
from typer.testing import CliRunner

import torchship.ci
import torchship.cli
from torchship.cli import app

REPO = Path(__file__).resolve().parent.parent
CLI_SECTION = "## CLI"


def documented_commands() -> set[str]:
    """`fetch`, `ci changed-specs`, ... from the README's CLI block (`torchship a|b SPEC` names two)."""
    readme = (REPO / "README.md").read_text()
    start = readme.index(CLI_SECTION)
    block = readme[start : readme.index("\n## ", start + len(CLI_SECTION))].split("```")[1]
    found: set[str] = set()
    for line in block.splitlines():
        words = line.split("#")[0].split()
        if len(words) < 2 or words[0] != "torchship" or words[1].startswith("-"):
            continue
        group = "ci " if words[1] == "ci" else ""
        found |= {group + name for name in (words[2] if group else words[1]).split("|")}
    return found


def registered_commands() -> dict[str, Any]:
    """Every command the CLI runs, by the words that run it (`ci image-detail` for a sub-app's)."""
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    found: dict[str, Any] = {}
    for name, command in root.commands.items():
        if isinstance(command, TyperGroup):
            found |= {f"{name} {sub}": subcommand for sub, subcommand in command.commands.items()}
        else:
            found[name] = command
    return found


def test_the_cli_runs_exactly_the_commands_the_readme_documents() -> None:
    assert "run" in documented_commands() and "ci changed-specs" in documented_commands()  # the parse works
    assert set(registered_commands()) == documented_commands()


def test_torchship_help_lists_every_command() -> None:
    listed = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0
    panel = listed.output.split("─ Commands ─")[1]
    names = set(re.findall(r"^│ (\S+) ", panel, flags=re.MULTILINE))
    assert names == {words.split()[0] for words in registered_commands()}


@pytest.mark.parametrize("words", sorted(registered_commands()))
def test_each_command_has_its_group_module_and_help(words: str) -> None:
    command = registered_commands()[words]
    module = command.callback.__module__ if command.callback else ""
    package = torchship.ci if words.startswith("ci ") else torchship.cli
    # A group module under the package, not the package's registration module itself.
    assert module.startswith(package.__name__ + "."), module
    assert (Path(package.__file__).parent / f"{module.rpartition('.')[2]}.py").is_file()
    summary = (command.help or "").strip().splitlines()[0]
    assert len(summary) > 20, f"`torchship {words}` has no help text"
    shown = CliRunner().invoke(app, [*words.split(), "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and summary in shown.output
