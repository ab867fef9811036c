"""The publish commands end to end on a real pipeline output: `torchship publish / pull / promote /
unpublish` as subprocesses against moto's real S3 HTTP server, and an s3:// model source."""

import hashlib
import json
import os
import subprocess
import sys
import uuid

import pytest

from conftest import run_stages
from moto_server import moto_server
from tiny_models import write_spec
from torchship.publish import make_client
from torchship.settings import Settings
from torchship.spec import load_spec

pytestmark = pytest.mark.torchserve  # the pipeline's verify stage runs before anything is published


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture(scope="module")
def aws_env(tmp_path_factory):
    empty = tmp_path_factory.mktemp("aws") / "empty"
    empty.write_text("")
    return {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_SHARED_CREDENTIALS_FILE": str(empty), "AWS_CONFIG_FILE": str(empty), "AWS_EC2_METADATA_DISABLED": "true",
    }  # fmt: skip


@pytest.fixture(scope="module")
def verified(tmp_path_factory, tiny_model_dir):
    """The tiny model through every stage, verify included (publish requires the whole gate)."""
    root = tmp_path_factory.mktemp("publish-cli")
    spec_path = write_spec(root / "spec", str(tiny_model_dir), name="tiny-published")
    settings = Settings(outputs_dir=root / "outputs")
    outcomes = run_stages(load_spec(spec_path), settings)
    assert outcomes[-1].status == "ran", outcomes[-1].error
    return spec_path, settings


def torchship(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "torchship.cli", *map(str, args)],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=300,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def in_process_credentials(aws_env, monkeypatch):
    for key, value in aws_env.items():
        monkeypatch.setenv(key, value)


def test_publish_pull_promote_unpublish(s3, aws_env, verified, tmp_path):
    spec_path, settings = verified
    bucket = f"ts-{uuid.uuid4().hex[:10]}"
    with_env = {**aws_env, "TORCHSHIP_AWS_ENDPOINT_URL": s3, "TORCHSHIP_OUTPUTS_DIR": str(settings.outputs_dir),
                "TORCHSHIP_PUBLISH_URI": f"s3://{bucket}/models"}  # fmt: skip
    missing = torchship("publish", spec_path, env=with_env)
    assert (
        missing.returncode != 0 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    )
    make_client(s3, "us-east-1").create_bucket(Bucket=bucket)

    first = torchship("publish", spec_path, env=with_env)
    assert first.returncode == 0, first.stderr
    again = torchship("publish", spec_path, env=with_env)
    assert again.returncode == 0, again.stderr
    assert "6 file(s) uploaded" in first.stdout and "identical files: nothing to do" in again.stdout

    pulled = torchship("pull", "tiny-published", "0.1.0", "--to", tmp_path / "pulled", env=with_env)
    assert pulled.returncode == 0, pulled.stderr
    manifest = json.loads((tmp_path / "pulled" / "manifest.json").read_text())
    assert manifest["gate"]["verdict"] == "pass"
    assert (tmp_path / "pulled" / "tiny-published.mar").stat().st_size == manifest["files"][
        "tiny-published.mar"
    ]["bytes"]
    # The pulled bytes are the verified package's bytes (hashlib on both sides, not the manifest's word).
    local = settings.stage_root("tiny-published", "0.1.0") / "package" / "tiny-published.mar"
    pulled_sha = hashlib.sha256((tmp_path / "pulled" / "tiny-published.mar").read_bytes()).hexdigest()
    assert pulled_sha == hashlib.sha256(local.read_bytes()).hexdigest()
    assert manifest["files"]["tiny-published.mar"]["sha256"] == pulled_sha

    promoted = torchship("promote", spec_path, "--stage", "production", env=with_env)
    assert promoted.returncode == 0 and "production → 0.1.0" in promoted.stdout, promoted.stderr
    refused = torchship("unpublish", "tiny-published", "0.1.0", "--yes", env=with_env)
    assert refused.returncode != 0 and "production" in refused.stderr
    still_there = torchship("pull", "tiny-published", "0.1.0", "--to", tmp_path / "again", env=with_env)
    assert still_there.returncode == 0, still_there.stderr
    # The refusal's hint names a command that exists and clears the alias; then unpublish goes through.
    assert "torchship promote SPEC --stage production --clear" in refused.stderr
    cleared = torchship("promote", spec_path, "--stage", "production", "--clear", env=with_env)
    assert cleared.returncode == 0 and "production cleared (was 0.1.0)" in cleared.stdout, cleared.stderr
    removed = torchship("unpublish", "tiny-published", "0.1.0", "--yes", env=with_env)
    assert removed.returncode == 0, removed.stderr


def test_publish_refuses_a_model_that_has_not_been_verified(s3, aws_env, tmp_path, tiny_model_dir):
    spec_path = write_spec(tmp_path / "spec", str(tiny_model_dir), name="never-verified")
    env = {**aws_env, "TORCHSHIP_AWS_ENDPOINT_URL": s3, "TORCHSHIP_OUTPUTS_DIR": str(tmp_path / "out"),
           "TORCHSHIP_PUBLISH_URI": "s3://anything/models"}  # fmt: skip
    result = torchship("publish", spec_path, env=env)
    assert result.returncode != 0 and "no up-to-date 'verify' stage" in result.stderr


def test_an_s3_source_is_fetched_and_hashed(s3, tmp_path, tiny_model_dir):
    client = make_client(s3, "us-east-1")
    bucket = f"src-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    for path in tiny_model_dir.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"models/tiny/{path.relative_to(tiny_model_dir)}")
    spec = load_spec(write_spec(tmp_path / "spec", f"s3://{bucket}/models/tiny"))
    settings = Settings(outputs_dir=tmp_path / "out", aws_endpoint_url=s3)
    [outcome] = run_stages(spec, settings, until="fetch")
    assert outcome.status == "ran", outcome.error
    fetched = settings.stage_root(spec.name, spec.version) / "fetch" / "model"
    assert (fetched / "config.json").read_bytes() == (tiny_model_dir / "config.json").read_bytes()
    assert run_stages(spec, settings, until="fetch")[0].status == "skipped"
    client.put_object(
        Bucket=bucket,
        Key="models/tiny/config.json",
        Body=(tiny_model_dir / "config.json").read_bytes() + b" ",
    )
    assert run_stages(spec, settings, until="fetch")[0].status == "ran"  # a changed object re-runs fetch


def test_a_mar_swapped_after_verify_is_not_published(s3, aws_env, verified, tmp_path):
    """The stage records still say "verified", but the .mar on disk is another one: publish hashes what it
    would upload, compares it with what verify recorded, and refuses before touching the bucket."""
    spec_path, settings = verified
    spec = load_spec(spec_path)
    mar = settings.stage_root(spec.name, spec.version) / "package" / f"{spec.name}.mar"
    original = mar.read_bytes()
    bucket = f"ts-{uuid.uuid4().hex[:10]}"
    make_client(s3, "us-east-1").create_bucket(Bucket=bucket)
    env = {**aws_env, "TORCHSHIP_AWS_ENDPOINT_URL": s3, "TORCHSHIP_OUTPUTS_DIR": str(settings.outputs_dir),
           "TORCHSHIP_PUBLISH_URI": f"s3://{bucket}/models"}  # fmt: skip
    try:
        mar.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # one bit, same size
        result = torchship("publish", spec_path, env=env)
    finally:
        mar.write_bytes(original)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "changed after verify" in result.stderr and "Traceback" not in result.stderr
    assert make_client(s3, "us-east-1").list_objects_v2(Bucket=bucket).get("KeyCount") == 0
