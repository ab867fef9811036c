"""Publish and pull integrity against a hostile or racing world, on moto's real S3 HTTP server: files
changed after verify, racing publishers, manifests without hashes, stores that lie about sizes, names
with a trailing newline."""

from __future__ import annotations

import json

import pytest

import test_publish as base
from test_publish import BIG_MAR, PART, THRESHOLD, keys, make_package, one_line, sha
from torchship.hashing import file_table
from torchship.publish import IntegrityError, PublishError, publish, pull
from torchship.publish import publisher as publisher_module
from torchship.publish.errors import ConditionFailedError
from torchship.publish.layout import check_segment
from torchship.storage import s3 as s3mod

MAR_KEY = "models/tiny/1.0.0/tiny.mar"

# The moto server, fake credentials and a fresh bucket per test, as in test_publish.
endpoint, aws_env, client, bucket, root = base.endpoint, base.aws_env, base.client, base.bucket, base.root


def _recorded(package, report):
    """What verify would have recorded: the files' sha256 and size, taken independently of publish."""
    table = {**file_table(package), **file_table(report)}
    return {rel: {"sha256": entry["sha256"], "bytes": entry["bytes"]} for rel, entry in table.items()}


# --- files changed after verify --------------------------------------------------------------------------


def test_a_mar_swapped_after_verify_never_reaches_the_bucket(tmp_path, client, bucket, root):
    package, report = make_package(tmp_path)
    verified = _recorded(package, report)
    (package / "tiny.mar").write_bytes(b"PK swapped archive with a backdoor handler")
    with pytest.raises(IntegrityError, match="changed after verify") as info:
        publish(package, report, root, client, verified=verified)
    one_line(info.value)
    assert "tiny.mar" in str(info.value) and "torchship run" in info.value.hint
    assert keys(client, bucket) == []


def test_a_report_edited_after_verify_is_refused_too(tmp_path, client, bucket, root):
    package, report = make_package(tmp_path)
    verified = _recorded(package, report)
    (report / "report.html").write_text("<html>all green, trust me</html>")
    with pytest.raises(IntegrityError, match=r"report\.html changed after verify"):
        publish(package, report, root, client, verified=verified)
    assert keys(client, bucket) == []


def test_unchanged_verified_files_publish(tmp_path, client, bucket, root):
    package, report = make_package(tmp_path)
    result = publish(package, report, root, client, verified=_recorded(package, report))
    assert result.status == "published"
    assert result.manifest["files"]["tiny.mar"]["sha256"] == sha(package / "tiny.mar")


# --- racing publishers: stored files are never replaced ---------------------------------------------------


def test_a_racing_publisher_cannot_replace_files_after_the_manifest_exists(
    tmp_path, client, bucket, root, monkeypatch
):
    """B looks for a manifest, finds none, and only then does A finish its whole publish. B's uploads come
    after A's manifest exists: they must not replace any of A's files."""
    a_package, a_report = make_package(tmp_path / "a", seed=1)
    b_package, b_report = make_package(tmp_path / "b", seed=2)
    real_get_json = s3mod.get_json
    raced = []

    def get_json_then_a_finishes(c, b, key):
        found = real_get_json(c, b, key)
        if key.endswith("manifest.json") and not raced:
            raced.append("A runs now")
            raced.append(publish(a_package, a_report, root, client))
        return found

    monkeypatch.setattr(publisher_module.s3, "get_json", get_json_then_a_finishes)
    with pytest.raises(IntegrityError, match="already holds other bytes") as info:
        publish(b_package, b_report, root, client)
    one_line(info.value)
    monkeypatch.undo()
    assert raced[1].status == "published"
    dest = pull(root, "tiny", "1.0.0", tmp_path / "pulled", client)
    for name in ("tiny.mar", "model-config.yaml", "torchship.json"):
        assert sha(dest / name) == sha(a_package / name)


@pytest.mark.parametrize("multipart", [False, True])
def test_a_file_created_between_check_and_write_is_not_overwritten(
    tmp_path, client, bucket, root, monkeypatch, multipart
):
    """The check (head) and the write are two requests: the write itself is create-only (If-None-Match),
    single put and multipart alike, so an object that appears in between stays as it was."""
    package, report = make_package(tmp_path, mar_bytes=BIG_MAR if multipart else 300 * 1024)
    intruder = b"written by someone else in between"
    real_head = s3mod.head

    def head_then_someone_writes(c, b, key, **kwargs):
        found = real_head(c, b, key, **kwargs)
        if key == MAR_KEY and found is None:
            client.put_object(Bucket=b, Key=key, Body=intruder)
        return found

    monkeypatch.setattr(publisher_module.s3, "head", head_then_someone_writes)
    with pytest.raises(IntegrityError, match="already holds other bytes"):
        publish(package, report, root, client, multipart_threshold=THRESHOLD, part_size=PART)
    monkeypatch.undo()
    assert client.get_object(Bucket=bucket, Key=MAR_KEY)["Body"].read() == intruder
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert "models/tiny/1.0.0/manifest.json" not in keys(client, bucket)


def test_create_only_upload_of_an_existing_key_is_refused(tmp_path, client, bucket):
    path = tmp_path / "blob"
    path.write_bytes(b"x" * (THRESHOLD + 10))
    client.put_object(Bucket=bucket, Key="k", Body=b"first")
    for threshold in (10 * THRESHOLD, THRESHOLD):  # single put, then multipart
        with pytest.raises(ConditionFailedError):
            s3mod.upload_file(
                client, bucket, "k", path, sha256=sha(path), size=path.stat().st_size,
                multipart_threshold=threshold, part_size=PART, if_none_match=True,
            )  # fmt: skip
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"


# --- pull: manifests must say what each file is -----------------------------------------------------------


def _rewrite_manifest(s3_client, bucket_name, edit):
    key = "models/tiny/1.0.0/manifest.json"
    manifest = json.loads(s3_client.get_object(Bucket=bucket_name, Key=key)["Body"].read())
    edit(manifest)
    s3_client.put_object(Bucket=bucket_name, Key=key, Body=json.dumps(manifest).encode())


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda m: m["files"]["tiny.mar"].pop("sha256"), "no sha256"),
        (lambda m: m["files"]["tiny.mar"].pop("bytes"), "no size"),
        (
            lambda m: m["files"]["tiny.mar"].update(sha256=None, bytes="300"),
            "no sha256 (64 hex digits) and no size",
        ),
        (lambda m: m["files"].update({"tiny.mar": "trust me"}), "no sha256"),
    ],
)
def test_pull_refuses_manifest_entries_without_sha256_and_size(tmp_path, client, bucket, root, edit, problem):
    package, report = make_package(tmp_path / "out")
    publish(package, report, root, client)
    _rewrite_manifest(client, bucket, edit)
    dest = tmp_path / "pulled"
    with pytest.raises(IntegrityError, match="cannot be verified") as info:
        pull(root, "tiny", "1.0.0", dest, client)
    one_line(info.value)
    assert problem in str(info.value) and "tiny.mar" in str(info.value)
    assert not dest.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_pull_refuses_a_size_the_store_contradicts_before_writing(tmp_path, client, bucket, root):
    package, report = make_package(tmp_path / "out", mar_bytes=BIG_MAR)
    publish(package, report, root, client, multipart_threshold=THRESHOLD, part_size=PART)
    _rewrite_manifest(client, bucket, lambda m: m["files"]["tiny.mar"].update(bytes=1000))
    with pytest.raises(IntegrityError, match=f"tiny.mar from .*the store announces {BIG_MAR} bytes"):
        pull(root, "tiny", "1.0.0", tmp_path / "pulled", client)
    dest = tmp_path / "one" / "tiny.mar"
    with pytest.raises(IntegrityError, match="announces"):
        s3mod.download_file(client, bucket, MAR_KEY, dest, expected_size=1000)
    assert not dest.exists()  # refused before a byte of the 3 MB body was written


def test_a_stream_longer_than_its_size_is_cut_off(tmp_path, client, bucket, root):
    """A store (or proxy) that announces no length, or a false one, still cannot make pull write more than
    the manifest's size: the stream is cut off where it passes it."""
    package, report = make_package(tmp_path / "out", mar_bytes=BIG_MAR)
    publish(package, report, root, client, multipart_threshold=THRESHOLD, part_size=PART)

    def forget_length(parsed, **kwargs):
        parsed.pop("ContentLength", None)

    client.meta.events.register("after-call.s3.GetObject", forget_length)
    try:
        dest = tmp_path / "dl" / "tiny.mar"
        limit = 1024 * 1024
        with pytest.raises(IntegrityError, match=f"got more than {limit} bytes"):
            s3mod.download_file(client, bucket, MAR_KEY, dest, expected_size=limit)
        assert dest.stat().st_size <= limit < BIG_MAR
    finally:
        client.meta.events.unregister("after-call.s3.GetObject", forget_length)


# --- names and versions: full matches --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1.0.0\n", "tiny\n", "1.0.0\r", "ok\x00", "a/b", "..", ""])
def test_names_and_versions_must_match_whole(value):
    with pytest.raises(PublishError, match="cannot be part of a storage key"):
        check_segment(value, "version")


def test_pull_with_a_trailing_newline_in_the_version_is_refused(tmp_path, client, bucket, root):
    package, report = make_package(tmp_path / "out")
    publish(package, report, root, client)
    with pytest.raises(PublishError, match="cannot be part of a storage key"):
        pull(root, "tiny", "1.0.0\n", tmp_path / "pulled", client)
    with pytest.raises(PublishError, match="not a valid S3 bucket name"):
        pull(f"s3://{bucket}\n/models", "tiny", "1.0.0", tmp_path / "pulled", client)
    assert not (tmp_path / "pulled").exists()
