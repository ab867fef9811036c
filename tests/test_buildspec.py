"""buildspec.yml's shape and behaviour that need no containers: phase order, ABORT at the first failure,
the artifacts and reports, which model specs a push ships (`torchship ci changed-specs` on a real git
history) and the pushed images' details (`torchship ci image-detail`). The shape is checked on torchship's own buildspec.yml and on the one `torchship init` writes
into a user repository: both come from the same template, differing only in how torchship is installed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from buildspec_runner import PHASES, load, run_buildspec
from deploy_helpers import write_image_record
from init_helpers import scaffold_user_repo
from torchship import __version__
from torchship.cli import app
from torchship.spec import load_spec

REPO = Path(__file__).resolve().parent.parent
BUILDSPEC = REPO / "buildspec.yml"
runner = CliRunner()
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
    # The stage alias moves only through the promotion gate (a diff against what the stage serves).
    assert (
        'torchship promote "$spec" --env "$TORCHSHIP_ENV" --stage "$TORCHSHIP_ENV" "${accept[@]}"'
        in post_build[2]
    )
    assert '--env "$TORCHSHIP_ENV" --check --out "k8s-rendered/' in post_build[3]
    assert "torchship ci image-detail changed-specs.txt" in post_build[4]
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


def _commit(repo: Path, message: str) -> str:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", message)
    return _git(repo, "rev-parse", "HEAD").strip()


def _write_spec(repo: Path, name: str, source: str) -> None:
    (repo / "models" / name).mkdir(parents=True)
    (repo / "models" / name / "model.yaml").write_text(
        f"name: {name}\nversion: 0.1.0\ntask: embeddings\nsource: {source}\n"
    )


@pytest.fixture
def history(tmp_path) -> Path:
    """alpha's checkpoint inside its folder, beta's outside models/ (checkpoints/beta), gamma's on S3."""
    repo = tmp_path / "repo"
    _write_spec(repo, "alpha", "./model")
    (repo / "models" / "alpha" / "model").mkdir()
    (repo / "models" / "alpha" / "model" / "config.json").write_text("{}\n")
    _write_spec(repo, "beta", "../../checkpoints/beta")
    (repo / "checkpoints" / "beta").mkdir(parents=True)
    (repo / "checkpoints" / "beta" / "config.json").write_text("{}\n")
    _write_spec(repo, "gamma", "s3://bucket/gamma")
    (repo / "src").mkdir()
    (repo / "src" / "code.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _commit(repo, "first")
    return repo


EVERY = ["models/alpha/model.yaml", "models/beta/model.yaml", "models/gamma/model.yaml"]


def _changed(repo: Path, monkeypatch, *args: str, **env: str) -> list[str]:
    monkeypatch.chdir(repo)
    for name in ("CODEBUILD_INITIATOR", "CODEBUILD_RESOLVED_SOURCE_VERSION"):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(app, ["ci", "changed-specs", *args], env=env)
    assert result.exit_code == 0, result.output
    assert "model(s) to ship" in result.stderr  # the reason, for the CI log; stdout holds only the paths
    return result.stdout.split()


def test_a_push_that_touches_one_model_ships_only_that_model(history, monkeypatch):
    (history / "models" / "alpha" / "examples.jsonl").write_text('{"text": "x"}\n')
    _commit(history, "alpha examples")
    assert _changed(history, monkeypatch) == ["models/alpha/model.yaml"]
    assert _changed(history, monkeypatch, TORCHSHIP_ALL_MODELS="1") == EVERY
    assert _changed(history, monkeypatch, "--all") == EVERY
    assert _changed(history, monkeypatch, CODEBUILD_INITIATOR="someone") == EVERY
    assert _changed(history, monkeypatch, CODEBUILD_INITIATOR="codepipeline/torchship") == [
        "models/alpha/model.yaml"
    ]


def test_a_change_to_a_models_source_outside_models_ships_that_model(history, monkeypatch):
    (history / "checkpoints" / "beta" / "model.safetensors").write_bytes(b"new weights")
    _commit(history, "beta retrained")
    assert _changed(history, monkeypatch) == ["models/beta/model.yaml"]


def test_changes_since_the_given_previous_commit_add_up(history, monkeypatch):
    first = _git(history, "rev-parse", "HEAD").strip()
    (history / "checkpoints" / "beta" / "model.safetensors").write_bytes(b"new weights")
    _commit(history, "beta retrained")
    (history / "models" / "alpha" / "model.yaml").write_text(
        (history / "models" / "alpha" / "model.yaml").read_text().replace("0.1.0", "0.2.0")
    )
    _commit(history, "alpha 0.2.0")
    assert _changed(history, monkeypatch) == ["models/alpha/model.yaml"]
    assert _changed(history, monkeypatch, TORCHSHIP_PREVIOUS_COMMIT=first) == [
        "models/alpha/model.yaml",
        "models/beta/model.yaml",
    ]


def test_a_toolchain_change_or_a_first_commit_ships_every_model(history, monkeypatch):
    assert _changed(history, monkeypatch) == EVERY  # no previous commit
    (history / "src" / "code.py").write_text("x = 2\n")
    _commit(history, "toolchain")
    assert _changed(history, monkeypatch) == EVERY


def test_outside_a_git_repository_every_model_ships(tmp_path, monkeypatch):
    _write_spec(tmp_path, "alpha", "./model")
    assert _changed(tmp_path, monkeypatch) == ["models/alpha/model.yaml"]


def test_a_removed_model_is_not_shipped(history, monkeypatch):
    _git(history, "rm", "-rq", "models/alpha")
    _commit(history, "drop alpha")
    assert _changed(history, monkeypatch) == []


def test_a_missing_models_directory_is_an_error_not_an_empty_answer(history, monkeypatch):
    monkeypatch.chdir(history / "src")
    result = runner.invoke(app, ["ci", "changed-specs"])
    assert result.exit_code == 1 and result.stdout == ""
    assert f"there is no models directory models in {history / 'src'}" in result.stderr
    wrong_dir = runner.invoke(app, ["ci", "changed-specs", "--models-dir", "../models"])
    assert wrong_dir.exit_code == 0 and wrong_dir.stdout.split() == [f"../{spec}" for spec in EVERY]


def test_an_unknown_previous_commit_is_a_clear_error(history, monkeypatch):
    monkeypatch.chdir(history)
    result = runner.invoke(app, ["ci", "changed-specs"], env={"TORCHSHIP_PREVIOUS_COMMIT": "f" * 40})
    assert result.exit_code == 1 and result.stdout == ""
    assert f"git cannot diff {'f' * 40} against HEAD" in result.stderr
    assert "TORCHSHIP_PREVIOUS_COMMIT must name a commit" in result.stderr


# --- image-detail ------------------------------------------------------------------------------------


@pytest.fixture
def shipped(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """Two specs in a repository, both with a pushed image record in outputs/; the cwd is the repository."""
    repo = tmp_path / "repo"
    _write_spec(repo, "alpha", "./model")
    _write_spec(repo, "beta", "./model")
    outputs = tmp_path / "outputs"
    for name in ("alpha", "beta"):
        spec = load_spec(repo / "models" / name / "model.yaml")
        write_image_record(outputs, spec, pushed=f"registry.example/models@sha256:{name[0] * 64}")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(outputs))
    return repo, outputs


def _specs_file(repo: Path, *names: str) -> Path:
    path = repo / "changed-specs.txt"
    path.write_text("".join(f"models/{name}/model.yaml\n" for name in names))
    return path


def test_image_detail_writes_codepipelines_format_and_the_digests(shipped):
    repo, _ = shipped
    result = runner.invoke(app, ["ci", "image-detail", str(_specs_file(repo, "alpha", "beta"))])
    assert result.exit_code == 0, result.output
    assert json.loads((repo / "imageDetail.json").read_text()) == [
        {"name": "alpha", "version": "0.1.0", "ImageURI": f"registry.example/models@sha256:{'a' * 64}"},
        {"name": "beta", "version": "0.1.0", "ImageURI": f"registry.example/models@sha256:{'b' * 64}"},
    ]
    assert (repo / "image-digests.txt").read_text().splitlines() == [
        f"alpha 0.1.0 registry.example/models@sha256:{'a' * 64}",
        f"beta 0.1.0 registry.example/models@sha256:{'b' * 64}",
    ]
    one = runner.invoke(app, ["ci", "image-detail", str(_specs_file(repo, "beta"))])
    assert one.exit_code == 0, one.output
    # One model: a single object, as CodePipeline's ECS/EKS deploy actions read imageDetail.json.
    assert json.loads((repo / "imageDetail.json").read_text())["name"] == "beta"


def test_image_detail_refuses_a_model_without_a_pushed_image_and_writes_nothing(shipped):
    repo, outputs = shipped
    record = outputs / "beta" / "0.1.0" / "image" / "image.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "pushed": None}))
    result = runner.invoke(app, ["ci", "image-detail", str(_specs_file(repo, "alpha", "beta"))])
    assert result.exit_code == 1
    assert f"{record} records no pushed image" in result.stderr and "--push" in result.stderr
    assert not (repo / "imageDetail.json").exists() and not (repo / "image-digests.txt").exists()
    record.unlink()
    missing = runner.invoke(app, ["ci", "image-detail", str(_specs_file(repo, "beta"))])
    assert missing.exit_code == 1 and "beta 0.1.0 has no image record" in missing.stderr
    absent = runner.invoke(app, ["ci", "image-detail", "no-such-file.txt"])
    assert absent.exit_code == 1 and "the specs file no-such-file.txt does not exist" in absent.stderr


def _stand_in_tools(root: Path, run_fails: bool = False, promote_fails: bool = False) -> Path:
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
  "promote "*) {"exit 1" if promote_fails else "true"} ;;
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
        f"torchship promote {spec} --env production --stage production",
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


def test_a_refused_promotion_fails_the_build_and_a_pipeline_reason_accepts_the_diff(tmp_path, user_repo):
    env = {**os.environ, "PATH": f"{tmp_path / 'shims'}{os.pathsep}{os.environ['PATH']}",
           "AWS_DEFAULT_REGION": "eu-west-1", "ECR_REPOSITORY_URI": "r.example/acme/staging"}  # fmt: skip
    refused = tmp_path / "refused"
    log = _stand_in_tools(refused, promote_fails=True)
    env_refused = {**env, "PATH": f"{refused / 'shims'}{os.pathsep}{os.environ['PATH']}"}
    result = run_buildspec(user_repo / "buildspec.yml", refused, env_refused, skip=("install",))
    assert not result.succeeded
    calls = log.read_text()
    assert "torchship promote models/sentiment/model.yaml --env staging --stage staging" in calls
    assert "render" not in calls  # nothing after the refused promotion

    accepted = tmp_path / "accepted"
    log = _stand_in_tools(accepted)
    env_accepted = {**env, "PATH": f"{accepted / 'shims'}{os.pathsep}{os.environ['PATH']}",
                    "TORCHSHIP_ACCEPT_DIFF": "labels renamed on purpose"}  # fmt: skip
    result = run_buildspec(user_repo / "buildspec.yml", accepted, env_accepted, skip=("install",))
    assert result.succeeded, result.log()
    assert (
        "torchship promote models/sentiment/model.yaml --env staging --stage staging --accept-diff --reason "
        "labels renamed on purpose"
    ) in log.read_text().splitlines()
