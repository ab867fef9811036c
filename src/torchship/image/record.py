"""outputs/<name>/<version>/image/image.json: what was built, where it went, and that it served."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

IMAGE_DIR = "image"  # outputs/<name>/<version>/image/
IMAGE_JSON = "image.json"


class ServedParity(BaseModel):
    ok: bool
    max_abs: float
    compared: int


class Ports(BaseModel):
    inference: int = 8080
    management: int = 8081
    metrics: int = 8082


class ImageRecord(BaseModel):
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
        return ImageRecord.model_validate_json((directory / IMAGE_JSON).read_text())
