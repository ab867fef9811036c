"""Ship from your own repository, end to end, the way a new user does it (README: "Ship from your own
repository"): the wheel built from this checkout (the session's one wheel) installed with pip into a new venv
outside the checkout, within the lock it ships; a `git init`-ed repository holding only a checkpoint of its
own (a RoBERTa classifier, not the demo's BERT); `torchship init`, `torchship run`, `torchship image` (a real
build, the image's served parity), `torchship render --env staging --check`; then the buildspec that init
wrote, phase by phase on a fresh clone of that repository as CodeBuild would run it: its install phase
installs the pinned torchship with pip (the wheel offered by PIP_FIND_LINKS, as a private index would), the
ECR login and the push go to a loopback registry, publish to moto's S3. Slow: marker e2e (`make test-e2e`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import pytest
import yaml

from buildspec_runner import run_buildspec
from moto_server import moto_server
from test_buildspec_e2e import _git, _tools
from torchship import __version__
from torchship.image.local import BASE_IMAGE, ContainersUnavailable, LocalContainers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
LOCK = REPO / "src" / "torchship" / "locks" / "prod.txt"
NAME = "sentiment"
SPEC = f"models/{NAME}/model.yaml"
BUCKET = "torchship-models"


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout_s: float = 1800) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, (
        f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    return done.stdout + done.stderr


def _pip_env(wheel: Path) -> dict[str, str]:
    """pip as a user's CI would see it: torchship's wheel offered beside the usual indexes (here also the
    machine's on-disk torch), and no unreachable CPU-torch index (the project's variables win over the
    buildspec's in CodeBuild; this machine reaches only the package registries)."""
    links = " ".join(part for part in (str(wheel.parent), os.environ.get("PIP_FIND_LINKS", "")) if part)
    return {"PIP_FIND_LINKS": links, "PIP_EXTRA_INDEX_URL": "https://pypi.org/simple"}


@pytest.fixture(scope="module")
def containers():
    local = LocalContainers()
    try:
        local.require(REPO / "scripts" / "install-container-tools.sh")
    except ContainersUnavailable as exc:
        pytest.skip(f"containers cannot run here: {exc}")
    with local.activated():
        local.ensure_base_image()
        # The scaffolded buildspec builds FROM its default base: the local stand-in under Docker Hub's name.
        local.podman("tag", BASE_IMAGE, "docker.io/library/debian:bookworm-slim")
        yield local


def test_a_new_user_ships_from_their_own_repository(wheel_env, containers, tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    clean = {k: v for k, v in wheel_env.env.items() if k not in ("PATH",)}
    base_env = {**clean, "PATH": os.environ["PATH"], **_pip_env(wheel_env.wheel)}

    # 1. pip install torchship (the pinned wheel, within its lock) into a venv of the user's own.
    venv = user / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], user, base_env)
    _run(
        [str(venv / "bin" / "pip"), "install", "-q", f"torchship=={__version__}", "-c", str(LOCK)],
        user,
        base_env,
    )
    podman_env = {k: v for k, v in containers.env().items() if k.startswith("CONTAINERS_")}
    env = {**base_env, **podman_env, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    where = _run(
        [str(venv / "bin" / "python"), "-c", "import torchship; print(torchship.__file__)"], user, env
    )
    assert where.strip().startswith(str(venv)), where

    # 2. Their repository: git, a checkpoint their training saved (a tiny RoBERTa sentiment classifier).
    repo = user / "acme-models"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _run([str(venv / "bin" / "python"), "-c", (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from tiny_models import save_tiny_classifier;"
        "save_tiny_classifier(Path('checkpoints/sentiment'), 'roberta')"
    ), str(TESTS)], repo, env)  # fmt: skip

    # 3. torchship init: the spec (task and labels read from the checkpoint), settings, buildspec, pipeline.
    said = _run(["torchship", "init", ".", "--model", "checkpoints/sentiment"], repo, env)
    assert "torchship run" in said, said
    for path in (SPEC, "torchship.toml", "buildspec.yml", "infra/pipeline.yaml", ".gitignore",
                 "requirements/torchship.txt", "requirements/torchship-lock.txt"):  # fmt: skip
        assert (repo / path).is_file(), path
    assert "task: text-classification" in (repo / SPEC).read_text()
    assert f"torchship=={__version__}" in (repo / "requirements" / "torchship.txt").read_text()
    again = _run(["torchship", "init", ".", "--model", "checkpoints/sentiment"], repo, env)
    assert "unchanged" in again.lower(), again

    with containers.registry(tmp_path) as registry, moto_server(tmp_path / "moto.log") as moto:
        # The user fills in torchship.toml with what their stack made (here: the loopback stand-ins).
        settings = repo / "torchship.toml"
        settings.write_text(
            settings.read_text()
            .replace("CHANGE-ME-bucket", BUCKET)
            .replace("CHANGE-ME.dkr.ecr.eu-west-1.amazonaws.com/torchship", f"{registry}/acme")
        )

        # 4. The whole gate, then the image: built, run, its served answers equal the source model's.
        _run(["torchship", "run", SPEC], repo, env)
        image_env = {**env, "TORCHSHIP_BUILDER": "podman"}
        built = _run(["torchship", "image", SPEC, "--base-image", BASE_IMAGE], repo, image_env)
        assert "parity ok" in built, built
        record = json.loads((repo / "outputs" / NAME / "0.1.0" / "image" / "image.json").read_text())
        assert record["served_parity"]["ok"] and record["torchship_version"] == __version__
        assert record["labels"]["io.torchship.version"] == __version__

        # 5. The staging manifests: their namespace and image repository from torchship.toml, checked.
        rendered = _run(["torchship", "render", SPEC, "--env", "staging", "--check"], repo, env)
        assert "checks passed" in rendered, rendered
        deployment = yaml.safe_load(
            (repo / "outputs" / NAME / "0.1.0" / "k8s-staging" / "deployment.yaml").read_text()
        )
        assert deployment["metadata"]["namespace"] == "ml-staging"
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
            f"{registry}/acme/staging"
        )

        # 6. Commit, push: CodeBuild's fresh clone runs the scaffolded buildspec, install phase included.
        _git(repo, "add", "-A")
        _git(repo, "commit", "-qm", "sentiment: first version")
        clone = user / "codebuild-src"
        _run(["git", "clone", "-q", str(repo), str(clone)], user, env)
        s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
        s3.create_bucket(Bucket=BUCKET)
        shims, registries = _tools(tmp_path, registry)
        ci_env = {
            **base_env, **podman_env,
            "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}",
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": moto, "TORCHSHIP_AWS_ENDPOINT_URL": moto,
            "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json"),
            "CONTAINERS_REGISTRIES_CONF": str(registries),
            "TORCHSHIP_BUILDER": "podman",
            # What infra/pipeline.yaml's Staging action gives the build:
            "TORCHSHIP_ENV": "staging",
            "ECR_REPOSITORY_URI": f"{registry}/acme/staging",
            "TORCHSHIP_PUBLISH_URI": f"s3://{BUCKET}/staging",
            "CODEBUILD_INITIATOR": "codepipeline/acme-ship",
            "CODEBUILD_RESOLVED_SOURCE_VERSION": subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True, check=True
            ).stdout.strip(),
        }  # fmt: skip
        ci_env.pop("PYTHONPATH", None)
        result = run_buildspec(clone / "buildspec.yml", clone, ci_env)
        assert result.succeeded, result.log()[-8000:]
        assert result.phases_run() == ["install", "pre_build", "build", "post_build"]
        installed = _run([str(clone / ".venv" / "bin" / "python"), "-c",
                          "import torchship; print(torchship.__version__, torchship.__file__)"], clone, ci_env)  # fmt: skip
        version, location = installed.split()
        assert version == __version__ and location.startswith(str(clone / ".venv")), installed
        assert (clone / "changed-specs.txt").read_text().split() == [SPEC]

        detail = json.loads((clone / "imageDetail.json").read_text())
        assert detail["ImageURI"].startswith(f"{registry}/acme/staging@sha256:")
        digest = detail["ImageURI"].split("@", 1)[1]
        request = urllib.request.Request(
            f"http://{registry}/v2/acme/staging/manifests/{digest}", method="HEAD",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )  # fmt: skip
        with urllib.request.urlopen(request) as response:
            assert response.headers["Docker-Content-Digest"] == digest
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
        assert f"staging/{NAME}/0.1.0/manifest.json" in keys
        manifest = json.loads(
            s3.get_object(Bucket=BUCKET, Key=f"staging/{NAME}/0.1.0/manifest.json")["Body"].read()
        )
        assert manifest["torchship_version"] == __version__
        # The CodeBuild test report: the gate's checks as JUnit test cases, none failed.
        junit = (clone / "outputs" / NAME / "0.1.0" / "verify" / "junit.xml").read_text()
        assert 'failures="0"' in junit and "served_parity" in junit
        staged = yaml.safe_load((clone / "k8s-rendered" / NAME / "deployment.yaml").read_text())
        assert staged["metadata"]["namespace"] == "ml-staging"
        assert staged["spec"]["template"]["spec"]["containers"][0]["image"] == detail["ImageURI"]
