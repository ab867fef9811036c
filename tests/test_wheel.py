"""The installed wheel is the product: torchship installed from its wheel into a fresh venv outside the
checkout runs the path from a user's own repository — `run`, `image --context`, `ci changed-specs` — with
no source tree on sys.path and no file read from torchship's checkout (tests/wheel_env.py builds it).
~40 s: one wheel build, one TorchServe start for verify."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tiny_models import write_spec
from torchship.hashing import sha256_file
from torchship.image.dockerfile import CPU, render_dockerfile
from torchship.image.wheelhouse import pinned_names

REPO = Path(__file__).resolve().parent.parent
PACKAGE_SOURCE = REPO / "src" / "torchship"
SERVE_LOCK = PACKAGE_SOURCE / "locks" / "serve.txt"


def _git(repo: Path, *args: str) -> None:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    subprocess.run(["git", *args], cwd=repo, env={**os.environ, **env}, check=True, capture_output=True)


def test_torchship_is_imported_from_the_installed_wheel_with_no_source_tree_on_sys_path(wheel_env, tmp_path):
    probe = (
        "import json, sys, torchship; from pathlib import Path; "
        "print(json.dumps({'file': torchship.__file__, 'trees': [p for p in sys.path "
        "if p and (Path(p) / 'torchship' / '__init__.py').is_file()]}))"
    )
    done = subprocess.run(
        [str(wheel_env.python), "-c", probe], cwd=tmp_path, env=wheel_env.env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert Path(found["file"]).is_relative_to(wheel_env.site_packages)
    # The one directory on sys.path that holds a torchship package is the venv's own site-packages: not
    # this checkout's src/, not the project venv's editable install (its .pth is not processed).
    assert [Path(p) for p in found["trees"]] == [wheel_env.site_packages]
    assert "PYTHONPATH" not in wheel_env.env


def test_the_wheel_holds_every_file_of_the_package_source(wheel_env):
    """Templates (the Dockerfiles, config.properties, k8s manifests, reports), the locks, the image's
    runtime scripts, the handlers: whatever src/torchship holds, the wheel holds, and nothing else."""
    source = {
        path.relative_to(PACKAGE_SOURCE.parent).as_posix()
        for path in PACKAGE_SOURCE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    with zipfile.ZipFile(wheel_env.wheel) as wheel:
        packaged = {name for name in wheel.namelist() if name.startswith("torchship/")}
    assert packaged == source
    for needed in ("torchship/templates/image/Dockerfile.j2", "torchship/templates/image/Dockerfile.neuron.j2",
                   "torchship/locks/serve.txt", "torchship/locks/prod.txt",
                   "torchship/image/runtime/entrypoint.py", "torchship/templates/k8s/deployment.yaml.j2"):  # fmt: skip
        assert needed in packaged, needed
    assert wheel_env.build_s < 120  # pip wheel, measured (~3 s here)


@pytest.fixture
def user_repo(tmp_path, tiny_model_dir) -> Path:
    """A team's own repository, nothing from torchship's: a checkpoint outside models/, one spec."""
    repo = tmp_path / "their-repo"
    shutil.copytree(tiny_model_dir, repo / "checkpoints" / "tiny")
    write_spec(repo / "models" / "tiny", "../../checkpoints/tiny")
    (repo / ".gitignore").write_text("outputs/\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "tiny model")
    return repo


def _fake_wheelhouse(directory: Path) -> Path:
    """A wheel file name for every pin of the serve lock: all ensure_wheelhouse checks (nothing is built)."""
    directory.mkdir()
    for name in pinned_names(SERVE_LOCK):
        (directory / f"{name}-0-py3-none-any.whl").write_bytes(b"wheel")
    return directory


def test_from_a_users_own_repository_run_image_context_and_changed_specs(wheel_env, user_repo, tmp_path):
    spec = "models/tiny/model.yaml"
    run = wheel_env.torchship_run(["run", spec], cwd=user_repo)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "parity: ok" in run.stdout  # verify served it from a real TorchServe

    context = tmp_path / "context"
    image = wheel_env.torchship_run(
        ["image", spec, "--context", str(context)], cwd=user_repo,
        TORCHSHIP_WHEELHOUSE=str(_fake_wheelhouse(tmp_path / "wheelhouse")),
    )  # fmt: skip
    assert image.returncode == 0, image.stderr[-3000:]
    mar = user_repo / "outputs" / "tiny-embeddings" / "0.1.0" / "package" / "tiny-embeddings.mar"
    assert (context / "Dockerfile").read_text() == render_dockerfile(CPU)
    assert (context / "requirements" / "serve.txt").read_bytes() == SERVE_LOCK.read_bytes()
    assert sorted(p.name for p in (context / "bin").iterdir()) == [
        "drain.py",
        "entrypoint",
        "probe",
        "settings.py",
    ]
    assert sha256_file(context / "model" / "model-store" / "tiny-embeddings.mar") == sha256_file(mar)
    labels = json.loads((context / "model" / "image-labels.json").read_text())
    assert labels["io.torchship.mar.sha256"] == sha256_file(mar)
    assert labels["io.torchship.gate.verdict"] == "pass"
    assert "max_request_size=" in (context / "model" / "config.properties").read_text()
    assert len(list((context / "wheels").glob("*.whl"))) == len(pinned_names(SERVE_LOCK))
    # The printed command builds the same image: its build arguments set the labels torchship checks.
    assert f"--build-arg MAR_SHA256={sha256_file(mar)}" in image.stdout and str(context) in image.stdout

    changed = wheel_env.torchship_run(["ci", "changed-specs"], cwd=user_repo)
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.split() == [spec]
