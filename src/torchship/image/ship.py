"""`torchship image`: the verified .mar into an image, the image run and checked, the record written.

Order matters: nothing is built unless verify is up to date (the same check as publish); nothing is pushed
unless the built image itself served answers equal to the source model's; image.json is written last,
atomically, so a failed run never leaves a record claiming an image that did not serve.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torchship
from torchship.archiver.package import mar_path
from torchship.errors import ServedParityError
from torchship.examples import load_examples
from torchship.hashing import sha256_file
from torchship.image.builders import Tool, find_builder, find_runtime
from torchship.image.context import WRITABLE_PATHS, prepare_context
from torchship.image.dockerfile import UID, variant_for
from torchship.image.errors import ImageBuildError
from torchship.image.labels import git_commit, image_labels
from torchship.image.record import IMAGE_DIR, ImageRecord, Ports, ServedParity
from torchship.image.run_check import RunningImage, check_served
from torchship.image.settings import ImageSettings
from torchship.image.wheelhouse import ensure_wheelhouse
from torchship.locks import lock_file
from torchship.pipeline import Runner, SilentReporter, replace_dir, temp_dir_beside
from torchship.reference import source_results
from torchship.settings import Settings
from torchship.sources import MODEL_DIRNAME
from torchship.spec import ModelSpec
from torchship.stages import STAGES
from torchship.tasks import task_definition
from torchship.validate.precision import served_judge


@dataclass(frozen=True)
class ImageRequest:
    base_image: str | None = None  # default: the Dockerfile's (Debian bookworm-slim; AWS's for Neuron)
    tag: str | None = None  # default: <version>-<first 12 of the .mar's sha256>
    push: str | None = None  # repository to push to (registry/name), e.g. ECR's URI


def default_tag(spec: ModelSpec, mar_sha256: str) -> str:
    """Unique per artifact: an immutable ECR repository never sees the same tag for different content."""
    return f"{spec.version.replace('+', '-')}-{mar_sha256[:12]}"


@dataclass(frozen=True)
class VerifiedModel:
    """What an image is made from: the .mar that passed verify, and the labels that say so."""

    mar: Path
    mar_sha256: str
    labels: dict[str, str]


def verified_model(spec: ModelSpec, settings: Settings, image_settings: ImageSettings) -> VerifiedModel:
    """The verified .mar and its labels; refused (the same check as publish) unless verify is up to date."""
    verify = Runner(spec, settings, STAGES, SilentReporter()).require_current("verify")
    verdict = verify.get("details", {}).get("verdict", "unknown")
    mar = mar_path(settings.stage_root(spec.name, spec.version) / "package", spec)
    mar_sha256 = sha256_file(mar)
    labels = image_labels(spec, mar_sha256, verdict, git_commit(image_settings.git_commit))
    return VerifiedModel(mar, mar_sha256, labels)


def _write_atomically(directory: Path, record: ImageRecord, config_text: str) -> Path:
    tmp = temp_dir_beside(directory)
    tmp.mkdir(parents=True)
    try:
        record.write(tmp)
        (tmp / "config.properties").write_text(config_text)  # what the image runs with, for review
        replace_dir(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory / "image.json"


def ship_image(
    spec: ModelSpec,
    settings: Settings,
    request: ImageRequest,
    progress: Callable[[str], None] = lambda message: None,
    image_settings: ImageSettings | None = None,
) -> ImageRecord:
    image_settings = image_settings or ImageSettings()
    root = settings.stage_root(spec.name, spec.version)
    verified = verified_model(spec, settings, image_settings)
    labels = verified.labels
    builder = find_builder(image_settings.builder)
    runtime = find_runtime(builder)
    tag = request.tag or default_tag(spec, verified.mar_sha256)
    reference = f"localhost/torchship/{spec.name}:{tag}"
    base_image = request.base_image or variant_for(spec).default_base_image

    root.mkdir(parents=True, exist_ok=True)
    work = root / f".image-build-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        log = work.parent / f"{IMAGE_DIR}-build.log"
        log.write_text("")
        progress("preparing the serving runtime's wheelhouse")
        wheelhouse = ensure_wheelhouse(lock_file("serve"), image_settings.wheelhouse, log)
        context = prepare_context(
            work / "context", spec, verified.mar, wheelhouse, labels, settings.torchserve_heap
        )
        progress(f"building {reference} with {builder.name} (log: {log})")
        started = time.perf_counter()
        builder.build(
            context.directory, context.dockerfile, reference,
            {"BASE_IMAGE": base_image, **context.build_args}, log,
        )  # fmt: skip
        build_s = time.perf_counter() - started
        facts = runtime.inspect(reference)
        _check_facts(reference, facts.labels, labels, facts.user)
        checked = _run_and_check(spec, root, runtime, reference, image_settings, progress)
        pushed = None
        if request.push:
            destination = f"{request.push}:{tag}"
            progress(f"pushing {destination}")
            digest = builder.push(reference, destination, image_settings.registry_tls_verify)
            pushed = f"{request.push}@{digest}"
        record = ImageRecord(
            torchship_version=torchship.__version__,
            reference=reference,
            digest=facts.id,
            pushed=pushed,
            size_bytes=facts.size_bytes,
            labels=facts.labels,
            served_parity=ServedParity(
                ok=checked.parity["ok"],
                max_abs=checked.parity["max_abs"],
                compared=checked.parity["compared"],
            ),
            time_to_ready_s=round(checked.time_to_ready_s, 2),
            time_to_first_200_s=round(checked.time_to_first_200_s, 2),
            stop_s=None if checked.stop_s is None else round(checked.stop_s, 2),
            build_s=round(build_s, 1),
            uid=UID,
            writable_paths=WRITABLE_PATHS,
            ports=Ports(),
            model_name=spec.name,
            model_version=spec.version,
            builder=builder.name,
            base_image=base_image,
        )
        _write_atomically(
            root / IMAGE_DIR, record, (context.directory / "model" / "config.properties").read_text()
        )
        return record
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_facts(reference: str, actual: dict[str, str], expected: dict[str, str], user: str) -> None:
    wrong = {k: (actual.get(k), v) for k, v in expected.items() if actual.get(k) != v}
    if wrong:
        raise ImageBuildError(
            f"{reference} was built with wrong labels: "
            + "; ".join(f"{k} is {a!r}, expected {e!r}" for k, (a, e) in wrong.items()),
            hint="The Dockerfile's LABEL instruction and torchship/image/labels.py must agree.",
        )
    if user.split(":")[0] != str(UID):
        raise ImageBuildError(
            f"{reference} runs as user {user!r}, not {UID}", hint="The Dockerfile's USER changed."
        )


def _run_and_check(spec: ModelSpec, root: Path, runtime: Tool, reference: str, image_settings: ImageSettings,
                   progress: Callable[[str], None]):  # fmt: skip
    bodies = load_examples(spec)
    progress("computing source-model outputs in-process")
    expected = source_results(spec, root / "fetch" / MODEL_DIRNAME, bodies)
    progress(f"running {reference} (read-only, UID {UID}, loopback ports) until its probe says READY")
    container = RunningImage(runtime, reference, spec.name, image_settings.image_ready_timeout_s)
    with container:
        progress(
            f"READY in {container.time_to_ready_s:.1f} s; checking served parity on {len(bodies)} examples"
        )
        schema = task_definition(spec.task).runtime.request
        checked = check_served(
            container, bodies, schema, expected, spec.validate.atol, spec.validate.rtol, served_judge(spec)
        )
        container.stop()
    if not checked.parity["ok"]:
        failure = checked.parity["failure"]
        raise ServedParityError(
            f"the image's answer for {failure['request']} ({failure['mode']} request) differs from the source "
            f"model at {failure['mismatch']} (atol {spec.validate.atol}, rtol {spec.validate.rtol})",
            hint="verify passed for the .mar, so the image's runtime differs: compare the serve lock (torchship/locks/serve.txt) "
            "with the toolchain's pins.",
        )
    if container.exit_code not in (0, None):
        progress(f"warning: the container exited {container.exit_code} on SIGTERM (expected 0)")
    return dataclasses.replace(checked, stop_s=container.stop_s, exit_code=container.exit_code)
