"""torchship as a user gets it: the wheel built from this checkout, installed into a fresh venv outside it.

The installed wheel is the product: a test that runs torchship through `WheelEnv` proves the command works
with nothing from the source tree (no checkout on sys.path, no file read from the repository).

How it is made (once per test session, by the `wheel_env` fixture in conftest.py, ~15 s here):
  1. `pip wheel --no-deps --no-build-isolation` on a copy of the packaging inputs (src/, setup.cfg,
     pyproject.toml, README.md): the checkout gets no build/ or egg-info, and only what setup.cfg declares
     as package data can reach the wheel.
  2. `python -m venv --without-pip` in a temp dir, and `pip --python VENV install --no-deps WHEEL`.
  3. A `.pth` file in the new venv's site-packages naming the running venv's site-packages, so torch,
     transformers, TorchServe... come without a 2-minute install. A plain path line in a .pth adds that one
     directory to sys.path; the .pth files *inside* it are not processed, so the project venv's editable
     torchship (its `__editable__` .pth naming the checkout's src/) stays out. It is written after the
     install: pip must not see (and try to replace) the project venv's torchship.

Use from another test (e.g. an end-to-end one):

    def test_something(wheel_env, tmp_path):
        done = wheel_env.torchship_run(["run", "models/x/model.yaml"], cwd=repo)
        assert done.returncode == 0, done.stderr
        # wheel_env.python / wheel_env.torchship: the venv's executables; wheel_env.env: the environment
        # (no PYTHONPATH, the venv's bin first on PATH, no developer TORCHSHIP_/AWS_ variables);
        # wheel_env.wheel: the built wheel (e.g. for PIP_FIND_LINKS); wheel_env.build_s: its build time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# What `pip wheel` needs from the checkout (setup.cfg reads README.md as the long description).
PACKAGING_INPUTS = ("src", "setup.cfg", "pyproject.toml", "README.md")
# Variables from the developer's shell that would change what torchship does (as conftest's isolation).
ISOLATED_PREFIXES = ("TORCHSHIP_", "AWS_", "NEPTUNE_")


@dataclass(frozen=True)
class WheelEnv:
    venv: Path
    wheel: Path
    build_s: float  # how long `pip wheel` took
    env: dict[str, str]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def torchship(self) -> Path:
        return self.venv / "bin" / "torchship"

    @property
    def site_packages(self) -> Path:
        return next((self.venv / "lib").glob("python3*/site-packages"))

    def torchship_run(
        self, args: list[str], cwd: Path, timeout_s: float = 600, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """`torchship ARGS` in `cwd` with the venv's entry point; `env` adds variables."""
        return subprocess.run(
            [str(self.torchship), *args], cwd=cwd, env={**self.env, **env},
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip


def _checked(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} … failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


def build_wheel(checkout: Path, workdir: Path) -> tuple[Path, float]:
    """The torchship wheel built from `checkout`'s packaging inputs; (path, seconds pip wheel took)."""
    source = workdir / "source"
    source.mkdir(parents=True)
    for name in PACKAGING_INPUTS:
        if (checkout / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
            shutil.copytree(checkout / name, source / name, ignore=ignore)
        else:
            shutil.copy2(checkout / name, source / name)
    out = workdir / "wheels"
    started = time.perf_counter()
    _checked([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
              "-w", str(out), str(source)])  # fmt: skip
    build_s = time.perf_counter() - started
    (wheel,) = out.glob("torchship-*.whl")
    return wheel, build_s


def clean_environment(venv: Path, base: dict[str, str]) -> dict[str, str]:
    """`base` without PYTHONPATH, the developer's torchship/AWS variables or an active venv; `venv`'s bin
    first on PATH (TorchServe's workers find that python); no dotenv file."""
    env = {
        k: v for k, v in base.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not k.startswith(ISOLATED_PREFIXES)
    }  # fmt: skip
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{base.get('PATH', '')}"
    env["TORCHSHIP_ENV_FILE"] = str(venv / "no-such.env")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def install_wheel_env(wheel: Path, build_s: float, venv: Path) -> WheelEnv:
    """A new venv at `venv` with `wheel` installed and the running venv's packages visible (see above)."""
    _checked([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _checked([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
              "-q", str(wheel)])  # fmt: skip
    created = WheelEnv(venv=venv, wheel=wheel, build_s=build_s, env=clean_environment(venv, dict(os.environ)))
    (created.site_packages / "torchship-test-dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\n"
    )
    return created


def make_wheel_env(directory: Path, checkout: Path = REPO) -> WheelEnv:
    """Build the wheel from `checkout` and install it into `directory`/venv (outside the checkout)."""
    wheel, build_s = build_wheel(checkout, directory / "build")
    return install_wheel_env(wheel, build_s, directory / "venv")
