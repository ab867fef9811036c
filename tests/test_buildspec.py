"""buildspec.yml's shape and behaviour that need no containers: phase order, ABORT at the first failure,
the artifacts and reports, and which model specs a push ships (scripts/ci/changed-specs.sh on a real git
history). The shape is checked on torchship's own buildspec.yml and on the one `torchship init` writes
into a user repository: both come from the same template, differing only in how torchship is installed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from buildspec_runner import PHASES, load, run_buildspec
from init_helpers import scaffold_user_repo
from torchship import __version__

REPO = Path(__file__).resolve().parent.parent
BUILDSPEC = REPO / "buildspec.yml"
CHANGED_SPECS = REPO / "scripts" / "ci" / "changed-specs.sh"
# How each repository's CodeBuild installs torchship: the checkout itself, or the pinned requirement.
INSTALL = {
    "checkout": ["make venv"],
    "user-repo": ["python3 -m venv .venv", ".venv/bin/pip install --quiet -r requirements/torchship.txt"],
}


@pytest.fixture(scope="module")
def user_repo(tmp_path_factory) -> Path:
    return scaffold_user_repo(tmp_path_factory.mktemp("init"))


@pytest.fixture(params=sorted(INSTALL))
def buildspec(request, user_repo) -> tuple[str, dict]:
    path = BUILDSPEC if request.param == "checkout" else user_repo / "buildspec.yml"
    return request.param, load(path)


def test_every_phase_aborts_at_its_first_failure_and_the_artifacts_are_the_image_details(buildspec):
    kind, spec = buildspec
    assert list(spec["phases"]) == list(PHASES)
    assert all(phase.get("on-failure") == "ABORT" for phase in spec["phases"].values())
    assert spec["phases"]["install"]["runtime-versions"] == {"python": 3.11, "java": "corretto17"}
    assert spec["phases"]["install"]["commands"] == INSTALL[kind]
    assert {"imageDetail.json", "image-digests.txt", "changed-specs.txt"} <= set(spec["artifacts"]["files"])
    build = " ".join(spec["phases"]["build"]["commands"])
    assert "torchship run" in build and 'torchship image "$spec" --push "$ECR_REPOSITORY_URI"' in build
    pre_build = " ".join(spec["phases"]["pre_build"]["commands"])
    assert ".venv/bin/torchship ci changed-specs > changed-specs.txt" in pre_build
    assert (
        "aws ecr get-login-password" in pre_build
        and "docker login --username AWS --password-stdin" in pre_build
    )
    post_build = spec["phases"]["post_build"]["commands"]
    # A failed build never publishes: post_build checks CodeBuild's success flag before anything else.
    assert "CODEBUILD_BUILD_SUCCEEDING" in post_build[0]
    assert 'torchship publish "$spec" --env "$TORCHSHIP_ENV"' in post_build[1]
    assert '--env "$TORCHSHIP_ENV" --check --out "k8s-rendered/' in post_build[2]
    assert "torchship ci image-detail changed-specs.txt" in post_build[3]
    variables = spec["env"]["variables"]
    assert variables["TORCHSHIP_ENV"] == "staging" and variables["TORCHSHIP_OUTPUTS_DIR"] == "outputs"


def test_the_gate_s_junit_files_are_a_codebuild_test_report_and_artifacts(buildspec):
    _, spec = buildspec
    (report,) = spec["reports"].values()
    assert report["file-format"] == "JUNITXML" and report["base-directory"] == "outputs"
    assert sorted(report["files"]) == [
        "*/*/validate-failed/junit.xml", "*/*/verify-failed/junit.xml", "*/*/verify/junit.xml",
    ]  # fmt: skip
    artifacts = spec["artifacts"]["files"]
    for folder in ("verify", "verify-failed", "validate-failed"):
        assert {f"outputs/*/*/{folder}/junit.xml", f"outputs/*/*/{folder}/report.html"} <= set(artifacts)
    assert "k8s-rendered/**/*" in artifacts
    # Every model has a report.html and a deployment.yaml: flattening the paths would lose all but one.
    assert spec["artifacts"]["discard-paths"] is False


def test_a_user_repository_installs_the_pinned_torchship_within_its_tested_lock(user_repo):
    from torchship.locks import lock_file

    requirement = (user_repo / "requirements" / "torchship.txt").read_text().splitlines()
    assert [line for line in requirement if not line.startswith("#")] == [
        f"torchship=={__version__}", "-c torchship-lock.txt",
    ]  # fmt: skip
    lock = (user_repo / "requirements" / "torchship-lock.txt").read_text()
    tested = lock_file("prod").read_text()
    assert lock.endswith(tested)
    header = lock[: -len(tested)].splitlines()
    # Only a comment saying which torchship the lock belongs to comes before torchship's own lock.
    assert header and all(line.startswith("#") for line in header)
    assert f"torchship {__version__} was tested with" in " ".join(header)


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


def _stand_in_tools(root: Path, run_fails: bool = False) -> Path:
    """.venv/bin/torchship, aws and docker stand-ins that log their arguments (one line per call); the
    torchship one answers `ci changed-specs` with one spec and writes image-digests.txt for `ci image-detail`."""
    log = root / "calls.log"
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    torchship = f"""#!/bin/sh
echo "torchship $*" >> "{log}"
case "$1 $2" in
  "ci changed-specs") echo models/sentiment/model.yaml ;;
  "ci image-detail") echo "registry.example/acme@sha256:abc" > image-digests.txt ;;
  "run "*) {"exit 3" if run_fails else "true"} ;;
esac
"""
    (bin_dir / "torchship").write_text(torchship)
    shims = root / "shims"
    shims.mkdir()
    for tool in ("aws", "docker"):
        (shims / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n')
    for tool in [*bin_dir.iterdir(), *shims.iterdir()]:
        tool.chmod(0o755)
    return log


@pytest.mark.parametrize("kind", sorted(INSTALL))
def test_the_buildspec_ships_each_changed_spec_to_the_environment_the_pipeline_chooses(
    tmp_path, kind, user_repo
):
    source = BUILDSPEC if kind == "checkout" else user_repo / "buildspec.yml"
    log = _stand_in_tools(tmp_path)
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'shims'}{os.pathsep}{os.environ['PATH']}",
        "AWS_DEFAULT_REGION": "eu-west-1",
        # What infra/pipeline.yaml's Production project gives the build: it wins over the buildspec's default.
        "TORCHSHIP_ENV": "production",
        "ECR_REPOSITORY_URI": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/production",
    }
    result = run_buildspec(source, tmp_path, env, skip=("install",))
    assert result.succeeded, result.log()
    spec = "models/sentiment/model.yaml"
    calls = log.read_text().splitlines()
    # The ECR login is one pipe: aws and docker run at the same time, in either order.
    assert set(calls[1:3]) == {
        "aws ecr get-login-password --region eu-west-1",
        "docker login --username AWS --password-stdin 123456789012.dkr.ecr.eu-west-1.amazonaws.com",
    }
    assert calls[:1] + calls[3:] == [
        "torchship ci changed-specs",
        f"torchship run {spec}",
        f"torchship image {spec} --push 123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/production",
        f"torchship publish {spec} --env production",
        f"torchship render {spec} --env production --check --out k8s-rendered/sentiment",
        "torchship ci image-detail changed-specs.txt",
    ]
    assert result.exported["TORCHSHIP_IMAGES"].split() == ["registry.example/acme@sha256:abc"]


def test_a_gate_that_refuses_the_model_publishes_and_renders_nothing(tmp_path, user_repo):
    log = _stand_in_tools(tmp_path, run_fails=True)
    env = {**os.environ, "PATH": f"{tmp_path / 'shims'}{os.pathsep}{os.environ['PATH']}",
           "AWS_DEFAULT_REGION": "eu-west-1", "ECR_REPOSITORY_URI": "r.example/acme/staging"}  # fmt: skip
    result = run_buildspec(user_repo / "buildspec.yml", tmp_path, env, skip=("install",))
    assert not result.succeeded and result.phases_run() == ["pre_build", "build"]
    calls = log.read_text()
    assert "torchship run models/sentiment/model.yaml" in calls
    assert "image" not in calls and "publish" not in calls and "render" not in calls
