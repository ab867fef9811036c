"""Records name the torchship that wrote them; a record of another version is read, or refused with what to do."""

from __future__ import annotations

import json

import pytest

import torchship
from conftest import run_stages
from deploy_helpers import demo, write_image_record
from test_publish import aws_env, bucket, client, endpoint, make_package, root  # noqa: F401  (fixtures)
from torchship.deploy.errors import DeployError
from torchship.deploy.inputs import gather_inputs
from torchship.errors import TorchshipError
from torchship.pipeline import Runner, SilentReporter
from torchship.publish import S3Registry, publish, pull
from torchship.runstate import STATE_NAME, RunState
from torchship.settings import Settings
from torchship.spec import load_spec
from torchship.stages import STAGES
from torchship.versions import UnknownFormatError

THIS = torchship.__version__
OLD = "0.0.9"
NEWER = "9.0.0"


def _claim(stage_dir, version: str, *, fingerprint: bool) -> None:
    """Edit a stage record as if `version` had written it; with `fingerprint`, also its code hash (which
    another version's code would have)."""
    record = json.loads((stage_dir / "stage.json").read_text())
    record["torchship_version"] = version
    if fingerprint:
        record["inputs"]["torchship"] = "0" * 64
    (stage_dir / "stage.json").write_text(json.dumps(record))


@pytest.fixture
def compiled(tiny_spec_path, settings):
    spec = load_spec(tiny_spec_path)
    outcomes = run_stages(spec, settings, until="compile")
    assert outcomes[-1].status == "ran", outcomes[-1].error
    return spec, settings.stage_root(spec.name, spec.version)


def test_stage_outputs_of_another_version_are_stale_naming_both_versions_and_the_command(compiled, settings):
    spec, stage_root = compiled
    runner = Runner(spec, settings, STAGES, SilentReporter())
    runner.require_current("compile")  # made by this version: current

    _claim(stage_root / "compile", OLD, fingerprint=True)
    with pytest.raises(TorchshipError) as stale:
        runner.require_current("compile")
    assert f"the 'compile' outputs are stale: they were made by torchship {OLD}, this is {THIS}" in str(
        stale.value
    )
    assert (
        stale.value.hint
        == f"Run `torchship run {spec.spec_path} --until compile` to rebuild them with this version."
    )

    # Running the stages again rebuilds them with this version, and they are current again.
    outcomes = run_stages(spec, settings, until="compile")
    assert [o.status for o in outcomes] == ["skipped", "ran"]
    assert json.loads((stage_root / "compile" / "stage.json").read_text())["torchship_version"] == THIS
    runner.require_current("compile")


def test_a_record_edited_to_claim_another_version_is_not_trusted_either(compiled, settings):
    spec, stage_root = compiled
    _claim(stage_root / "fetch", OLD, fingerprint=False)  # same code hash: only the claim differs
    with pytest.raises(TorchshipError) as stale:
        Runner(spec, settings, STAGES, SilentReporter()).require_current("compile")
    message = str(stale.value)
    assert "needs the outputs of stage 'fetch'" in message
    assert f"made by torchship {OLD}, this is {THIS}" in message
    assert f"torchship run {spec.spec_path} --until compile" in stale.value.hint


def test_state_json_of_a_newer_format_is_refused_and_an_older_version_read(tmp_path):
    state = {"failed": {"compile": {"at": "2026-01-01T00:00:00+00:00", "error": "boom"}}, "owner": None}
    (tmp_path / STATE_NAME).write_text(json.dumps({**state, "torchship_version": OLD}))
    assert RunState.load(tmp_path).failed["compile"].error == "boom"  # no format: the first one, read

    RunState.load(tmp_path).save(tmp_path)
    saved = json.loads((tmp_path / STATE_NAME).read_text())
    assert saved["torchship_version"] == THIS and saved["state_format"] == 1

    (tmp_path / STATE_NAME).write_text(json.dumps({**state, "state_format": 2, "torchship_version": NEWER}))
    with pytest.raises(UnknownFormatError) as refused:
        RunState.load(tmp_path)
    assert f"has state_format 2, written by torchship {NEWER}" in str(refused.value)
    assert f"this torchship ({THIS}) reads state_format 1 only" in str(refused.value)
    assert f"pip install 'torchship>={NEWER}'" in refused.value.hint and "delete" in refused.value.hint


# --- publish manifest and registry ------------------------------------------------------------------------


def _rewrite_manifest(s3_client, bucket_name, **changes):
    """Replace the stored manifest.json of tiny 1.0.0 (a change to None removes the key)."""
    key = "models/tiny/1.0.0/manifest.json"
    manifest = json.loads(s3_client.get_object(Bucket=bucket_name, Key=key)["Body"].read())
    manifest.update(changes)
    manifest = {k: v for k, v in manifest.items() if v is not None}
    s3_client.put_object(Bucket=bucket_name, Key=key, Body=json.dumps(manifest).encode())


def test_pull_refuses_a_manifest_format_it_does_not_know(tmp_path, client, bucket, root):  # noqa: F811
    package, report = make_package(tmp_path / "out")
    publish(package, report, root, client)
    _rewrite_manifest(client, bucket, manifest_format=2, torchship_version=NEWER)
    with pytest.raises(UnknownFormatError) as refused:
        pull(root, "tiny", "1.0.0", tmp_path / "pulled", client)
    message = str(refused.value)
    assert f"s3://{bucket}/models/tiny/1.0.0/manifest.json has manifest_format 2" in message
    assert f"written by torchship {NEWER}" in message and f"this torchship ({THIS})" in message
    assert (
        refused.value.hint
        == f"Upgrade torchship to {NEWER} or later (pip install 'torchship>={NEWER}') to read it."
    )
    assert not (tmp_path / "pulled").exists()


@pytest.mark.parametrize("stored_format", [1, None], ids=["format-1", "before-format-numbers"])
def test_pull_reads_a_known_manifest_format_of_another_version(
    tmp_path,
    client,  # noqa: F811
    bucket,  # noqa: F811
    root,  # noqa: F811
    stored_format,
):
    package, report = make_package(tmp_path / "out")
    publish(package, report, root, client)
    _rewrite_manifest(client, bucket, manifest_format=stored_format, torchship_version=OLD)
    dest = pull(root, "tiny", "1.0.0", tmp_path / "pulled", client)
    assert (dest / "tiny.mar").read_bytes() == (package / "tiny.mar").read_bytes()
    assert json.loads((dest / "manifest.json").read_text())["torchship_version"] == OLD


def test_registry_entries_name_their_torchship_and_a_newer_manifest_is_refused(
    tmp_path,
    client,  # noqa: F811
    bucket,  # noqa: F811
    root,  # noqa: F811
):
    registry = S3Registry.from_uri(client, root)
    package, report = make_package(tmp_path / "out")
    publish(package, report, root, client, registry=registry)
    registry.set_alias("tiny", "production", "1.0.0")
    for key in ("models/_registry/tiny/versions/1.0.0.json", "models/_registry/tiny/aliases/production.json"):
        entry = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        assert entry["torchship_version"] == THIS, key
    assert registry.get_manifest("tiny", "1.0.0")["manifest_format"] == 1

    key = "models/_registry/tiny/versions/1.0.0.json"
    entry = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    entry["manifest"] = {**entry["manifest"], "manifest_format": 3, "torchship_version": NEWER}
    client.put_object(Bucket=bucket, Key=key, Body=json.dumps(entry).encode())
    with pytest.raises(UnknownFormatError, match=f"has manifest_format 3, written by torchship {NEWER}"):
        registry.get_manifest("tiny", "1.0.0")


# --- image.json and the rendered manifests ------------------------------------------------------------------


def test_image_json_of_another_version_in_a_known_format_is_read(tmp_path, tiny_spec_path):
    spec = load_spec(tiny_spec_path)
    settings = Settings(outputs_dir=tmp_path / "outputs")
    path = write_image_record(settings.outputs_dir, spec, torchship_version=OLD, time_to_ready_s=42.0)
    assert json.loads(path.read_text())["record_format"] == 1
    assert gather_inputs(spec, settings).time_to_ready_s == 42.0

    older = json.loads(path.read_text())  # a record from before record_format and torchship_version
    del older["record_format"], older["torchship_version"]
    path.write_text(json.dumps(older))
    assert gather_inputs(spec, settings).time_to_ready_s == 42.0


def test_image_json_of_an_unknown_format_is_refused(tmp_path, tiny_spec_path):
    spec = load_spec(tiny_spec_path)
    settings = Settings(outputs_dir=tmp_path / "outputs")
    path = write_image_record(settings.outputs_dir, spec, record_format=2, torchship_version=NEWER)
    with pytest.raises(UnknownFormatError) as refused:
        gather_inputs(spec, settings)
    assert f"{path} has record_format 2, written by torchship {NEWER}" in str(refused.value)
    assert "torchship image SPEC" in refused.value.hint and f"torchship>={NEWER}" in refused.value.hint

    path.write_text('{"record_format": 1, "reference": 3}')  # known format, not an image record: as before
    with pytest.raises(DeployError, match="is not a valid image record"):
        gather_inputs(spec, settings)


def test_every_rendered_object_names_the_torchship_that_rendered_it():
    _, rendered = demo()
    for manifest in rendered.manifests:
        if manifest.kind == "Kustomization":
            continue
        metadata = manifest.doc["metadata"]
        assert metadata["annotations"]["torchship.dev/version"] == THIS, manifest.kind
        assert metadata["labels"]["app.kubernetes.io/managed-by"] == "torchship", manifest.kind
    deployment = next(m.doc for m in rendered.manifests if m.kind == "Deployment")
    # Not on the pod template: a torchship upgrade alone must not restart every pod.
    assert "torchship.dev/version" not in deployment["spec"]["template"]["metadata"]["annotations"]
    assert "torchship.dev/time-to-ready" in deployment["metadata"]["annotations"]
