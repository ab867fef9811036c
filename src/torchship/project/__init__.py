"""Repository settings (`torchship.toml`) and environments, laid over every model spec."""

from torchship.project.loading import find_project_file, load_project, parse_project
from torchship.project.model import (
    PROJECT_FILE,
    Environment,
    ProjectError,
    ProjectSettings,
)
from torchship.project.overlay import MAPPINGS, chosen_environment, effective_spec, load_effective_spec

__all__ = [
    "MAPPINGS",
    "PROJECT_FILE",
    "Environment",
    "ProjectError",
    "ProjectSettings",
    "chosen_environment",
    "effective_spec",
    "find_project_file",
    "load_effective_spec",
    "load_project",
    "parse_project",
]
