"""`torchship init`: check everything, then write the files a repository needs to ship its models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from torchship import __version__
from torchship.scaffold.checkpoint import choose_task, read_checkpoint
from torchship.scaffold.errors import InitError
from torchship.scaffold.files import FileText, model_files, shared_files
from torchship.scaffold.naming import model_name
from torchship.scaffold.plan import PlannedFile, plan_files
from torchship.scaffold.record import RECORD_PATH, InitRecord, WrittenFile, read_record, sha256_text
from torchship.scaffold.write import write_atomically
from torchship.spec import parse_spec


@dataclass(frozen=True)
class InitRequest:
    repo: Path
    model: Path
    task: str | None = None
    name: str | None = None
    force: bool = False


@dataclass(frozen=True)
class InitOutcome:
    repo: Path
    name: str
    task: str
    spec_path: str  # models/<name>/model.yaml, relative to repo
    files: list[PlannedFile]
    checkpoint_in_repo: bool

    @property
    def wrote_anything(self) -> bool:
        return any(f.writes for f in self.files)


def _check_repo(repo: Path) -> None:
    if not repo.is_dir():
        what = "is not a directory" if repo.exists() else "does not exist"
        raise InitError(
            f"DIR {repo} {what}",
            hint=f"Pass the root of your repository (create it first: git init {repo}).",
        )


def _check_spec(repo: Path, spec: FileText) -> None:
    """The rendered spec loads as a ModelSpec: init never writes a spec that `torchship run` refuses."""
    parse_spec(yaml.safe_load(spec.text), repo / spec.path)


def _refuse(conflicts: list[PlannedFile], kept: list[PlannedFile]) -> InitError:
    named = "; ".join(f"{f.path} ({f.why})" for f in conflicts)
    also = (
        f" (it also replaces the shared files you changed: {', '.join(f.path for f in kept)})" if kept else ""
    )
    return InitError(
        f"torchship init would overwrite {len(conflicts)} file(s): {named}; nothing was written",
        hint=f"Move them aside, or pass --force to overwrite them{also}; your version is lost unless git has it.",
    )


def _new_record(record: InitRecord | None, planned: list[PlannedFile]) -> InitRecord:
    files = dict(record.files) if record is not None else {}
    for file in planned:
        if file.action == "keep":
            continue  # the record keeps what init wrote: the file stays "changed by the user"
        previous = files.get(file.path)
        sha = sha256_text(file.text)
        if previous is None or previous.sha256 != sha or file.writes:
            version = previous.torchship_version if previous and previous.sha256 == sha else __version__
            files[file.path] = WrittenFile(sha256=sha, torchship_version=version)
    return InitRecord(torchship_version=__version__, files=files)


def init_repository(request: InitRequest) -> InitOutcome:
    """Plan every file, refuse on any conflict with nothing written, else write what changed (atomically)
    and the record of it."""
    repo = request.repo
    _check_repo(repo)
    checkpoint = read_checkpoint(request.model)
    name = model_name(request.name, checkpoint.path.resolve().name)
    task = choose_task(checkpoint, request.task)
    own = model_files(repo, name, task, checkpoint)
    _check_spec(repo, own[0])
    record = read_record(repo)
    planned = plan_files(repo, [*shared_files(), *own], record, request.force)
    conflicts = [f for f in planned if f.action == "conflict"]
    if conflicts:
        raise _refuse(conflicts, [f for f in planned if f.action == "keep"])
    if any(f.writes for f in planned):
        for file in planned:
            if file.writes:
                write_atomically(repo / file.path, file.text)
        # Last: an interrupted init leaves files the record does not claim, which the next run treats
        # as not written by init (refused unless identical), never the reverse.
        write_atomically(repo / RECORD_PATH, _new_record(record, planned).to_text())
    return InitOutcome(
        repo=repo,
        name=name,
        task=task,
        spec_path=own[0].path,
        files=planned,
        checkpoint_in_repo=checkpoint.path.resolve().is_relative_to(repo.resolve()),
    )
