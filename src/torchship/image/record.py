"""outputs/<name>/<version>/image/image.json: what was built, where it went, and that it served."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from torchship.versions import check_format

IMAGE_DIR = "image"  # outputs/<name>/<version>/image/
IMAGE_JSON = "image.json"
# The layout of image.json. Raise it when a field changes meaning or a required one is added: a torchship that
# knows only older formats then refuses the file (versions.check_format) instead of misreading it.
IMAGE_RECORD_FORMAT = 1


class ServedParity(BaseModel):
    ok: bool
    max_abs: float
    compared: int


class Ports(BaseModel):
    inference: int = 8080
    management: int = 8081
    metrics: int = 8082


class ImageRecord(BaseModel):
    record_format: int = Field(IMAGE_RECORD_FORMAT, description="the layout of this file (1 when absent)")
    torchship_version: str | None = Field(
        None, description="the torchship that built and checked the image (absent in records before 0.1.0)"
    )
    reference: str = Field(description="repo:tag of the local image")
    digest: str = Field(description="sha256:... of the local image (its config digest, the image ID)")
    pushed: str | None = Field(None, description="repository@sha256:... of the pushed manifest, if pushed")
    size_bytes: int
    labels: dict[str, str]
    served_parity: ServedParity
    time_to_ready_s: float = Field(description="`run` until the probe reported a READY worker")
    time_to_first_200_s: float = Field(
        description="`run` until the first prediction answered 200 (sent as soon as the probe said READY)"
    )
    stop_s: float | None = Field(None, description="SIGTERM until the container exited")
    build_s: float
    uid: int
    writable_paths: list[str]
    ports: Ports = Field(description="the image's default ports (the environment can change them)")
    model_name: str
    model_version: str
    builder: str
    base_image: str

    def write(self, directory: Path) -> Path:
        path = directory / IMAGE_JSON
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path

    @staticmethod
    def read(directory: Path) -> ImageRecord:
        return ImageRecord.read_file(directory / IMAGE_JSON)

    @staticmethod
    def read_file(path: Path) -> ImageRecord:
        """image.json of any torchship version whose format this one knows; UnknownFormatError for a newer
        format, ValueError (pydantic.ValidationError among them) for a file that is not an image record."""
        data: Any = json.loads(path.read_text())
        if isinstance(data, dict):
            labels = data["labels"] if isinstance(data.get("labels"), dict) else {}
            check_format(
                data.get("record_format"),
                known=IMAGE_RECORD_FORMAT,
                field="record_format",
                what=str(path),
                written_by=data.get("torchship_version") or labels.get("io.torchship.version"),
                otherwise="rebuild the image with this one (`torchship image SPEC`)",
            )
        return ImageRecord.model_validate(data)
