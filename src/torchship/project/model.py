"""What a repository shares across its models: `torchship.toml` (or `[tool.torchship]` in pyproject.toml).

The file holds the values every model of the repository has in common (where versions are published, the
registry, the image repository) and, per environment (staging, production, ...), the values that differ
between them (publish URI, image repository, namespace, replica bounds). Unknown keys are errors, as in the
model spec: a misspelt key must not silently deploy production with staging's settings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from torchship.errors import TorchshipError
from torchship.spec import NAME_PATTERN

PROJECT_FILE = "torchship.toml"
PYPROJECT_FILE = "pyproject.toml"
PYPROJECT_TABLE = "tool.torchship"

# A registry/repository without tag or digest (the distribution reference grammar): the tag is added
# when an image is pushed or rendered (the model version, or the pushed digest).
_DOMAIN = (
    r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
)
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_PATTERN = rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$"


class ProjectError(TorchshipError):
    """torchship.toml (or pyproject.toml's [tool.torchship]) cannot be read, or names no such environment."""

    exit_code = 2


Namespace = Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
EnvironmentName = Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
Registry = Literal["s3", "neptune", "none"]


def _s3_uri(value: str) -> str:
    if not value.startswith("s3://") or value == "s3://":
        raise ValueError(f"must be s3://BUCKET[/PREFIX], got {value!r}")
    return value


def _repository(value: str) -> str:
    if "@" in value or value.rfind(":") > value.rfind("/"):
        raise ValueError(
            f"must be a repository without a tag or digest (torchship adds the model version or the pushed "
            f"digest), e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/models, got {value!r}"
        )
    if not re.fullmatch(REPOSITORY_PATTERN, value):
        raise ValueError(
            f"must be an image repository like REGISTRY/PATH (lowercase path, no scheme), got {value!r}"
        )
    return value


S3Uri = Annotated[str, AfterValidator(_s3_uri)]
ImageRepository = Annotated[str, Field(min_length=1), AfterValidator(_repository)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Environment(_Strict):
    """One deployment target. Every key is optional: what it leaves out comes from the spec or the top level."""

    publish_uri: S3Uri | None = None
    registry: Registry | None = None
    image_repository: ImageRepository | None = None
    namespace: Namespace | None = None
    # The Deployment's minimum (the HorizontalPodAutoscaler's minReplicas) and the autoscaler's ceiling.
    replicas: Annotated[int, Field(ge=1, le=100)] | None = None
    max_replicas: Annotated[int, Field(ge=1, le=1000)] | None = None

    @model_validator(mode="after")
    def _ceiling_above_floor(self) -> Environment:
        if self.replicas is not None and self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas {self.max_replicas} is below replicas {self.replicas}")
        return self


class ProjectSettings(_Strict):
    """The repository's settings file; `file` is where they were read (None: there is no such file)."""

    publish_uri: S3Uri | None = None
    registry: Registry | None = None
    image_repository: ImageRepository | None = None
    environments: dict[EnvironmentName, Environment] = {}

    file: Path | None = Field(default=None, exclude=True)

    @property
    def where(self) -> str:
        """The file as errors name it: pyproject.toml's table says so."""
        if self.file is None:
            return "(no settings file)"
        return f"{self.file} [{PYPROJECT_TABLE}]" if self.file.name == PYPROJECT_FILE else str(self.file)

    def environment(self, name: str) -> Environment:
        """The named environment; an unknown name is an error listing the defined ones."""
        if name in self.environments:
            return self.environments[name]
        defined = ", ".join(sorted(self.environments)) or "none"
        raise ProjectError(
            f"{self.where}: no environment {name!r}; defined environments: {defined}",
            hint=f"Use one of them with --env (or TORCHSHIP_ENV), or add [environments.{name}] to {self.where}.",
        )
