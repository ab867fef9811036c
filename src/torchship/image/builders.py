"""Builders and container runtimes behind one small interface: docker, podman, buildah.

Each method is one CLI call. podman and buildah read CONTAINERS_CONF / CONTAINERS_STORAGE_CONF from the
environment (set them where the host needs runc, cgroupfs or vfs); docker needs nothing extra.
buildah builds and pushes but cannot run a served container: the run-and-check then needs podman or docker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from torchship.image.errors import BuilderNotFound, ImageBuildError, ImagePushError, ImageServeError

BUILDERS = ("docker", "podman", "buildah")
RUNTIMES = ("docker", "podman")


@dataclass(frozen=True)
class ImageFacts:
    id: str  # sha256:... of the image config (the local image ID)
    size_bytes: int
    labels: dict[str, str]
    user: str


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass(frozen=True)
class Tool:
    """One of docker / podman / buildah, by name; `executable` is its resolved path."""

    name: str
    executable: str

    def _run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([self.executable, *args], check=False, **kwargs)

    # --- build ---------------------------------------------------------------------------------------

    def build(self, context: Path, dockerfile: Path, tag: str, build_args: dict[str, str], log: Path) -> None:
        args = [f"--build-arg={k}={v}" for k, v in build_args.items()]
        if self.name == "docker":
            command = ["build", "--network=host", "-f", str(dockerfile), "-t", tag, *args, str(context)]
        else:
            # chroot isolation: no user namespaces or nested cgroups needed (CI runners, this machine).
            verb = ["bud"] if self.name == "buildah" else ["build"]
            command = [*verb, "--isolation=chroot", "--network=host", "--layers", "--format=docker",
                       "-f", str(dockerfile), "-t", tag, *args, str(context)]  # fmt: skip
        with log.open("ab") as out:
            done = self._run(command, stdout=out, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise ImageBuildError(
                f"{self.name} build of {tag} failed (exit {done.returncode})",
                hint=f"The build log names the failing step: {log}",
                details=_tail(log),
            )

    def inspect(self, reference: str) -> ImageFacts:
        command = ["inspect", reference] if self.name == "buildah" else ["image", "inspect", reference]
        if self.name == "buildah":
            command = ["inspect", "--type", "image", reference]
        done = self._run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise ImageBuildError(f"{self.name} cannot inspect {reference}: {done.stderr.strip()[:300]}")
        data = json.loads(done.stdout)
        if self.name == "buildah":
            config = data.get("OCIv1", {}).get("config", {})
            return ImageFacts(
                id="sha256:" + data["FromImageID"],
                size_bytes=self.size_of(reference),
                labels=config.get("Labels") or {},
                user=config.get("User", ""),
            )
        item = data[0]
        image_id = item["Id"] if item["Id"].startswith("sha256:") else "sha256:" + item["Id"]
        config = item.get("Config") or {}
        return ImageFacts(
            id=image_id,
            size_bytes=int(item.get("Size") or 0),
            labels=config.get("Labels") or {},
            user=config.get("User", ""),
        )

    def size_of(self, reference: str) -> int:
        done = self._run(
            ["images", "--format", "{{.Size}}", "--noheading", reference], capture_output=True, text=True
        )
        try:
            return int(done.stdout.split()[0])
        except (IndexError, ValueError):
            return 0

    def remove_image(self, reference: str) -> None:
        verb = ["rmi"] if self.name == "buildah" else ["image", "rm"]
        self._run([*verb, "-f", reference], capture_output=True)

    # --- registry ------------------------------------------------------------------------------------

    def push(self, reference: str, destination: str, tls_verify: bool = True) -> str:
        """Push and return the pushed manifest's digest (sha256:...)."""
        if self.name == "docker":
            self._checked(["tag", reference, destination], ImagePushError)
            done = self._run(["push", destination], capture_output=True, text=True)
            if done.returncode != 0:
                raise self._push_error(destination, done.stderr)
            inspected = self._run(["image", "inspect", "--format", "{{json .RepoDigests}}", destination],
                                  capture_output=True, text=True)  # fmt: skip
            repo = destination.rsplit(":", 1)[0]
            for entry in json.loads(inspected.stdout or "[]"):
                if entry.startswith(repo + "@"):
                    return entry.split("@", 1)[1]
            raise ImagePushError(f"docker pushed {destination} but reported no digest for it")
        with tempfile.TemporaryDirectory(prefix="torchship-push-") as tmp:
            digest_file = Path(tmp) / "digest"
            done = self._run(
                ["push", *([] if tls_verify else ["--tls-verify=false"]), "--format=docker",
                 "--digestfile", str(digest_file), reference, f"docker://{destination}"],
                capture_output=True, text=True,
            )  # fmt: skip
            if done.returncode != 0:
                raise self._push_error(destination, done.stderr)
            return digest_file.read_text().strip()

    def _push_error(self, destination: str, stderr: str) -> ImagePushError:
        return ImagePushError(
            f"{self.name} could not push to {destination}: {stderr.strip().splitlines()[-1] if stderr.strip() else '?'}",
            hint="Log in first (ECR: aws ecr get-login-password | docker login --username AWS --password-stdin "
            "REGISTRY) and check that the repository exists and its tags are not already taken (immutable).",
        )

    def _checked(self, args: list[str], error: type) -> str:
        done = self._run(args, capture_output=True, text=True)
        if done.returncode != 0:
            raise error(f"{self.name} {' '.join(args[:2])} failed: {done.stderr.strip()[:300]}")
        return done.stdout

    # --- containers (docker, podman) -----------------------------------------------------------------

    def run_detached(
        self, reference: str, name: str, env: dict[str, str], tmpfs: list[str], user: str
    ) -> None:
        # Host networking on loopback ports: the image's config binds 127.0.0.1 when told to.
        args = ["run", "-d", "--name", name, "--network=host", "--read-only", f"--user={user}"]
        args += [f"--tmpfs={path}:rw,mode=1777" for path in tmpfs]
        args += [f"--env={k}={v}" for k, v in env.items()]
        done = self._run([*args, reference], capture_output=True, text=True)
        if done.returncode != 0:
            raise ImageServeError(
                f"{self.name} could not start {reference}: {done.stderr.strip()[:500]}",
                hint="Check the container runtime works here (podman: runc, cgroupfs, CONTAINERS_CONF).",
            )

    def exec(self, name: str, command: list[str], timeout_s: float = 20) -> subprocess.CompletedProcess:
        return self._run(["exec", name, *command], capture_output=True, text=True, timeout=timeout_s)

    def is_running(self, name: str) -> bool:
        done = self._run(["inspect", "--format", "{{.State.Running}}", name], capture_output=True, text=True)
        return done.stdout.strip() == "true"

    def exit_code(self, name: str) -> int | None:
        done = self._run(["inspect", "--format", "{{.State.ExitCode}}", name], capture_output=True, text=True)
        return int(done.stdout.strip()) if done.stdout.strip().lstrip("-").isdigit() else None

    def logs(self, name: str, lines: int = 30) -> str:
        done = self._run(["logs", "--tail", str(lines), name], capture_output=True, text=True)
        return (done.stdout + done.stderr).strip()

    def stop(self, name: str, timeout_s: int = 30) -> None:
        self._run(["stop", "-t", str(timeout_s), name], capture_output=True, timeout=timeout_s + 30)

    def remove_container(self, name: str) -> None:
        self._run(["rm", "-f", name], capture_output=True, timeout=60)


def _usable(tool: Tool) -> bool:
    """docker's CLI without a reachable daemon (a common CI and laptop state) cannot build: skip it."""
    if tool.name != "docker":
        return True
    try:
        done = tool._run(["version", "--format", "{{.Server.Version}}"], capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def find_tool(names: tuple[str, ...], wanted: str | None = None) -> Tool:
    """The wanted tool, or the first of `names` on PATH that works (docker needs its daemon)."""
    if wanted is not None and wanted not in BUILDERS:
        raise BuilderNotFound(
            f"TORCHSHIP_BUILDER={wanted!r} is not a builder", hint=f"Choose one of: {', '.join(BUILDERS)}."
        )
    unusable = []
    for name in (wanted,) if wanted else names:
        path = shutil.which(name)
        if path and _usable(Tool(name, path)):
            return Tool(name, path)
        if path:
            unusable.append(f"{name} (its daemon does not answer)")
    raise BuilderNotFound(
        f"no {' / '.join((wanted,) if wanted else names)} on PATH"
        + (f"; found but unusable: {', '.join(unusable)}" if unusable else ""),
        hint="Install one (Debian: apt-get install podman buildah; or Docker), or set TORCHSHIP_BUILDER.",
    )


def find_builder(wanted: str | None = None) -> Tool:
    return find_tool(BUILDERS, wanted)


def find_runtime(builder: Tool) -> Tool:
    """The runtime that runs what `builder` built: itself, or podman beside buildah (shared storage)."""
    if builder.name in RUNTIMES:
        return builder
    try:
        return find_tool(("podman",))
    except BuilderNotFound:
        raise BuilderNotFound(
            "buildah built the image but cannot run it, and podman is not installed",
            hint="Install podman (it shares buildah's image storage) or use docker.",
        ) from None
