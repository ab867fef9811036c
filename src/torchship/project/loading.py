"""Finding and reading the repository's settings file, with errors that name the file, the key and what
is allowed (the file is hand-written, like the model spec)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from torchship.project.model import (
    PROJECT_FILE,
    PYPROJECT_FILE,
    PYPROJECT_TABLE,
    Environment,
    ProjectError,
    ProjectSettings,
)

HINT = "Fix the file; the README's 'Repository settings and environments' section lists every key."


def _read_toml(path: Path, shown: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ProjectError(f"{shown}: the file is not UTF-8 text", hint=HINT) from None
    except tomllib.TOMLDecodeError as exc:  # its message ends "(at line L, column C)"
        raise ProjectError(f"{shown}: invalid TOML: {exc}", hint=HINT) from None


def _torchship_table(pyproject: Path) -> dict[str, Any] | None:
    """pyproject.toml's [tool.torchship] table, or None when it has none. A pyproject.toml that does not
    parse is only our business when it mentions the table (it may belong to a tool that tolerates it)."""
    shown = f"{pyproject} [{PYPROJECT_TABLE}]"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if PYPROJECT_TABLE not in text:
        return None
    table = _read_toml(pyproject, shown).get("tool", {}).get("torchship")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ProjectError(f"{shown}: must be a table of keys, not {type(table).__name__}", hint=HINT)
    return table


def find_project_file(start: Path) -> Path | None:
    """The nearest torchship.toml, or pyproject.toml with a [tool.torchship] table, in `start` (a spec file's
    directory, or the file itself) or a directory above it; torchship.toml wins within one directory."""
    here = start.resolve()
    if not here.is_dir():
        here = here.parent
    for directory in (here, *here.parents):
        if (directory / PROJECT_FILE).is_file():
            return directory / PROJECT_FILE
        if (directory / PYPROJECT_FILE).is_file() and _torchship_table(
            directory / PYPROJECT_FILE
        ) is not None:
            return directory / PYPROJECT_FILE
    return None


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the table that holds `loc`: the top level, or one [environments.NAME] table."""
    model: type[BaseModel] = Environment if len(loc) == 3 and loc[0] == "environments" else ProjectSettings
    return sorted(name for name, field in model.model_fields.items() if not field.exclude)


def _describe(error: ErrorDetails) -> str:
    loc = tuple(error["loc"])
    if loc and loc[-1] == "[key]":  # a bad [environments.NAME] table name
        return (
            f"environment name {loc[-2]!r} must be lowercase letters, digits and '-' (it names "
            "directories and appears in resource names), e.g. 'staging'"
        )
    key = ".".join(str(part) for part in loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key '{key}'; allowed keys here: {', '.join(_allowed_keys(loc))}"
    got = error.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "string_pattern_mismatch" and loc[-1] == "namespace":
        message = "must be a Kubernetes namespace name: lowercase letters, digits and '-', at most 63"
    return f"key '{key}': {message}{shown}"


def parse_project(data: dict[str, Any], file: Path) -> ProjectSettings:
    shown = ProjectSettings(file=file).where
    if "file" in data:
        allowed = ", ".join(_allowed_keys(()))
        raise ProjectError(f"{shown}: unknown key 'file'; allowed keys here: {allowed}", hint=HINT)
    try:
        return ProjectSettings.model_validate({**data, "file": file})
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise ProjectError(f"{shown}: {problems}", hint=HINT) from None


def load_project(start: Path) -> ProjectSettings:
    """The settings of the repository `start` is in; empty settings (file None) when there is no file."""
    file = find_project_file(start)
    if file is None:
        return ProjectSettings()
    data = (_torchship_table(file) or {}) if file.name == PYPROJECT_FILE else _read_toml(file, str(file))
    return parse_project(data, file)
