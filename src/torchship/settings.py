"""Settings: the environment torchship runs in (not the model). Environment first, then `.env`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every variable is `TORCHSHIP_<FIELD>`, e.g. TORCHSHIP_OUTPUTS_DIR=/data/outputs."""

    model_config = SettingsConfigDict(
        env_prefix="TORCHSHIP_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    outputs_dir: Path = Field(
        Path("outputs"), description="Where stages write outputs/<name>/<version>/<stage>/"
    )
    torchserve_start_timeout_s: float = Field(
        180.0, gt=0, description="How long verify/serve wait for TorchServe to load the model"
    )
    java_home: Path | None = Field(None, description="JDK for TorchServe; default: JAVA_HOME or java on PATH")
    torchserve_heap: str = Field("1g", description="TorchServe's JVM -Xmx (the frontend only proxies)")

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

    def stage_root(self, name: str, version: str) -> Path:
        return self.outputs_dir / name / version
