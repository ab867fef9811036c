"""buildspec.yml's shape and behaviour that need no containers: phase order, ABORT at the first failure,
the artifacts, and which model specs a push ships (scripts/ci/changed-specs.sh on a real git history)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from buildspec_runner import PHASES, load, run_buildspec

REPO = Path(__file__).resolve().parent.parent
BUILDSPEC = REPO / "buildspec.yml"
CHANGED_SPECS = REPO / "scripts" / "ci" / "changed-specs.sh"


def test_every_phase_aborts_at_its_first_failure_and_the_artifacts_are_the_image_details():
    spec = load(BUILDSPEC)
    assert list(spec["phases"]) == list(PHASES)
    assert all(phase.get("on-failure") == "ABORT" for phase in spec["phases"].values())
    assert spec["phases"]["install"]["runtime-versions"]["python"] == 3.11
    assert spec["phases"]["install"]["commands"] == ["make venv"]  # the README's install, nothing ad hoc
    assert {"imageDetail.json", "image-digests.txt"} <= set(spec["artifacts"]["files"])
    build = " ".join(spec["phases"]["build"]["commands"])
    assert "torchship run" in build and 'torchship image "$spec" --push "$ECR_REPOSITORY_URI"' in build
    login = " ".join(spec["phases"]["pre_build"]["commands"])
    assert "aws ecr get-login-password" in login and "docker login --username AWS --password-stdin" in login
    # A failed build never publishes: post_build checks CodeBuild's success flag before anything else.
    assert "CODEBUILD_BUILD_SUCCEEDING" in spec["phases"]["post_build"]["commands"][0]


def _fake_buildspec(tmp_path: Path, build_commands: list[str]) -> Path:
    spec = load(BUILDSPEC)
    spec["phases"] = {
        "pre_build": {"on-failure": "ABORT", "commands": ["export CARRIED=yes"]},
        "build": {"on-failure": "ABORT", "commands": build_commands},
        "post_build": {"on-failure": "ABORT", "commands": ['echo "post $CARRIED" > post.txt']},
    }
    path = tmp_path / "buildspec.yml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_runner_stops_at_the_first_failing_command_and_skips_post_build(tmp_path):
    path = _fake_buildspec(tmp_path, ["set -euo pipefail; false | cat", "touch never.txt"])
    result = run_buildspec(path, tmp_path, dict(os.environ))
    assert not result.succeeded and result.phases_run() == ["pre_build", "build"]
    assert not (tmp_path / "never.txt").exists() and not (tmp_path / "post.txt").exists()


def test_runner_carries_variables_between_commands_like_codebuild(tmp_path):
    path = _fake_buildspec(tmp_path, ['test "$CARRIED" = yes'])
    result = run_buildspec(path, tmp_path, dict(os.environ))
    assert result.succeeded, result.log()
    assert (tmp_path / "post.txt").read_text() == "post yes\n"
    assert result.env["PIP_EXTRA_INDEX_URL"].endswith("/whl/cpu")  # the documented environment


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def history(tmp_path) -> Path:
    repo = tmp_path / "repo"
    for name in ("alpha", "beta"):
        (repo / "models" / name).mkdir(parents=True)
        (repo / "models" / name / "model.yaml").write_text(f"name: {name}\n")
    (repo / "src").mkdir()
    (repo / "src" / "code.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "first")
    return repo


def _changed(repo: Path, **env: str) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHSHIP_", "CODEBUILD_"))}
    done = subprocess.run(
        ["sh", str(CHANGED_SPECS)], cwd=repo, env={**environ, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_push_that_touches_one_model_ships_only_that_model(history):
    (history / "models" / "beta" / "examples.jsonl").write_text('{"text": "x"}\n')
    _git(history, "add", "-A")
    _git(history, "commit", "-qm", "beta examples")
    assert _changed(history) == ["models/beta/model.yaml"]
    assert _changed(history, TORCHSHIP_ALL_MODELS="1") == [
        "models/alpha/model.yaml",
        "models/beta/model.yaml",
    ]
    assert _changed(history, CODEBUILD_INITIATOR="someone") == [
        "models/alpha/model.yaml",
        "models/beta/model.yaml",
    ]


def test_a_toolchain_change_or_a_first_commit_ships_every_model(history):
    assert _changed(history) == ["models/alpha/model.yaml", "models/beta/model.yaml"]  # no previous commit
    (history / "src" / "code.py").write_text("x = 2\n")
    _git(history, "commit", "-qam", "toolchain")
    assert _changed(history) == ["models/alpha/model.yaml", "models/beta/model.yaml"]


def test_a_removed_model_is_not_shipped(history):
    _git(history, "rm", "-rq", "models/alpha")
    _git(history, "commit", "-qm", "drop alpha")
    assert _changed(history) == []
