"""What the runner remembers beside the stage dirs of one name/version, and who may write there.

- `state.json`: which stages' last run failed (their kept outputs are stale until a run succeeds) and
  which spec file the outputs belong to, so a second spec file claiming the same name and version with
  different content is refused instead of overwriting (or, before, wiping) the first one's outputs.
- `.lock`: an exclusive flock held by the one run that may write; a second run is refused at once with
  the holder's pid and spec, never left to delete the first one's outputs or temp dirs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from torchship.errors import SpecError, TorchshipError
from torchship.spec import ModelSpec, load_spec
from torchship.versions import check_format, this_version

STATE_NAME = "state.json"
STATE_FORMAT = 1  # the layout of state.json; raise it when a field changes meaning
LOCK_NAME = ".lock"


@dataclass
class StageFailure:
    at: str
    error: str


@dataclass
class SpecOwner:
    path: str
    identity: str  # content of the spec that shapes outputs (spec_identity)


@dataclass
class RunState:
    failed: dict[str, StageFailure] = field(default_factory=dict)
    owner: SpecOwner | None = None

    @classmethod
    def load(cls, root: Path) -> RunState:
        """state.json as any torchship whose state format this one knows wrote it (a newer format is refused:
        versions.check_format); an unreadable file is no state."""
        path = root / STATE_NAME
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        check_format(
            data.get("state_format"),
            known=STATE_FORMAT,
            field="state_format",
            what=str(path),
            written_by=data.get("torchship_version"),
            otherwise=f"delete {path} (it only records failed runs and which spec owns these outputs)",
        )
        owner = data.get("owner")
        return cls(
            failed={k: StageFailure(**v) for k, v in (data.get("failed") or {}).items()},
            owner=SpecOwner(**owner) if owner else None,
        )

    def save(self, root: Path) -> None:
        """Written to a temp file and renamed: a reader never sees half a state."""
        tmp = root / f".{STATE_NAME}.tmp-{os.getpid()}"
        record = {**asdict(self), "state_format": STATE_FORMAT, "torchship_version": this_version()}
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        tmp.replace(root / STATE_NAME)

    def mark_failed(self, stage: str, error: BaseException | None) -> None:
        message = getattr(error, "message", None) or (
            f"{type(error).__name__}: {error}" if error is not None else "failed"
        )
        self.failed[stage] = StageFailure(datetime.now(UTC).isoformat(timespec="seconds"), message)

    def clear(self, stage: str) -> None:
        self.failed.pop(stage, None)

    def owner_from(self, spec: ModelSpec) -> None:
        self.owner = SpecOwner(str(spec.spec_path), spec_identity(spec))


def spec_identity(spec: ModelSpec) -> str:
    """The spec's content plus where its relative source points: two files with the same text in
    different folders can still name different models."""
    source = spec.source
    if "://" not in source and not source.startswith("pkg:"):
        source = str(spec.resolve(source))
    # publish and deploy shape no stage output, and torchship.toml / the environment may change them.
    shaping = spec.model_dump(mode="json", by_alias=True, exclude={"publish", "deploy"})
    return json.dumps({"spec": shaping, "source": source}, sort_keys=True)


def check_owner(root: Path, spec: ModelSpec) -> None:
    """Refuse a spec file that claims the name/version of another, still present spec file with
    different content. A moved or deleted owner is adopted; editing the owner itself is the normal
    workflow (its stages simply re-run)."""
    owner = RunState.load(root).owner
    if owner is None or Path(owner.path) == Path(spec.spec_path):
        return
    other = Path(owner.path)
    if not other.is_file():
        return
    try:
        other_identity = spec_identity(load_spec(other))
    except SpecError:
        return  # the other file no longer claims anything valid
    if other_identity == spec_identity(spec):
        return
    raise SpecError(
        f"{spec.spec_path} and {other} both claim {spec.name} {spec.version} but differ; the outputs "
        f"under {root} belong to {other}, and were left untouched",
        hint=f"Give {spec.spec_path} its own `version:` (or `name:`). If {other} is obsolete, delete it "
        "and run again.",
    )


class RunLock:
    """An exclusive, non-blocking flock on outputs/<name>/<version>/.lock for the duration of a run.

    flock is released by the kernel when the holder dies, so a killed run never leaves a stuck lock."""

    def __init__(self, root: Path, spec_path: Path):
        self.path = root / LOCK_NAME
        self.spec_path = spec_path
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise TorchshipError(
                f"another torchship process is working on {self.path.parent} ({holder}); nothing was changed",
                hint="Wait for it to finish, then run the command again.",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, spec {self.spec_path}".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the flock
            self._fd = None
