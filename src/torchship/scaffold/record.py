""".torchship/init.json: what `torchship init` wrote (path -> sha256 and the torchship version).

Without it, a file that differs from what init would write could be the user's edit of init's file or a
file that was there before torchship; the record tells them apart. Commit it with the other files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from torchship.scaffold.errors import InitError

RECORD_PATH = ".torchship/init.json"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class WrittenFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str  # of the content init wrote (the user may have changed the file since)
    torchship_version: str  # the version that wrote it


class InitRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    torchship_version: str  # of the last init that wrote anything
    files: dict[str, WrittenFile] = {}

    def wrote(self, path: str) -> WrittenFile | None:
        return self.files.get(path)

    def to_text(self) -> str:
        # Sorted and indented: the file is committed, and diffs of it should read well.
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def read_record(repo: Path) -> InitRecord | None:
    """The record of an earlier init, None when there is none; a clear error when it is unreadable."""
    path = repo / RECORD_PATH
    if not path.is_file():
        return None
    try:
        return InitRecord.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise InitError(
            f"{path} is not a record torchship init can read: {first}",
            hint=f"Restore it from git, or delete it: init then treats every existing file as yours and "
            f"refuses to overwrite any that differs ({path}).",
        ) from None
