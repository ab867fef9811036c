"""Each test is isolated from the developer's shell and `.env` (conftest's isolated_environment)."""

import os
import subprocess
import sys
from pathlib import Path

from torchship.settings import Settings

THIS_FILE = Path(__file__).resolve()


def test_settings_see_only_their_defaults():
    assert not [n for n in os.environ if n.startswith(("TORCHSHIP_OUTPUTS_DIR", "AWS_", "NEPTUNE_"))]
    settings = Settings()
    assert settings.outputs_dir == Path("outputs")
    assert settings.publish_uri is None
    assert settings.aws_endpoint_url is None


def test_developer_shell_and_dotenv_do_not_leak_into_a_test(tmp_path):
    # A developer's shell exports an outputs dir and an endpoint, and the cwd holds a .env: the test above
    # must still see the defaults. Run it in a fresh pytest with that environment.
    (tmp_path / ".env").write_text("TORCHSHIP_PUBLISH_URI=s3://leaked/from-dotenv\n")
    env = {
        **os.environ,
        "TORCHSHIP_OUTPUTS_DIR": str(tmp_path / "leaked-outputs"),
        "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
        "NEPTUNE_PROJECT": "leaked/project",
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(THIS_FILE.parent.parent),
            f"{THIS_FILE}::test_settings_see_only_their_defaults",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "1 passed" in run.stdout


def test_env_file_knob_reads_the_named_file(tmp_path, monkeypatch):
    dotenv = tmp_path / "deploy.env"
    dotenv.write_text(f"TORCHSHIP_OUTPUTS_DIR={tmp_path / 'from-file'}\n")
    monkeypatch.setenv("TORCHSHIP_ENV_FILE", str(dotenv))
    assert Settings().outputs_dir == tmp_path / "from-file"


def image_setting_in_a_fresh_process(cwd: Path, env: dict[str, str]) -> str:
    """ImageSettings().builder as `torchship image` sees it: a new process, no conftest fixture."""
    code = "from torchship.image.settings import ImageSettings; print(ImageSettings().builder)"
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**{k: v for k, v in os.environ.items() if k != "TORCHSHIP_ENV_FILE"}, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.strip()


def test_image_settings_follow_the_env_file_knob(tmp_path):
    # The image command's settings read the same dotenv file as Settings: TORCHSHIP_ENV_FILE, not
    # whatever `.env` lies in the cwd (a test's subprocess, or a CI job pointing the knob elsewhere).
    (tmp_path / ".env").write_text("TORCHSHIP_BUILDER=leaked-from-cwd\n")
    (tmp_path / "deploy.env").write_text("TORCHSHIP_BUILDER=podman\n")
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    missing = {**env, "TORCHSHIP_ENV_FILE": str(tmp_path / "no-such.env")}
    assert image_setting_in_a_fresh_process(tmp_path, missing) == "None"
    named = {**env, "TORCHSHIP_ENV_FILE": str(tmp_path / "deploy.env")}
    assert image_setting_in_a_fresh_process(tmp_path, named) == "podman"
    # Without the knob the default stays `.env` in the cwd, as the README's Settings table says.
    assert image_setting_in_a_fresh_process(tmp_path, env) == "leaked-from-cwd"
