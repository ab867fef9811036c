"""buildspec.yml run end to end, phase by phase, as CodeBuild would: the real AWS CLI against moto's server
(ECR login token, S3 for publish), `docker` mapped to podman, the push going to Debian's docker-registry
on loopback (the ECR stand-in). The install phase (`make venv`) is the one not run: the test's .venv is a
thin wrapper around this checkout and the project's venv (re-installing would take minutes and touch the
shared venv). Slow: marker e2e."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from buildspec_runner import run_buildspec
from deploy_helpers import CONTAINER_TOOLS_INSTALLER, DEMO_SPEC
from moto_server import moto_server
from torchship.image.local import BASE_IMAGE, ContainersUnavailable, LocalContainers, demo_image

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parent.parent


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.com",
           "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.com"}  # fmt: skip
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def _checkout(tmp_path: Path) -> Path:
    """A fresh clone-like copy of the tracked files with two commits: the second touches one model only."""
    repo = tmp_path / "repo"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    )
    for rel in files.stdout.split():
        if (REPO / rel).is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, repo / rel)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "torchship")
    (repo / "models" / "minilm-embeddings" / "CHANGELOG.md").write_text("- ship it\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "minilm-embeddings: changelog")
    # The install phase's result: .venv/bin/torchship and python, here this checkout on the project's venv.
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, target in (("torchship", "-m torchship.cli"), ("python", "")):
        (bin_dir / name).write_text(
            f'#!/bin/sh\nPYTHONPATH="{repo / "src"}" exec "{sys.executable}" {target} "$@"\n'
        )
        (bin_dir / name).chmod(0o755)
    return repo


def _tools(tmp_path: Path, registry: str) -> tuple[Path, Path]:
    """PATH additions: `docker` → podman (plain HTTP to the loopback registry), `aws` → the real AWS CLI."""
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "docker").write_text('#!/bin/sh\nexec podman "$@"\n')
    (shims / "docker").chmod(0o755)
    aws = Path(sys.executable).with_name("aws")
    if not aws.is_file():
        pytest.skip("the AWS CLI is not installed (requirements/dev.in lists awscli)")
    (shims / "aws").symlink_to(aws)
    registries = tmp_path / "registries.conf"
    registries.write_text(f'[[registry]]\nlocation = "{registry}"\ninsecure = true\n')
    return shims, registries


def test_buildspec_gates_builds_pushes_and_publishes_the_changed_model(tmp_path):
    containers = LocalContainers()
    try:
        containers.require(CONTAINER_TOOLS_INSTALLER)
    except ContainersUnavailable as exc:
        pytest.skip(f"containers cannot run here: {exc}")
    with containers.activated():
        demo_image(
            containers, DEMO_SPEC
        )  # the stages and the image layers, cached: the buildspec reuses both
        # The buildspec builds FROM its default base: the local stand-in under Docker Hub's name.
        containers.podman("tag", BASE_IMAGE, "docker.io/library/debian:bookworm-slim")
    repo = _checkout(tmp_path)
    with containers.registry(tmp_path) as registry, moto_server(tmp_path / "moto.log") as moto:
        aws = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        boto3.client("s3", endpoint_url=moto, **{k.lower(): v for k, v in aws.items() if k != "AWS_DEFAULT_REGION"},
                     region_name="us-east-1").create_bucket(Bucket="torchship-models")  # fmt: skip
        shims, registries = _tools(tmp_path, registry)
        env = {
            **containers.env(), **aws,
            "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}",
            "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json"),  # podman login's credentials, not the host's
            "AWS_ENDPOINT_URL": moto,
            "TORCHSHIP_AWS_ENDPOINT_URL": moto,
            "CONTAINERS_REGISTRIES_CONF": str(registries),
            "TORCHSHIP_BUILDER": "podman",  # CodeBuild has docker; here `docker` is podman either way
            "TORCHSHIP_OUTPUTS_DIR": str(containers.root / "outputs"),
            # What infra/pipeline.yaml gives the project (ECR's URI, here the loopback registry's):
            "ECR_REPOSITORY_URI": f"{registry}/torchship/models",
            "TORCHSHIP_PUBLISH_URI": "s3://torchship-models/models",
            "CODEBUILD_INITIATOR": "codepipeline/torchship-ship",
            "CODEBUILD_RESOLVED_SOURCE_VERSION": "0123456789abcdef0123456789abcdef01234567",
        }  # fmt: skip
        result = run_buildspec(repo / "buildspec.yml", repo, env, skip=("install",))
        assert result.succeeded, result.log()[-6000:]
        assert result.phases_run() == ["pre_build", "build", "post_build"]
        assert (repo / "changed-specs.txt").read_text().split() == ["models/minilm-embeddings/model.yaml"]

        detail = json.loads((repo / "imageDetail.json").read_text())
        assert detail["name"] == "minilm-embeddings"
        assert detail["ImageURI"].startswith(f"{registry}/torchship/models@sha256:")
        assert result.exported["TORCHSHIP_IMAGES"].split()[-1] == detail["ImageURI"]
        # The pushed manifest is really there, under that digest.
        digest = detail["ImageURI"].split("@", 1)[1]
        import urllib.request

        request = urllib.request.Request(
            f"http://{registry}/v2/torchship/models/manifests/{digest}",
            method="HEAD",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        with urllib.request.urlopen(request) as response:
            assert response.headers["Docker-Content-Digest"] == digest
        record = json.loads(
            (containers.root / "outputs" / "minilm-embeddings" / "1.0.0" / "image" / "image.json").read_text()
        )
        assert record["pushed"] == detail["ImageURI"] and record["served_parity"]["ok"]
        assert (
            record["labels"]["org.opencontainers.image.revision"] == env["CODEBUILD_RESOLVED_SOURCE_VERSION"]
        )
        s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")  # fmt: skip
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="torchship-models")["Contents"]}
        assert "models/minilm-embeddings/1.0.0/manifest.json" in keys
