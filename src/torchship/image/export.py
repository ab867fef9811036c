"""`torchship image SPEC --context DIR`: the complete build context of a verified model written to DIR, and
no build — for teams whose own build system (Kaniko, a docker daemon elsewhere, a platform pipeline) makes
the image. The context is the very one `torchship image` builds, so the image is the same."""

from __future__ import annotations

import shlex
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from torchship.image.context import BuildContext, prepare_context
from torchship.image.errors import ImageError
from torchship.image.settings import ImageSettings
from torchship.image.ship import verified_model
from torchship.image.wheelhouse import ensure_wheelhouse
from torchship.locks import lock_file
from torchship.settings import Settings
from torchship.spec import ModelSpec

CONTEXT_LOG = "image-context.log"


class ContextDirectoryNotEmpty(ImageError):
    """--context names a directory that already holds files: torchship never writes over them."""

    exit_code = 2


def _refuse_unusable(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise ContextDirectoryNotEmpty(
            f"--context {target} is a file, not a directory",
            hint="Name a new or empty directory for the build context.",
        )
    if target.is_dir() and any(target.iterdir()):
        raise ContextDirectoryNotEmpty(
            f"--context {target} is not empty; torchship writes a build context only into a new or empty directory",
            hint=f"Remove its contents first (rm -r {shlex.quote(str(target))}) or name another directory.",
        )


def write_context(
    spec: ModelSpec,
    settings: Settings,
    target: Path,
    progress: Callable[[str], None] = lambda message: None,
    image_settings: ImageSettings | None = None,
) -> BuildContext:
    """Write the build context of the spec's verified .mar into `target` (new or empty); nothing is left
    there when anything fails (the context is assembled beside it and renamed into place)."""
    image_settings = image_settings or ImageSettings()
    target = target.resolve()
    _refuse_unusable(target)
    verified = verified_model(spec, settings, image_settings)
    root = settings.stage_root(spec.name, spec.version)
    root.mkdir(parents=True, exist_ok=True)
    log = root / CONTEXT_LOG
    log.write_text("")
    progress("preparing the serving runtime's wheelhouse")
    wheelhouse = ensure_wheelhouse(lock_file("serve"), image_settings.wheelhouse, log)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        context = prepare_context(
            staging, spec, verified.mar, wheelhouse, verified.labels, settings.torchserve_heap
        )
        if target.is_dir():
            target.rmdir()  # empty (checked above): replaced by the complete context in one rename
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildContext(target, target / context.dockerfile.name, context.build_args)


def build_command(context: BuildContext, tag: str, base_image: str | None = None) -> str:
    """The `docker build` line that makes from `context` the image `torchship image` would make (the build
    arguments set the labels torchship checks; without `base_image`, the Dockerfile's default base)."""
    build_args = {**({"BASE_IMAGE": base_image} if base_image else {}), **context.build_args}
    args = " ".join(f"--build-arg {shlex.quote(f'{k}={v}')}" for k, v in build_args.items())
    return f"docker build {args} -t {shlex.quote(tag)} {shlex.quote(str(context.directory))}"
