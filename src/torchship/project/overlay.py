"""The effective spec every command sees: the model spec with the repository's settings and the chosen
environment laid over it.

Precedence, highest first: the chosen environment's value > the spec's own key > the repository's top-level
value > the spec's default. (TORCHSHIP_PUBLISH_URI still wins over all of them where a command publishes.)
Only the publish and deploy sections change, which no build stage reads: choosing an environment never
re-runs fetch..verify (pipeline.Stage.spec_keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from torchship.project.loading import load_project
from torchship.project.model import (
    PROJECT_FILE,
    PYPROJECT_FILE,
    PYPROJECT_TABLE,
    ProjectError,
    ProjectSettings,
)
from torchship.settings import Settings
from torchship.spec import DeploySpec, ModelSpec, PublishSpec, load_spec


@dataclass(frozen=True)
class Mapping:
    """A settings-file key and the spec key it stands for (section.field)."""

    key: str
    section: str
    field: str

    @property
    def spec_key(self) -> str:
        return f"{self.section}.{self.field}"


MAPPINGS = (
    Mapping("publish_uri", "publish", "uri"),
    Mapping("registry", "publish", "registry"),
    Mapping("image_repository", "deploy", "image"),
    Mapping("namespace", "deploy", "namespace"),
    Mapping("replicas", "deploy", "replicas"),
    Mapping("max_replicas", "deploy", "max_replicas"),
)
SECTIONS: dict[str, type[BaseModel]] = {"publish": PublishSpec, "deploy": DeploySpec}


def chosen_environment(flag: str | None, settings: Settings) -> str | None:
    """--env, else TORCHSHIP_ENV; an empty value (a CI variable left blank) chooses no environment."""
    value = flag if flag is not None else settings.env
    return (value.strip() or None) if value is not None else None


def _no_settings_file(name: str, spec: ModelSpec) -> ProjectError:
    return ProjectError(
        f"environment {name!r} was asked for, but no {PROJECT_FILE} (or {PYPROJECT_FILE} with "
        f"[{PYPROJECT_TABLE}]) defines environments: none in {spec.spec_dir} or any directory above it",
        hint=f"Create {PROJECT_FILE} at the repository root with an [environments.{name}] table (README: "
        "'Repository settings and environments'), or drop --env / TORCHSHIP_ENV.",
    )


def effective_spec(spec: ModelSpec, project: ProjectSettings, env: str | None) -> ModelSpec:
    """`spec` with `project`'s values and environment `env`'s laid over it (see the module doc)."""
    env = (env.strip() or None) if env is not None else None
    if env is not None and project.file is None:
        raise _no_settings_file(env, spec)
    environment = project.environment(env) if env is not None else None
    updates: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    origins: dict[str, str] = {}
    for m in MAPPINGS:
        own = m.field in getattr(spec, m.section).model_fields_set
        chosen = getattr(environment, m.key, None) if environment is not None else None
        shared = getattr(project, m.key, None)
        if chosen is not None:
            updates[m.section][m.field] = chosen
            origins[m.spec_key] = f"{project.where} environments.{env}.{m.key}"
        elif own:
            origins[m.spec_key] = f"{spec.spec_path} {m.spec_key}"
        elif shared is not None:
            updates[m.section][m.field] = shared
            origins[m.spec_key] = f"{project.where} {m.key}"
    sections = {}
    for section, model in SECTIONS.items():
        current = getattr(spec, section)
        if not updates[section]:
            continue
        try:
            sections[section] = model.model_validate({**current.model_dump(), **updates[section]})
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
            where = "; ".join(
                f"{key} from {origin}"
                for key, origin in sorted(origins.items())
                if key.startswith(f"{section}.")
            )
            raise ProjectError(
                f"{spec.spec_path} with {project.where}"
                + (f" (environment {env!r})" if env else "")
                + f": the combined {section} section is invalid: {problem} ({where})",
                hint="Make the spec's deploy/publish keys and the settings file's agree "
                "(an environment's value wins over the spec's, the spec's over the file's top level).",
            ) from None
    return spec.model_copy(update=sections) if sections else spec


def load_effective_spec(path: str | Path, env: str | None = None) -> ModelSpec:
    """Read the spec file, then lay the settings file found above it and the environment `env` over it."""
    spec = load_spec(path)
    return effective_spec(spec, load_project(spec.spec_dir), env)
