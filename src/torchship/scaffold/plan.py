"""Deciding, before anything is written, what init does with each file.

The rules (README, "torchship init"):
- a file that is not there is created; one that already reads as init would write it is left alone;
- a file init wrote (.torchship/init.json has its sha256) that nobody changed since is updated;
- a shared file (buildspec, pipeline, torchship.toml, requirements) the user changed is kept: adding a
  model does not need it rewritten, and the user's edits are the point of those files;
- .gitignore gets the lines init needs appended; none of its lines is ever removed;
- any other difference (a model's own file the user changed, or a file torchship did not write, such as
  the repository's own buildspec.yml) is a conflict: init refuses and names the files, unless --force.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torchship.scaffold.errors import InitError
from torchship.scaffold.files import GITIGNORE, FileText
from torchship.scaffold.record import InitRecord, sha256_text

Action = Literal["create", "unchanged", "update", "append", "keep", "conflict", "overwrite"]
WRITES: frozenset[Action] = frozenset({"create", "update", "append", "overwrite"})


@dataclass(frozen=True)
class PlannedFile:
    path: str
    text: str  # what init writes (for "append": the file with the missing lines added)
    action: Action
    why: str  # for the report: why this action

    @property
    def writes(self) -> bool:
        return self.action in WRITES


def _read_existing(path: Path, relative: str) -> str | None:
    if not path.exists() and not path.is_symlink():
        return None
    if not path.is_file():
        raise InitError(
            f"{relative} exists and is not a file ({path})",
            hint="Move it aside: torchship init writes a file there.",
        )
    return path.read_bytes().decode("utf-8", errors="surrogateescape")


def _check_parents(repo: Path, relative: str) -> None:
    for parent in Path(relative).parents:
        where = repo / parent
        if parent != Path(".") and where.exists() and not where.is_dir():
            raise InitError(
                f"{parent} exists and is not a directory ({where})",
                hint=f"Move it aside: torchship init writes {relative} inside it.",
            )


def _gitignore_with(existing: str, wanted: str) -> str:
    """`existing` with the patterns of `wanted` it lacks appended under init's comment line."""
    present = {line.strip() for line in existing.splitlines()}
    lines = wanted.splitlines()
    missing = [line for line in lines if line.strip() and not line.startswith("#") and line not in present]
    if not missing:
        return existing
    separator = "" if not existing or existing.endswith("\n") else "\n"
    return existing + separator + "\n" + "\n".join([lines[0], *missing]) + "\n"


def _decide(file: FileText, existing: str | None, record: InitRecord | None, force: bool) -> PlannedFile:
    if existing is None:
        return PlannedFile(file.path, file.text, "create", "new")
    if existing == file.text:
        return PlannedFile(file.path, file.text, "unchanged", "already as init writes it")
    if file.path == GITIGNORE:
        merged = _gitignore_with(existing, file.text)
        if merged == existing:
            return PlannedFile(file.path, existing, "unchanged", "already ignores what torchship writes")
        return PlannedFile(file.path, merged, "append", "the patterns it lacked appended")
    written = record.wrote(file.path) if record is not None else None
    if written is not None and written.sha256 == sha256_text(existing):
        return PlannedFile(
            file.path, file.text, "update",
            f"written by torchship init {written.torchship_version} and unchanged since",
        )  # fmt: skip
    why = "changed since torchship init wrote it" if written is not None else "not written by torchship init"
    if force:
        return PlannedFile(file.path, file.text, "overwrite", f"{why}; --force")
    if written is not None and file.shared:
        return PlannedFile(file.path, existing, "keep", f"{why}: yours now")
    return PlannedFile(file.path, existing, "conflict", why)


def plan_files(
    repo: Path, files: list[FileText], record: InitRecord | None, force: bool
) -> list[PlannedFile]:
    """What init does with each of `files` in `repo`; reads only."""
    planned = []
    for file in files:
        _check_parents(repo, file.path)
        planned.append(_decide(file, _read_existing(repo / file.path, file.path), record, force))
    return planned
