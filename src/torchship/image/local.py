"""Containers on this kind of machine, for tests, rehearsals and the demo: podman/buildah configured to
work here, a Debian base image made with debootstrap, Debian's docker-registry on a loopback port, and the
demo model's image built once per .mar.

Why each setting (measured on Debian 12 runners, see shared/DELIVERY-NOTES.md): crun fails on hybrid
cgroups and rlimits, so runc + cgroupfs and no default ulimits; overlay is unavailable, so vfs, in a
private storage root (not the machine's default, which others may use); no Docker Hub, so the base image is
debootstrapped from the machine's Debian mirror and imported as `localhost/debian:bookworm-slim`.

Use from another test or tool (the image is built once per .mar sha256, then reused):

    from torchship.image.local import LocalContainers, demo_image
    containers = LocalContainers()           # or LocalContainers(Path("/var/tmp/torchship-containers"))
    containers.require()                      # raises ContainersUnavailable(reason) if podman etc. are absent
    record = demo_image(containers, Path("models/minilm-embeddings/model.yaml"))  # ImageRecord (local image)
    # run with: podman (env=containers.env()) run --network host --read-only ... record.reference
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from torchship.processes import stop_process
from torchship.serving.ports import HOST, free_port

DEFAULT_ROOT = Path(os.environ.get("TORCHSHIP_CONTAINERS_ROOT", "/var/tmp/torchship-containers"))
BASE_IMAGE = "localhost/debian:bookworm-slim"
TOOLS = ("podman", "buildah", "runc", "debootstrap")


class ContainersUnavailable(RuntimeError):
    """Containers cannot run here; the message is the reason (tests skip with it)."""


class LocalContainers:
    def __init__(self, root: Path = DEFAULT_ROOT):
        self.root = Path(root)

    # --- configuration ---------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment podman and buildah need here (plus the rest of os.environ)."""
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "containers.conf"
        storage = self.root / "storage.conf"
        conf.write_text(
            '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
        )
        storage.write_text(
            f'[storage]\ndriver = "vfs"\nrunroot = "{self.root}/run"\ngraphroot = "{self.root}/storage"\n'
        )
        return {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}

    @contextlib.contextmanager
    def activated(self) -> Iterator[None]:
        """os.environ set for podman/buildah inside the block (what torchship's builders read)."""
        saved = {k: os.environ.get(k) for k in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")}
        env = self.env()
        os.environ["CONTAINERS_CONF"] = env["CONTAINERS_CONF"]
        os.environ["CONTAINERS_STORAGE_CONF"] = env["CONTAINERS_STORAGE_CONF"]
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def podman(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ["podman", *args], env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:3])} failed: {done.stderr.strip()[-500:]}")
        return done

    # --- availability ----------------------------------------------------------------------------------

    def missing_tools(self) -> list[str]:
        return [tool for tool in TOOLS if shutil.which(tool) is None]

    def require(self, installer: Path | None = None) -> None:
        """Tools present and podman working. `installer`: a shell script run as root when tools are missing
        (torchship's checkout has scripts/install-container-tools.sh; the package ships no installer)."""
        if self.missing_tools() and installer is not None and os.geteuid() == 0 and installer.is_file():
            subprocess.run(["sh", str(installer)], capture_output=True, timeout=900, check=False)
        missing = self.missing_tools()
        if missing:
            raise ContainersUnavailable(
                f"{', '.join(missing)} not installed (torchship's scripts/install-container-tools.sh installs "
                "them as root on Debian)"
            )
        if os.geteuid() != 0:
            raise ContainersUnavailable("rootless podman with vfs is not set up here; run as root")
        done = self.podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False, timeout=120)
        if done.returncode != 0:
            raise ContainersUnavailable(f"podman does not work here: {done.stderr.strip()[-300:]}")

    # --- base image ------------------------------------------------------------------------------------

    def mirror(self) -> str:
        """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
        sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
        for path in sources:
            if not path.is_file():
                continue
            text = path.read_text()
            for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s*)?)(\S+)", text, re.MULTILINE):
                # Only a Debian mirror serves bookworm (an Ubuntu runner's archive does not).
                if "debian" in match.group(1) and "security" not in match.group(1):
                    return match.group(1)
        return "http://deb.debian.org/debian"

    def ensure_base_image(self) -> str:
        """`localhost/debian:bookworm-slim`, debootstrapped once (~30 s) and kept between runs."""
        if self.podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
            return BASE_IMAGE
        rootfs = self.root / "rootfs"
        if not (rootfs / "usr" / "bin" / "apt-get").is_file():
            shutil.rmtree(rootfs, ignore_errors=True)
            subprocess.run(
                ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), self.mirror()],
                capture_output=True, timeout=900, check=True,
            )  # fmt: skip
            for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for entry in (rootfs / leftover).glob("*"):
                    if entry.is_file():
                        entry.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        done = subprocess.run(
            ["podman", "import", "-", BASE_IMAGE],
            stdin=tar.stdout,
            env=self.env(),
            capture_output=True,
            check=False,
        )
        tar.wait()
        if done.returncode != 0:
            raise RuntimeError(f"podman import failed: {done.stderr.decode(errors='replace')[-500:]}")
        return BASE_IMAGE

    # --- the ECR stand-in ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def registry(self, workdir: Path) -> Iterator[str]:
        """Debian's docker-registry (distribution v2) on a free loopback port; yields `127.0.0.1:PORT`."""
        port = free_port()
        config = workdir / "registry.yml"
        (workdir / "registry-data").mkdir(parents=True, exist_ok=True)
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {workdir / 'registry-data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {HOST}:{port}\n"
        )
        log = (workdir / "registry.log").open("wb")
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://{HOST}:{port}/v2/", timeout=1):
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"docker-registry did not start: {(workdir / 'registry.log').read_text()[-500:]}"
                        ) from None
                    time.sleep(0.2)
            yield f"{HOST}:{port}"
        finally:
            stop_process(proc)
            log.close()


def demo_image(containers: LocalContainers, spec_path: Path, outputs_dir: Path | None = None):
    """The model's image, built by `torchship image` (the packaged Dockerfile) on the local base, run
    and parity-checked; reused while the .mar's sha256 and the image are unchanged. Returns its ImageRecord.
    `outputs_dir` defaults to <containers root>/outputs (stages run there first, through verify)."""
    from torchship.archiver.package import mar_path
    from torchship.hashing import sha256_file
    from torchship.image.record import IMAGE_DIR, ImageRecord
    from torchship.image.ship import ImageRequest, ship_image
    from torchship.pipeline import Runner, SilentReporter
    from torchship.settings import Settings
    from torchship.spec import load_spec
    from torchship.stages import STAGE_NAMES, STAGES

    spec = load_spec(spec_path)
    settings = Settings(outputs_dir=outputs_dir or containers.root / "outputs")
    outcomes = Runner(spec, settings, STAGES, SilentReporter()).run(STAGE_NAMES)
    failed = outcomes[-1].error if outcomes[-1].status == "failed" else None
    if failed is not None:
        raise failed
    root = settings.stage_root(spec.name, spec.version)
    mar_sha256 = sha256_file(mar_path(root / "package", spec))
    with containers.activated():
        if (root / IMAGE_DIR / "image.json").is_file():
            cached = ImageRecord.read(root / IMAGE_DIR)
            if (
                cached.labels.get("io.torchship.mar.sha256") == mar_sha256
                and containers.podman("image", "exists", cached.reference, check=False).returncode == 0
            ):
                return cached
            # vfs keeps a full copy per layer (~2 GB each here): an outdated demo image goes before a new one.
            containers.podman("image", "rm", "-f", cached.reference, check=False)
        base = containers.ensure_base_image()
        return ship_image(spec, settings, ImageRequest(base_image=base))
