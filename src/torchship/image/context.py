"""The build context: the Dockerfile rendered from the package's template, the serve lock, the wheelhouse,
the rendered config.properties, the image's scripts, and the verified .mar — nothing else reaches the
builder. Every file comes from the installed package or the model's outputs, never from a checkout."""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torchship
from torchship.image.dockerfile import render_dockerfile, variant_for
from torchship.locks import lock_file
from torchship.rendering import render_template
from torchship.serving.config import render_log_config
from torchship.serving.metrics_config import FILE_NAME as METRICS_CONFIG
from torchship.serving.metrics_config import render_metrics_config
from torchship.spec import ModelSpec

# The image's scripts are modules of the installed package (torchship/image/runtime), read as files.
RUNTIME_DIR = Path(str(files("torchship.image.runtime")))

IMAGE_ROOT = "/opt/torchship"
MODEL_STORE = f"{IMAGE_ROOT}/model-store"
IMAGE_PYTHON = f"{IMAGE_ROOT}/venv/bin/python"
WRITABLE_PATHS = ["/tmp", "/var/log/torchship"]
LOG_CONFIG = "log4j2.xml"
# The image's scripts: name in the image -> module beside this one.
SCRIPTS = {
    "entrypoint": "entrypoint.py",
    "probe": "probe.py",
    "settings.py": "settings.py",
    "drain.py": "drain.py",  # imported by the entrypoint
}


@dataclass(frozen=True)
class BuildContext:
    directory: Path
    dockerfile: Path
    build_args: dict[str, str]


def render_config(spec: ModelSpec, heap: str) -> str:
    return render_template(
        "image-config.properties.j2",
        name=spec.name,
        version=spec.version,
        torchship_version=torchship.__version__,
        model_store=MODEL_STORE,
        metrics_config=f"{IMAGE_ROOT}/{METRICS_CONFIG}",
        max_request_size=spec.serve.max_body_bytes,
        max_response_size=spec.serve.max_response_bytes,
        response_timeout_s=spec.serve.response_timeout_s,
        heap=heap,
        tmp_dir="/tmp",
        log_config=f"{IMAGE_ROOT}/{LOG_CONFIG}",
    )


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # the wheelhouse is ~300 MB: a hard link costs nothing
    except OSError:
        shutil.copy2(source, target)


def _write_script(source: Path, target: Path) -> None:
    text = source.read_text()
    if not target.name.endswith(".py"):
        text = f"#!{IMAGE_PYTHON}\n{text}"
    target.write_text(text)
    target.chmod(0o755 if not target.name.endswith(".py") else 0o644)


def prepare_context(
    directory: Path,
    spec: ModelSpec,
    mar: Path,
    wheelhouse: Path,
    labels: dict[str, str],
    heap: str,
) -> BuildContext:
    """Fill `directory` (new, empty) with everything the Dockerfile copies."""
    directory.mkdir(parents=True)
    dockerfile = directory / "Dockerfile"
    dockerfile.write_text(render_dockerfile(variant_for(spec)))
    (directory / "requirements").mkdir()
    shutil.copy2(lock_file("serve"), directory / "requirements" / "serve.txt")
    (directory / "wheels").mkdir()
    for wheel in sorted(wheelhouse.glob("*.whl")):
        _link_or_copy(wheel, directory / "wheels" / wheel.name)
    # model/ is copied onto /opt/torchship in one instruction: one layer per model, the rest is cached.
    (directory / "model" / "model-store").mkdir(parents=True)
    _link_or_copy(mar, directory / "model" / "model-store" / f"{spec.name}.mar")
    (directory / "model" / "config.properties").write_text(render_config(spec, heap))
    (directory / "model" / LOG_CONFIG).write_text(render_log_config(spec.serve.access_log))
    (directory / "model" / METRICS_CONFIG).write_text(render_metrics_config())
    # The labels travel in the copied files too: a new commit or verdict changes this COPY layer, so the
    # layer cache cannot hand back a LABEL step made with older build arguments (buildah 1.28 keys its
    # LABEL cache on the instruction text, not on the argument values — caught by the label check).
    (directory / "model" / "image-labels.json").write_text(
        json.dumps(labels, indent=2, sort_keys=True) + "\n"
    )
    (directory / "bin").mkdir()
    for name, module in SCRIPTS.items():
        _write_script(RUNTIME_DIR / module, directory / "bin" / name)
    # Files must be readable by the image's user whatever the host's umask was.
    for path in directory.rglob("*"):
        if path.is_file():
            path.chmod(path.stat().st_mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    build_args = {
        "MODEL_NAME": spec.name,
        "MODEL_VERSION": spec.version,
        "MAR_SHA256": labels["io.torchship.mar.sha256"],
        "GATE_VERDICT": labels["io.torchship.gate.verdict"],
        "TORCHSHIP_VERSION": torchship.__version__,
        "GIT_COMMIT": labels["org.opencontainers.image.revision"],
    }
    return BuildContext(directory, dockerfile, build_args)
