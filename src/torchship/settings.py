"""Settings: the environment torchship runs in (not the model). Environment first, then `.env`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from torchship.errors import TorchshipError

# The JVM heap (-Xmx) as the JVM reads it: a number and a unit, nothing else (it ends up in
# config.properties, where a line break would start a property of its own).
HEAP_PATTERN = r"^\d+[kKmMgG]$"
ENV_PREFIX = "TORCHSHIP_"
# Which dotenv file to read (default `.env` in the cwd). Tests point it at a missing file so a developer's
# `.env` cannot leak into them; a deployment can point it at a mounted file.
ENV_FILE_VARIABLE = "TORCHSHIP_ENV_FILE"


class SettingsError(TorchshipError):
    """An environment variable or `.env` line holds a value torchship cannot use."""

    exit_code = 2


class Settings(BaseSettings):
    """Every variable is `TORCHSHIP_<FIELD>`, e.g. TORCHSHIP_OUTPUTS_DIR=/data/outputs."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    outputs_dir: Path = Field(
        Path("outputs"), description="Where stages write outputs/<name>/<version>/<stage>/"
    )
    torchserve_start_timeout_s: float = Field(
        180.0, gt=0, description="How long verify/serve wait for TorchServe to load the model"
    )
    java_home: Path | None = Field(None, description="JDK for TorchServe; default: JAVA_HOME or java on PATH")
    torchserve_heap: Annotated[str, Field(pattern=HEAP_PATTERN)] = Field(
        "1g", description="TorchServe's JVM -Xmx (the frontend only proxies), e.g. 512m or 2g"
    )
    token_expiration_min: float = Field(
        1440.0,
        gt=0,
        le=525_600,
        description="Lifetime of TorchServe's inference and management tokens; `serve` issues and prints "
        "a new inference token when one expires",
    )

    env: str | None = Field(
        None,
        description="environment of torchship.toml to use, like --env (staging, production, ...); "
        "--env wins over it",
    )
    publish_uri: str | None = Field(
        None, description="s3://BUCKET/PREFIX to publish to (over the spec's publish.uri)"
    )
    aws_endpoint_url: str | None = Field(
        None,
        description="S3 endpoint (MinIO, a VPC endpoint, a local test server); AWS_ENDPOINT_URL works too",
    )
    aws_region: str | None = Field(
        None, description="AWS region; default: boto3's (AWS_REGION / AWS_DEFAULT_REGION)"
    )
    multipart_threshold_mb: int = Field(8, ge=5, description="files larger than this upload in parts")

    def __init__(self, **values: Any) -> None:
        # One line naming the variable instead of pydantic's multi-line report.
        values.setdefault("_env_file", os.environ.get(ENV_FILE_VARIABLE, ".env"))
        try:
            super().__init__(**values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "?"
            raise SettingsError(
                f"setting {ENV_PREFIX}{field.upper()} is invalid: {first['msg']} (got {first.get('input')!r})",
                hint=f"Fix {ENV_PREFIX}{field.upper()} in the environment or the .env file "
                "(the README's 'Settings' table lists each variable and its allowed values).",
            ) from None

    def stage_root(self, name: str, version: str) -> Path:
        return self.outputs_dir / name / version
