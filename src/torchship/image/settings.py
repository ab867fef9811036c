"""The image command's environment (TORCHSHIP_ prefix, like torchship's Settings; `.env` too)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from torchship.settings import ENV_FILE_VARIABLE


class ImageSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TORCHSHIP_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    def __init__(self, **values: Any) -> None:
        # The same dotenv file as Settings (TORCHSHIP_ENV_FILE), not always the cwd's `.env`.
        values.setdefault("_env_file", os.environ.get(ENV_FILE_VARIABLE, self.model_config.get("env_file")))
        super().__init__(**values)

    builder: str | None = Field(
        None, description="docker | podman | buildah; default: the first one found on PATH in that order"
    )
    wheelhouse: Path | None = Field(
        None,
        description="a directory holding the wheels of the serve lock (torchship/locks/serve.txt); default: downloaded once "
        "into ~/.cache/torchship/wheelhouse/<hash of serve.txt>",
    )
    image_ready_timeout_s: float = Field(
        240.0, gt=0, description="how long the built image may take to report its model READY"
    )
    registry_tls_verify: bool = Field(
        True, description="false only for a plain-HTTP registry on loopback (tests, local rehearsals)"
    )
    git_commit: str | None = Field(
        None,
        description="the commit for the image's label; default: CODEBUILD_RESOLVED_SOURCE_VERSION or git",
    )
