"""Publishing to S3, pulling back, registries: against a real moto S3 server over HTTP (no in-process mocks)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from moto_server import MIN_PART_SIZE, free_port, moto_server
from torchship.errors import SourceError, TorchshipError
from torchship.publish import (
    AliasConflictError,
    BucketNotFoundError,
    CredentialsMissingError,
    EndpointUnreachableError,
    GateNotPassedError,
    IncompleteVersionError,
    IntegrityError,
    InvalidURIError,
    NeptuneRegistry,
    NoRegistry,
    RegistryError,
    S3Registry,
    VersionExistsError,
    VersionInUseError,
    VersionNotFoundError,
    download_model_dir,
    make_client,
    make_registry,
    parse_s3_uri,
    publish,
    pull,
    unpublish,
)
from torchship.publish.errors import AccessDeniedError, ConditionFailedError, WrongRegionError
from torchship.storage import s3 as s3mod

SMALL_MAR = 300 * 1024
BIG_MAR = 3 * 1024 * 1024 + 12345  # multipart: 7 parts of 512 KiB
THRESHOLD = 1024 * 1024
PART = 2 * MIN_PART_SIZE
FILES = ("tiny.mar", "model-config.yaml", "report.json", "report.html", "torchship.json")


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path_factory):
    """Fake credentials in the environment; no developer ~/.aws, no instance metadata lookups."""
    empty = tmp_path_factory.mktemp("aws") / "empty"
    empty.write_text("")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def client(endpoint):
    return make_client(endpoint, "us-east-1")


@pytest.fixture
def bucket(client):
    name = f"ts-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def root(bucket):
    return f"s3://{bucket}/models"


def make_package(
    base: Path,
    *,
    name: str = "tiny",
    version: str = "1.0.0",
    verdict: str | None = "pass",
    mar_bytes: int = SMALL_MAR,
    seed: int = 0,
) -> tuple[Path, Path]:
    """A fake package dir (random .mar, model-config.yaml, torchship.json) and validate dir (report.*)."""
    package, report = base / name / version / "package", base / name / version / "validate"
    package.mkdir(parents=True, exist_ok=True)
    report.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    (package / f"{name}.mar").write_bytes(rng.randbytes(mar_bytes))
    (package / "model-config.yaml").write_text(f"minWorkers: 1\nbatchSize: 8\n# seed {seed}\n")
    report_json = {"model": {"name": name, "version": version}, "verdict": verdict or "fail", "checks": []}
    (report / "report.json").write_text(json.dumps(report_json))
    (report / "report.html").write_text(f"<html><body>{name} {version} {verdict}</body></html>")
    record = {
        "name": name,
        "version": version,
        "task": "embeddings",
        "torchship_version": "0.1.0",
        "source": {"spec": "pkg:tiny/model", "sha256": "ab" * 32},
        "compiled": "torchscript",
    }
    if verdict is not None:
        record["gate"] = {
            "verdict": verdict,
            "checks": [{"name": "parity", "status": "pass" if verdict == "pass" else "fail", "message": "x"}],
            "report_sha256": hashlib.sha256((report / "report.json").read_bytes()).hexdigest(),
        }
    (package / "torchship.json").write_text(json.dumps(record, indent=2))
    return package, report


def keys(client, bucket, prefix=""):
    return [o["Key"] for o in s3mod.list_objects(client, bucket, prefix)]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(err: TorchshipError) -> None:
    assert "\n" not in str(err) and str(err).strip()
    assert err.hint and "\n" not in err.hint


# --- publish and pull ------------------------------------------------------------------------------------


def test_publish_then_pull_verified(tmp_path, client, bucket, root):
    package, report = make_package(tmp_path / "out")
    result = publish(package, report, root, client, git_commit="c" * 40)
    assert result.status == "published" and result.uri == f"s3://{bucket}/models/tiny/1.0.0/"
    assert set(result.uploaded) == set(FILES) and not result.skipped
    stored = keys(client, bucket)
    assert sorted(stored) == sorted(f"models/tiny/1.0.0/{f}" for f in (*FILES, "manifest.json"))

    manifest = json.loads(
        client.get_object(Bucket=bucket, Key="models/tiny/1.0.0/manifest.json")["Body"].read()
    )
    assert (
        manifest["name"] == "tiny" and manifest["version"] == "1.0.0" and manifest["git_commit"] == "c" * 40
    )
    assert manifest["gate"]["verdict"] == "pass" and manifest["source"]["spec"] == "pkg:tiny/model"
    assert manifest["files"]["tiny.mar"] == {"sha256": sha(package / "tiny.mar"), "bytes": SMALL_MAR}
    assert set(manifest["files"]) == set(FILES) and manifest["published_at"]
    # manifest_format 1's fields, exactly (registries and older readers depend on them)
    assert set(manifest) == {
        "manifest_format", "name", "version", "task", "files", "source", "compiled",
        "torchship_version", "git_commit", "gate", "published_at",
    }  # fmt: skip
    assert manifest["manifest_format"] == 1 and manifest["task"] == "embeddings"
    head = client.head_object(Bucket=bucket, Key="models/tiny/1.0.0/tiny.mar", ChecksumMode="ENABLED")
    assert head["Metadata"]["sha256"] == sha(package / "tiny.mar")
    # stored with an S3 additional checksum: the base64 of the file's raw SHA-256 digest
    digest = hashlib.sha256((package / "tiny.mar").read_bytes()).digest()
    assert head["ChecksumSHA256"] == base64.b64encode(digest).decode()

    dest = pull(root, "tiny", "1.0.0", tmp_path / "pulled", client)
    assert dest == tmp_path / "pulled"
    assert (dest / "tiny.mar").read_bytes() == (package / "tiny.mar").read_bytes()
    assert (dest / "report.html").read_bytes() == (report / "report.html").read_bytes()
    assert json.loads((dest / "manifest.json").read_text()) == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "pulled"]  # no temp dirs left


def test_big_file_goes_multipart_with_progress(tmp_path, client, bucket, root):
    package, report = make_package(tmp_path, mar_bytes=BIG_MAR)
    calls = []
    publish(
        package,
        report,
        root,
        client,
        multipart_threshold=THRESHOLD,
        part_size=PART,
        progress=lambda done, total, name: calls.append((done, total, name)),
    )
    mar_calls = [c for c in calls if c[2] == "tiny.mar"]
    assert len(mar_calls) == 7 and mar_calls[-1] == (BIG_MAR, BIG_MAR, "tiny.mar")
    assert [c[0] for c in mar_calls] == sorted(c[0] for c in mar_calls)
    key = "models/tiny/1.0.0/tiny.mar"
    assert client.head_object(Bucket=bucket, Key=key, PartNumber=1)["PartsCount"] == 7
    attrs = client.get_object_attributes(Bucket=bucket, Key=key, ObjectAttributes=["Checksum", "ObjectSize"])
    assert attrs["Checksum"]["ChecksumType"] == "COMPOSITE" and attrs["ObjectSize"] == BIG_MAR
    assert client.head_object(Bucket=bucket, Key=key)["Metadata"]["sha256"] == sha(package / "tiny.mar")
    small = client.head_object(Bucket=bucket, Key="models/tiny/1.0.0/report.json", PartNumber=1)
    assert small.get("PartsCount", 1) == 1
    dest = pull(root, "tiny", "1.0.0", tmp_path / "pulled", client)
    assert sha(dest / "tiny.mar") == sha(package / "tiny.mar")


def test_identical_republish_is_a_noop(tmp_path, client, bucket, root):
    package, report = make_package(tmp_path)
    first = publish(package, report, root, client)
    etag = client.head_object(Bucket=bucket, Key="models/tiny/1.0.0/manifest.json")["ETag"]
    again = publish(package, report, root, client)
    assert again.status == "unchanged" and again.unchanged and not again.uploaded
    assert "identical" in again.message and "nothing to do" in again.message
    assert again.manifest == first.manifest
    assert client.head_object(Bucket=bucket, Key="models/tiny/1.0.0/manifest.json")["ETag"] == etag


def test_republish_with_other_bytes_is_refused(tmp_path, client, bucket, root):
    package, report = make_package(tmp_path / "a", seed=1)
    publish(package, report, root, client)
    other, other_report = make_package(tmp_path / "b", seed=2)
    with pytest.raises(VersionExistsError) as info:
        publish(other, other_report, root, client)
    one_line(info.value)
    assert "tiny 1.0.0 is already published" in str(info.value) and "tiny.mar" in str(info.value)
    stored = client.get_object(Bucket=bucket, Key="models/tiny/1.0.0/tiny.mar")["Body"].read()
    assert stored == (package / "tiny.mar").read_bytes()  # never overwritten


def test_gate_must_pass(tmp_path, client, bucket, root):
    package, report = make_package(tmp_path / "fail", verdict="fail")
    with pytest.raises(GateNotPassedError, match=r"the \.mar's gate did not pass") as info:
        publish(package, report, root, client)
    one_line(info.value)
    package, report = make_package(tmp_path / "none", verdict=None)
    with pytest.raises(GateNotPassedError, match="has no gate record"):
        publish(package, report, root, client)
    (package / "torchship.json").unlink()
    with pytest.raises(GateNotPassedError, match="has no gate record"):
        publish(package, report, root, client)
    assert keys(client, bucket) == []


def test_refusal_hints_name_the_users_spec_file(tmp_path, client, bucket, root):
    package, report = make_package(tmp_path / "fail", verdict="fail")
    spec_file = tmp_path / "models" / "tiny" / "model.yaml"
    with pytest.raises(GateNotPassedError) as info:
        publish(package, report, root, client, spec_path=spec_file)
    assert f"torchship validate {spec_file}" in info.value.hint
    assert "SPEC" not in info.value.hint
    with pytest.raises(GateNotPassedError) as info:
        publish(package, report, root, client)  # a library caller without a spec file gets the placeholder
    assert "torchship validate SPEC" in info.value.hint
    assert keys(client, bucket) == []


def test_report_must_be_the_gated_one(tmp_path, client, bucket, root):
    package, report = make_package(tmp_path)
    (report / "report.json").write_text('{"verdict": "pass", "edited": true}')
    with pytest.raises(TorchshipError, match="not the report this package's gate recorded"):
        publish(package, report, root, client)
    assert keys(client, bucket) == []


def test_concurrent_publishers_write_one_manifest(tmp_path, endpoint, bucket, root):
    package, report = make_package(tmp_path, mar_bytes=BIG_MAR)
    results, errors = [], []

    def run():
        try:
            c = make_client(endpoint, "us-east-1")
            results.append(publish(package, report, root, c, multipart_threshold=THRESHOLD, part_size=PART))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(r.status for r in results) == ["published", "unchanged"]


def test_manifest_put_is_create_only(client, bucket):
    s3mod.put_json(client, bucket, "x/manifest.json", {"a": 1}, if_none_match=True)
    with pytest.raises(ConditionFailedError):
        s3mod.put_json(client, bucket, "x/manifest.json", {"a": 2}, if_none_match=True)


# --- interruption and resume -----------------------------------------------------------------------------


def test_interrupted_publish_leaves_no_manifest_and_resumes(tmp_path, client, bucket, root):
    package, report = make_package(tmp_path)

    def stop_after_first_file(done, total, name):
        raise KeyboardInterrupt(f"stopped after {name}")

    with pytest.raises(KeyboardInterrupt):
        publish(package, report, root, client, progress=stop_after_first_file)
    assert keys(client, bucket) == ["models/tiny/1.0.0/tiny.mar"]
    with pytest.raises(IncompleteVersionError, match="incomplete version") as info:
        pull(root, "tiny", "1.0.0", tmp_path / "pulled", client)
    one_line(info.value)
    assert not (tmp_path / "pulled").exists()

    seen = []
    result = publish(package, report, root, client, progress=lambda d, t, n: seen.append(n))
    assert result.status == "published" and result.skipped == ("tiny.mar",)
    assert "tiny.mar" not in seen and set(result.uploaded) == set(FILES) - {"tiny.mar"}
    assert "models/tiny/1.0.0/manifest.json" in keys(client, bucket)


def test_leftover_of_another_attempt_is_refused_not_replaced(tmp_path, client, bucket, root):
    """Files are written create-only: bytes an unfinished publish left are never replaced (a publisher cannot
    tell a crashed attempt from one still running); the error says how to clear them, and that works."""
    old, old_report = make_package(tmp_path / "old", seed=1)

    def interrupt(done, total, name):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        publish(old, old_report, root, client, progress=interrupt)
    new, new_report = make_package(tmp_path / "new", seed=2)
    with pytest.raises(IntegrityError, match=r"tiny\.mar already holds other bytes") as info:
        publish(new, new_report, root, client)
    one_line(info.value)
    assert "torchship unpublish tiny 1.0.0" in info.value.hint
    stored = client.get_object(Bucket=bucket, Key="models/tiny/1.0.0/tiny.mar")["Body"].read()
    assert stored == (old / "tiny.mar").read_bytes()
    unpublish(root, "tiny", "1.0.0", client, NoRegistry())
    result = publish(new, new_report, root, client)
    assert result.status == "published" and "tiny.mar" in result.uploaded
    stored = client.get_object(Bucket=bucket, Key="models/tiny/1.0.0/tiny.mar")["Body"].read()
    assert stored == (new / "tiny.mar").read_bytes()


def test_interrupted_multipart_is_aborted(tmp_path, client, bucket, root):
    package, report = make_package(tmp_path, mar_bytes=BIG_MAR)

    def stop_mid_file(done, total, name):
        if done >= 2 * PART:
            raise RuntimeError("network gone")

    with pytest.raises(RuntimeError):
        publish(
            package,
            report,
            root,
            client,
            multipart_threshold=THRESHOLD,
            part_size=PART,
            progress=stop_mid_file,
        )
    assert keys(client, bucket) == []
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    result = publish(package, report, root, client, multipart_threshold=THRESHOLD, part_size=PART)
    assert result.status == "published" and set(result.uploaded) == set(FILES)


KILLED_PUBLISHER = """
import sys, time
from pathlib import Path
from torchship.publish import make_client, publish
endpoint, package, report, root, marker = sys.argv[1:6]

def progress(done, total, name):
    if name == "tiny.mar" and done == total:
        Path(marker).write_text("first file uploaded")
        time.sleep(120)  # killed here, before the next file

publish(Path(package), Path(report), root, make_client(endpoint, "us-east-1"),
        multipart_threshold=1024 * 1024, part_size=512 * 1024, progress=progress)
"""


def test_killed_publisher_subprocess_is_resumed(tmp_path, endpoint, client, bucket, root):
    package, report = make_package(tmp_path, mar_bytes=BIG_MAR)
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_PUBLISHER, endpoint, str(package), str(report), root, str(marker)],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the publisher never finished its first file"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(10)
    assert keys(client, bucket) == ["models/tiny/1.0.0/tiny.mar"]
    with pytest.raises(IncompleteVersionError):
        pull(root, "tiny", "1.0.0", tmp_path / "pulled", client)

    result = publish(package, report, root, client, multipart_threshold=THRESHOLD, part_size=PART)
    assert result.skipped == ("tiny.mar",) and "tiny.mar" not in result.uploaded
    dest = pull(root, "tiny", "1.0.0", tmp_path / "pulled", client)
    assert sha(dest / "tiny.mar") == sha(package / "tiny.mar")


# --- pull integrity --------------------------------------------------------------------------------------


def test_corrupted_object_is_caught_at_pull(tmp_path, client, bucket, root):
    package, report = make_package(tmp_path / "out")
    publish(package, report, root, client)
    client.put_object(Bucket=bucket, Key="models/tiny/1.0.0/report.html", Body=b"<html>tampered</html>")
    dest = tmp_path / "dl" / "tiny-1.0.0"
    with pytest.raises(IntegrityError, match=r"report\.html") as info:
        pull(root, "tiny", "1.0.0", dest, client)
    one_line(info.value)
    assert not dest.exists() and list((tmp_path / "dl").iterdir()) == []


def test_pull_refuses_existing_dest_and_missing_version(tmp_path, client, bucket, root):
    package, report = make_package(tmp_path / "out")
    publish(package, report, root, client)
    (tmp_path / "taken").mkdir()
    with pytest.raises(TorchshipError, match="already exists"):
        pull(root, "tiny", "1.0.0", tmp_path / "taken", client)
    pull(root, "tiny", "1.0.0", tmp_path / "taken", client, overwrite=True)
    assert (tmp_path / "taken" / "tiny.mar").is_file()
    with pytest.raises(VersionNotFoundError, match="not published"):
        pull(root, "tiny", "9.9.9", tmp_path / "nine", client)


# --- registry, promote, unpublish ------------------------------------------------------------------------


def test_promote_moves_alias(tmp_path, client, bucket, root):
    registry = make_registry("s3", client=client, uri=root)
    assert isinstance(registry, S3Registry)
    for version, seed in (("1.0.0", 1), ("1.10.0", 3), ("1.2.0", 2)):
        package, report = make_package(tmp_path, version=version, seed=seed)
        assert publish(package, report, root, client, registry=registry).registered
    assert registry.list_versions("tiny") == ["1.0.0", "1.2.0", "1.10.0"]
    assert registry.get_manifest("tiny", "1.2.0")["version"] == "1.2.0"
    assert registry.aliases("tiny") == {}
    assert registry.set_alias("tiny", "production", "1.0.0") is None
    assert registry.set_alias("tiny", "staging", "1.2.0") is None
    assert registry.set_alias("tiny", "production", "1.2.0") == "1.0.0"
    assert registry.aliases("tiny") == {"staging": "1.2.0", "production": "1.2.0"}
    alias = json.loads(
        client.get_object(Bucket=bucket, Key="models/_registry/tiny/aliases/production.json")["Body"].read()
    )
    assert alias["version"] == "1.2.0" and alias["previous"] == "1.0.0"
    with pytest.raises(VersionNotFoundError, match="not registered"):
        registry.set_alias("tiny", "production", "3.0.0")
    with pytest.raises(RegistryError, match="not a stage alias"):
        registry.set_alias("tiny", "canary", "1.0.0")
    # Publishing again registers idempotently.
    package, report = make_package(tmp_path, version="1.0.0", seed=1)
    assert publish(package, report, root, client, registry=registry).unchanged


def test_concurrent_promotion_loses_cleanly(tmp_path, client, bucket, root):
    registry = S3Registry.from_uri(client, root)
    for version, seed in (("1.0.0", 1), ("2.0.0", 2), ("3.0.0", 3)):
        package, report = make_package(tmp_path, version=version, seed=seed)
        publish(package, report, root, client, registry=registry)
    registry.set_alias("tiny", "production", "1.0.0")
    rival = S3Registry.from_uri(client, root)
    read = registry._read

    def read_then_rival_promotes(key):
        found = read(key)
        if key.endswith("aliases/production.json"):
            rival.set_alias("tiny", "production", "3.0.0")
        return found

    registry._read = read_then_rival_promotes
    with pytest.raises(AliasConflictError, match="changed while it was being set") as info:
        registry.set_alias("tiny", "production", "2.0.0")
    one_line(info.value)
    assert rival.aliases("tiny") == {"production": "3.0.0"}


def test_unpublish_refused_while_aliased_then_allowed(tmp_path, client, bucket, root):
    registry = S3Registry.from_uri(client, root)
    for version, seed in (("1.0.0", 1), ("2.0.0", 2)):
        package, report = make_package(tmp_path, version=version, seed=seed)
        publish(package, report, root, client, registry=registry)
    registry.set_alias("tiny", "production", "1.0.0")
    with pytest.raises(VersionInUseError, match="'production' alias") as info:
        unpublish(root, "tiny", "1.0.0", client, registry)
    one_line(info.value)
    assert "models/tiny/1.0.0/manifest.json" in keys(client, bucket)

    registry.set_alias("tiny", "production", "2.0.0")
    deletes = []
    real_delete = client.delete_object

    def recording_delete(**kwargs):
        deletes.append(kwargs["Key"])
        return real_delete(**kwargs)

    client.delete_object = recording_delete
    result = unpublish(root, "tiny", "1.0.0", client, registry)
    assert deletes[0] == "models/tiny/1.0.0/manifest.json"  # first: readers see it incomplete at once
    assert result.was_complete and result.unregistered and len(result.deleted) == 6
    assert keys(client, bucket, "models/tiny/1.0.0/") == []
    assert registry.list_versions("tiny") == ["2.0.0"]
    with pytest.raises(VersionNotFoundError):
        pull(root, "tiny", "1.0.0", tmp_path / "gone", client)
    with pytest.raises(VersionNotFoundError):
        unpublish(root, "tiny", "1.0.0", client, registry)


def test_unpublish_cleans_an_incomplete_version(tmp_path, client, bucket, root):
    package, report = make_package(tmp_path)

    def interrupt(done, total, name):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        publish(package, report, root, client, progress=interrupt)
    client.create_multipart_upload(Bucket=bucket, Key="models/tiny/1.0.0/tiny.mar")
    result = unpublish(root, "tiny", "1.0.0", client, NoRegistry())
    assert not result.was_complete and result.aborted_uploads == 1
    assert keys(client, bucket) == [] and not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_no_registry(tmp_path):
    registry = make_registry("none")
    assert registry.aliases("tiny") == {} and registry.list_versions("tiny") == []
    with pytest.raises(RegistryError, match="no registry is configured"):
        registry.set_alias("tiny", "production", "1.0.0")
    with pytest.raises(RegistryError, match="unknown registry"):
        make_registry("mlflow")


def test_neptune_registry_in_debug_mode(tmp_path, monkeypatch):
    pytest.importorskip("neptune")
    monkeypatch.chdir(tmp_path)  # the client writes a .neptune folder in the working directory
    registry = make_registry("neptune", project="team/models", mode="debug")
    assert isinstance(registry, NeptuneRegistry)
    manifests = {}
    for version in ("1.0.0", "2.0.0"):
        manifests[version] = {
            "name": "tiny",
            "version": version,
            "files": {"tiny.mar": {"sha256": version * 8, "bytes": 1}},
            "gate": {"verdict": "pass"},
        }
        registry.register_version(manifests[version], location=f"s3://bkt/models/tiny/{version}/")
    registry.register_version(manifests["1.0.0"])  # idempotent
    assert registry.list_versions("tiny") == ["1.0.0", "2.0.0"]
    assert registry.get_manifest("tiny", "2.0.0") == manifests["2.0.0"]
    handle = registry._versions[("tiny", "1.0.0")]
    assert handle["torchship/location"].fetch() == "s3://bkt/models/tiny/1.0.0/"

    assert registry.set_alias("tiny", "staging", "1.0.0") is None
    assert handle["sys/stage"].fetch() == "staging"
    assert registry.set_alias("tiny", "production", "1.0.0") is None
    assert registry.aliases("tiny") == {"production": "1.0.0"}  # one stage per Neptune version
    assert registry.set_alias("tiny", "production", "2.0.0") == "1.0.0"
    assert handle["sys/stage"].fetch() == "none"
    assert registry.aliases("tiny") == {"production": "2.0.0"}
    with pytest.raises(VersionInUseError):
        registry.remove_version("tiny", "2.0.0")
    assert registry.remove_version("tiny", "1.0.0") and registry.list_versions("tiny") == ["2.0.0"]
    with pytest.raises(VersionExistsError):
        registry.register_version({**manifests["2.0.0"], "files": {"tiny.mar": {"sha256": "x", "bytes": 2}}})
    registry.close()
    with pytest.raises(RegistryError, match="offline mode") as info:
        NeptuneRegistry("team/models", mode="offline")
    one_line(info.value)


# --- sources ---------------------------------------------------------------------------------------------


def test_download_model_dir(tmp_path, client, bucket):
    files = {
        "config.json": b'{"model_type": "bert"}',
        "model.safetensors": os.urandom(200_000),
        "1_Pooling/config.json": b"{}",
    }
    for rel, body in files.items():
        client.put_object(Bucket=bucket, Key=f"hf/tiny/{rel}", Body=body)
    client.put_object(Bucket=bucket, Key="hf/tiny/", Body=b"")  # console-style folder marker
    client.put_object(Bucket=bucket, Key="hf/tiny-other/config.json", Body=b"not ours")
    dest = download_model_dir(f"s3://{bucket}/hf/tiny/", tmp_path / "model", client)
    got = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert got == files
    with pytest.raises(SourceError, match=r"no config\.json"):
        client.put_object(Bucket=bucket, Key="hf/weights-only/model.safetensors", Body=b"x")
        download_model_dir(f"s3://{bucket}/hf/weights-only", tmp_path / "m2", client)
    with pytest.raises(SourceError, match="no objects"):
        download_model_dir(f"s3://{bucket}/hf/nothing", tmp_path / "m3", client)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# --- clear errors ----------------------------------------------------------------------------------------


def test_missing_credentials(tmp_path, monkeypatch, endpoint):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    package, report = make_package(tmp_path)
    with pytest.raises(CredentialsMissingError, match="no AWS credentials") as info:
        publish(package, report, "s3://some-bucket/models", make_client(endpoint, "us-east-1"))
    one_line(info.value)


def test_bucket_that_does_not_exist(tmp_path, client):
    package, report = make_package(tmp_path)
    with pytest.raises(BucketNotFoundError, match="bucket 'no-such-bucket-x' does not exist") as info:
        publish(package, report, "s3://no-such-bucket-x/models", client)
    one_line(info.value)
    with pytest.raises(BucketNotFoundError):
        pull("s3://no-such-bucket-x", "tiny", "1.0.0", tmp_path / "d", client)


def test_unreachable_endpoint(tmp_path):
    package, report = make_package(tmp_path)
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EndpointUnreachableError, match="cannot reach the S3 endpoint") as info:
        publish(package, report, "s3://models-bucket", make_client(closed, "us-east-1"))
    one_line(info.value)
    assert closed in str(info.value)


def test_error_translation_for_region_and_permissions(client):
    from botocore.exceptions import ClientError

    def error(code, status, **extra):
        return ClientError(
            {
                "Error": {"Code": code, "Message": "m", **extra},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            "HeadObject",
        )

    redirect = s3mod.translate(
        error("PermanentRedirect", 301, Region="eu-west-1"), client, "head_object", "bkt"
    )
    assert (
        isinstance(redirect, WrongRegionError)
        and "eu-west-1" in str(redirect)
        and "eu-west-1" in redirect.hint
    )
    malformed = s3mod.translate(error("AuthorizationHeaderMalformed", 400), client, "get_object", "bkt", "k")
    assert isinstance(malformed, WrongRegionError)
    denied = s3mod.translate(error("AccessDenied", 403), client, "put_object", "bkt", "a/b")
    assert isinstance(denied, AccessDeniedError) and "s3://bkt/a/b" in str(denied)
    for err in (redirect, malformed, denied):
        one_line(err)


@pytest.mark.parametrize(
    "uri",
    [
        "bucket/prefix",
        "s3://",
        "s3:///prefix",
        "s3://Bad_Bucket/x",
        "s3://bkt/a//b",
        "s3://bkt/../x",
        "gs://bkt",
    ],
)
def test_bad_uris(uri):
    with pytest.raises(InvalidURIError) as info:
        parse_s3_uri(uri)
    one_line(info.value)


def test_good_uris():
    assert parse_s3_uri("s3://bkt") == ("bkt", "")
    assert parse_s3_uri("s3://bkt/") == ("bkt", "")
    assert parse_s3_uri("s3://my.bkt/a/b/") == ("my.bkt", "a/b")
