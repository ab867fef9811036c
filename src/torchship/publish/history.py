"""A stage's history: one entry per promotion, kept by the registry, so that who moved `production` to which
version, when, why and with what diff is an audit trail (`torchship history NAME`)."""

from __future__ import annotations

import getpass
import os
import subprocess
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

# CI systems name who started a run in these variables (first found wins); CodeBuild's is the IAM principal or
# the pipeline that started the build.
_CI_ACTORS = (
    ("CODEBUILD_INITIATOR", "codebuild"),
    ("GITHUB_ACTOR", "github"),
    ("GITLAB_USER_LOGIN", "gitlab"),
    ("BUILDKITE_BUILD_CREATOR", "buildkite"),
    ("BUILD_USER_ID", "jenkins"),
)


class DiffSummary(BaseModel):
    """What the diff behind a promotion found, in brief (the full record is stored beside it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    against: str  # the version the stage pointed at
    inputs: int
    measures: dict[str, float | None]
    breaches: list[str]  # each breach's message
    p99_ratio: float | None = None


class PromotionEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    stage: str
    version: str
    previous: str | None
    at: str
    who: str
    git_commit: str | None = None
    # "promoted": no diff breached a limit (or there was nothing to compare); "accepted": limits breached and
    # promoted anyway with --accept-diff and a reason.
    decision: str
    reason: str | None = None
    diff: DiffSummary | None = None
    diff_record: dict[str, Any] | None = None  # the whole DiffRecord, as JSON


def promotion_actor(environ: Mapping[str, str] | None = None) -> str:
    """Who is promoting: the CI run's initiator when in CI, else git's user.email, else the OS user."""
    environ = os.environ if environ is None else environ
    for variable, system in _CI_ACTORS:
        if environ.get(variable):
            return f"{environ[variable]} ({system})"
    try:
        email = subprocess.run(
            ["git", "config", "user.email"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        email = ""
    if email:
        return f"{email} (git)"
    try:
        return f"{getpass.getuser()} (local user)"
    except (KeyError, OSError):
        return "unknown"
