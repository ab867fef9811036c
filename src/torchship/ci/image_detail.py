"""The pushed images of this CI run as build artifacts (`torchship ci image-detail SPECS_FILE`):
imageDetail.json (CodePipeline's format: the image URI; one object for one model, a list for several) and
image-digests.txt (`NAME VERSION REPOSITORY@sha256:...`, one line per model). Read from each spec's
outputs/<name>/<version>/image/image.json, which `torchship image --push` wrote."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from torchship.ci.errors import CIError
from torchship.image.record import IMAGE_DIR, IMAGE_JSON, ImageRecord
from torchship.settings import Settings
from torchship.spec import load_spec

IMAGE_DETAIL_JSON = "imageDetail.json"
IMAGE_DIGESTS_TXT = "image-digests.txt"


@dataclass(frozen=True)
class PushedImage:
    name: str
    version: str
    uri: str  # repository@sha256:... as pushed

    def detail(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "ImageURI": self.uri}

    def digest_line(self) -> str:
        return f"{self.name} {self.version} {self.uri}"


def read_specs_file(path: Path) -> list[Path]:
    """The spec paths `torchship ci changed-specs` wrote (whitespace-separated; none is a valid answer)."""
    if not path.is_file():
        raise CIError(
            f"the specs file {path} does not exist",
            hint="Write it first: torchship ci changed-specs > changed-specs.txt",
        )
    return [Path(word) for word in path.read_text().split()]


def pushed_image(spec_path: Path, settings: Settings) -> PushedImage:
    spec = load_spec(spec_path)
    record_dir = settings.stage_root(spec.name, spec.version) / IMAGE_DIR
    if not (record_dir / IMAGE_JSON).is_file():
        raise CIError(
            f"{spec.name} {spec.version} has no image record ({record_dir / IMAGE_JSON} does not exist)",
            hint=f"Build and push it first: torchship image {spec_path} --push REPOSITORY",
        )
    try:
        record = ImageRecord.read(record_dir)
    except ValidationError as exc:
        raise CIError(
            f"{record_dir / IMAGE_JSON} is not a readable image record: {str(exc).splitlines()[0]}",
            hint=f"Build it again: torchship image {spec_path} --push REPOSITORY",
        ) from None
    if not record.pushed:
        raise CIError(
            f"{record_dir / IMAGE_JSON} records no pushed image: {record.reference} was built but not pushed",
            hint=f"Push it: torchship image {spec_path} --push REPOSITORY",
        )
    return PushedImage(spec.name, spec.version, record.pushed)


def pushed_images(spec_paths: list[Path], settings: Settings) -> list[PushedImage]:
    """Every spec's pushed image; the first spec without one is an error (nothing is written then)."""
    return [pushed_image(path, settings) for path in spec_paths]


def write_image_detail(images: list[PushedImage], directory: Path) -> tuple[Path, Path]:
    details = [image.detail() for image in images]
    detail_json = directory / IMAGE_DETAIL_JSON
    detail_json.write_text(json.dumps(details[0] if len(details) == 1 else details, indent=2) + "\n")
    digests = directory / IMAGE_DIGESTS_TXT
    digests.write_text("".join(image.digest_line() + "\n" for image in images))
    return detail_json, digests
