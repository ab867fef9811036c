"""A small CodeBuild stand-in: runs a buildspec's phases in order, each command in bash with the documented
environment, variables carried from one command to the next (as CodeBuild does), `on-failure: ABORT`
stopping the build, CODEBUILD_BUILD_SUCCEEDING set as CodeBuild sets it, and the buildspec's variables
overridden by the given environment (the project's and the pipeline's, as in CodeBuild)."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PHASES = ("install", "pre_build", "build", "post_build")


@dataclass
class CommandResult:
    phase: str
    command: str
    returncode: int
    output: str


@dataclass
class BuildResult:
    commands: list[CommandResult] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    exported: dict[str, str] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return all(c.returncode == 0 for c in self.commands)

    def phases_run(self) -> list[str]:
        return list(dict.fromkeys(c.phase for c in self.commands))

    def log(self) -> str:
        return "\n".join(f"[{c.phase}] $ {c.command}\n{c.output}(exit {c.returncode})" for c in self.commands)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _run_command(
    command: str, env: dict[str, str], cwd: Path, timeout_s: float
) -> tuple[int, str, dict[str, str]]:
    with tempfile.NamedTemporaryFile(prefix="buildspec-env-", delete=False) as f:
        env_file = Path(f.name)
    # The EXIT trap saves the environment even when the command exits early (set -e), so a variable
    # exported by one command reaches the next one, as in CodeBuild.
    script = f"trap 'env -0 > {env_file}' EXIT\n{command}\n"
    try:
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        raw = env_file.read_bytes().decode(errors="replace")
        new_env = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
    finally:
        env_file.unlink(missing_ok=True)
    return done.returncode, done.stdout + done.stderr, new_env or env


def run_buildspec(
    path: Path, cwd: Path, env: dict[str, str], skip: tuple[str, ...] = (), timeout_s: float = 1800
) -> BuildResult:
    spec = load(path)
    assert str(spec["version"]) == "0.2", "only buildspec version 0.2"
    # CodeBuild's precedence: the project's (or start-build's) variables win over the buildspec's, which are
    # defaults; `env` plays the project's part here.
    env = {**{k: str(v) for k, v in (spec.get("env", {}).get("variables") or {}).items()}, **env}
    env["CODEBUILD_BUILD_SUCCEEDING"] = "1"
    result = BuildResult()
    for name in PHASES:
        phase = (spec.get("phases") or {}).get(name)
        if not phase or name in skip:
            continue
        for command in phase.get("commands", []):
            rc, output, env = _run_command(command, env, cwd, timeout_s)
            result.commands.append(CommandResult(name, command, rc, output))
            if rc != 0:
                env["CODEBUILD_BUILD_SUCCEEDING"] = "0"
                break
        if env["CODEBUILD_BUILD_SUCCEEDING"] == "0" and phase.get("on-failure") == "ABORT":
            break
    result.env = env
    result.exported = {k: env.get(k, "") for k in spec.get("env", {}).get("exported-variables") or []}
    return result
