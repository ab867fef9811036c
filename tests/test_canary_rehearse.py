"""`torchship rehearse --canary`: the two tracks' pods (fast: podman replaced by recorders), and the demo model's
stable and canary played side by side by `podman kube play` (marker e2e)."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from deploy_helpers import DEMO_SPEC, spec_file, write_image_record
from test_rehearse import REHEARSE_OUTPUTS, _pods, demo_image_built  # noqa: F401 - the shared image fixture
from torchship.cli import app
from torchship.deploy import rehearse_canary as module
from torchship.deploy.errors import RehearsalFailed
from torchship.deploy.rehearse import REHEARSAL_ANNOTATION, Rehearsal
from torchship.image.record import ImageRecord
from torchship.settings import Settings
from torchship.spec import load_spec

runner = CliRunner()
NAME = "tiny-embeddings"


@pytest.fixture
def two_images(tmp_path):
    """A spec at 0.1.0 and image.json files for it and for the stable 0.0.9."""
    spec = load_spec(spec_file(tmp_path))
    outputs = tmp_path / "outputs"
    write_image_record(outputs, spec, digest="sha256:" + "01" * 32)
    old = spec.model_copy(update={"version": "0.0.9"})
    write_image_record(
        outputs, old, reference=f"localhost/torchship/{NAME}:0.0.9", digest="sha256:" + "09" * 32
    )
    return spec, Settings(outputs_dir=outputs)


@pytest.fixture
def recorded(monkeypatch):
    """podman's part replaced: what was played, waited on, checked and torn down, in order."""
    calls: list[tuple] = []

    def play(documents, directory, model, ports):
        calls.append(("play", documents[1]["metadata"]["name"], documents))
        return Rehearsal(
            directory / "rehearsal.yaml", f"ctr-{documents[1]['metadata']['name']}", ports, model
        )

    def wait_ready(rehearsal, deployment, progress):
        calls.append(("ready", deployment["metadata"]["name"]))
        if getattr(wait_ready, "fail", None) == deployment["metadata"]["name"]:
            raise RehearsalFailed("the container exited (exit code 1) before it got ready")
        return 1.5

    monkeypatch.setattr(module, "play", play)
    monkeypatch.setattr(
        module, "same_image", lambda rehearsal, record: calls.append(("image", record.reference))
    )
    monkeypatch.setattr(module, "wait_ready", wait_ready)
    monkeypatch.setattr(module, "_check", lambda track, spec, settings: f"checked {spec.version}")
    monkeypatch.setattr(module, "tear_down", lambda rehearsal: calls.append(("down", rehearsal.container)))
    return calls, wait_ready


def test_both_tracks_play_from_their_own_manifests_on_distinct_ports(two_images, recorded):
    spec, settings = two_images
    calls, _ = recorded
    result = module.rehearse_canary(spec, settings, 25, "0.0.9")
    played = {name: documents for kind, name, *rest in calls if kind == "play" for documents in rest}
    assert list(played) == [NAME, f"{NAME}-canary"]
    (stable_config, stable), (canary_config, canary) = played[NAME], played[f"{NAME}-canary"]
    assert (
        stable_config["metadata"]["name"] == f"{NAME}-env"
        and canary_config["metadata"]["name"] == f"{NAME}-canary-env"
    )
    images = [d["spec"]["template"]["spec"]["containers"][0]["image"] for d in (stable, canary)]
    assert images == [f"localhost/torchship/{NAME}:0.0.9", f"localhost/torchship/{NAME}:0.1.0"]
    assert stable["spec"]["template"]["metadata"]["labels"]["torchship.dev/track"] == "stable"
    assert canary["spec"]["template"]["metadata"]["labels"]["torchship.dev/track"] == "canary"
    assert all(d["spec"]["replicas"] == 1 and REHEARSAL_ANNOTATION in d["spec"]["template"]["metadata"]["annotations"]
               for d in (stable, canary))  # fmt: skip
    ports = [{v for k, v in c["data"].items() if k.endswith("_PORT")} for c in (stable_config, canary_config)]
    assert len(ports[0]) == len(ports[1]) == 5 and not ports[0] & ports[1]
    assert [c for c in calls if c[0] != "play"] == [
        ("image", f"localhost/torchship/{NAME}:0.0.9"),
        ("image", f"localhost/torchship/{NAME}:0.1.0"),
        ("ready", NAME),
        ("ready", f"{NAME}-canary"),
        ("down", f"ctr-{NAME}"),
        ("down", f"ctr-{NAME}-canary"),
    ]
    assert {t.track: t.checked for t in result.tracks.values()} == {
        "stable": "checked 0.0.9",
        "canary": "checked 0.1.0",
    }
    assert result.split.startswith("in a cluster: 1 canary + 1 stable pod(s) = 50.0% to the canary")


def test_a_track_that_fails_still_takes_both_pods_down(two_images, recorded):
    spec, settings = two_images
    calls, wait_ready = recorded
    wait_ready.fail = f"{NAME}-canary"
    with pytest.raises(RehearsalFailed, match="exited"):
        module.rehearse_canary(spec, settings, 25, "0.0.9")
    assert [c for c in calls if c[0] == "down"] == [("down", f"ctr-{NAME}"), ("down", f"ctr-{NAME}-canary")]


def test_rehearse_canary_needs_both_images_and_the_stable_version(tmp_path, monkeypatch):
    spec_path = spec_file(tmp_path)
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(tmp_path / "outputs"))
    result = runner.invoke(app, ["rehearse", str(spec_path), "--canary", "25"])
    assert result.exit_code == 1 and "needs the stable version to play beside the spec's" in result.output
    write_image_record(tmp_path / "outputs", load_spec(spec_path))
    result = runner.invoke(app, ["rehearse", str(spec_path), "--canary", "25", "--stable-version", "0.0.9"])
    assert result.exit_code == 1
    assert f"error: no image built for {NAME} 0.0.9" in result.output
    result = runner.invoke(app, ["rehearse", str(spec_path), "--canary", "0", "--stable-version", "0.0.9"])
    assert result.exit_code == 1 and "a percentage from 1 to 99" in result.output


@pytest.mark.e2e
def test_demo_stable_and_canary_rehearsed_side_by_side(demo_image_built, monkeypatch, request):  # noqa: F811
    """The demo image plays both tracks: image.json of a stand-in stable 0.9.0 names the same image (building
    a second 2 GB image of an older version on vfs would take as long again), so the two pods, their ports,
    probes and answers are real, and only the version label tells them apart."""
    containers, record = demo_image_built
    spec = load_spec(DEMO_SPEC)
    stable = ImageRecord(**{**record.model_dump(), "model_version": "0.9.0"})
    stand_in = REHEARSE_OUTPUTS / spec.name / "0.9.0"
    (stand_in / "image").mkdir(parents=True, exist_ok=True)
    stable.write(stand_in / "image")
    request.addfinalizer(lambda: shutil.rmtree(stand_in, ignore_errors=True))
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(REHEARSE_OUTPUTS))
    with containers.activated():
        result = runner.invoke(
            app, ["rehearse", str(DEMO_SPEC), "--canary", "25", "--stable-version", "0.9.0"]
        )
        assert result.exit_code == 0, result.output
        assert (
            "stable 0.9.0: ready in " in result.output
            and "answered: POST /predictions/minilm-embeddings → 200" in result.output
        )
        assert "canary 1.0.0: ready in " in result.output and "served parity ok" in result.output
        assert "canary rehearsal ok" in result.output
        pods = _pods(containers)
        assert not [p for p in pods if p.startswith("minilm-embeddings")]  # both torn down
