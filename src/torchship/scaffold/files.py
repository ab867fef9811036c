"""The text of every file init writes, rendered from templates/scaffold/. The shared files depend on
nothing but torchship itself (its version and lock), so every init into a repository renders them the
same and a second model never changes them; torchship's own checkout renders the same templates
(own_checkout.py), installing torchship from the checkout instead of the pinned requirement."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torchship import __version__
from torchship.locks import lock_file
from torchship.rendering import render_template
from torchship.scaffold.checkpoint import Checkpoint
from torchship.tasks import task_definition
from torchship.tasks.checkpoints import has_generic_labels

# How CodeBuild installs torchship: the pinned requirement (a user repository) or `make venv` (torchship's
# own checkout, which is torchship).
Install = Literal["pinned", "checkout"]

BUILDSPEC = "buildspec.yml"
PIPELINE = "infra/pipeline.yaml"
SETTINGS = "torchship.toml"
GITIGNORE = ".gitignore"
REQUIREMENTS = "requirements/torchship.txt"
REQUIREMENTS_LOCK = "requirements/torchship-lock.txt"


@dataclass(frozen=True)
class Environment:
    """A pipeline stage: its name (torchship.toml's [environments.NAME]) and its CloudFormation prefix."""

    name: str

    @property
    def title(self) -> str:
        return self.name.capitalize()


# The order is the pipeline's: each environment after the first waits for a manual approval.
ENVIRONMENTS = (Environment("staging"), Environment("production"))


@dataclass(frozen=True)
class FileText:
    """One file init would write: its path relative to the repository root, and its content."""

    path: str
    text: str
    # Shared by every model (buildspec, pipeline, settings, requirements, .gitignore), or one model's own.
    shared: bool


def _template(template: str, **context: Any) -> str:
    return render_template(f"scaffold/{template}", **context)


def render_buildspec(install: Install) -> str:
    return _template("buildspec.yml.j2", install=install)


def render_pipeline() -> str:
    return _template("pipeline.yaml.j2", environments=ENVIRONMENTS)


def render_gitignore() -> str:
    return _template("gitignore.j2")


def shared_files() -> list[FileText]:
    """The repository's shared files, as this torchship writes them into a user repository."""
    lock = lock_file("prod").read_text(encoding="utf-8")
    return [
        FileText(SETTINGS, _template("torchship.toml.j2"), shared=True),
        FileText(BUILDSPEC, render_buildspec("pinned"), shared=True),
        FileText(PIPELINE, render_pipeline(), shared=True),
        FileText(REQUIREMENTS, _template("requirements-torchship.txt.j2", version=__version__), shared=True),
        FileText(
            REQUIREMENTS_LOCK,
            _template("requirements-lock.txt.j2", version=__version__, lock=lock.rstrip("\n")),
            shared=True,
        ),
        FileText(GITIGNORE, render_gitignore(), shared=True),
    ]


def _yaml_string(value: str) -> str:
    """A YAML scalar for any text: JSON strings are valid YAML double-quoted scalars."""
    return json.dumps(value, ensure_ascii=False)


def _comment_text(value: str) -> str:
    """User text (a label) on one comment line."""
    return " ".join(value.split()) or repr(value)


def model_files(repo: Path, name: str, task: str, checkpoint: Checkpoint) -> list[FileText]:
    """models/<name>/model.yaml and its examples.jsonl stub; `source` is relative to the spec file."""
    spec_dir = repo / "models" / name
    model = checkpoint.path.resolve()
    source = Path(os.path.relpath(model, spec_dir.resolve())).as_posix()
    outside = not model.is_relative_to(repo.resolve())
    # Placeholder names (LABEL_0: a cross-encoder's or a span head's) are not answers the model serves.
    named = not has_generic_labels(dict(enumerate(checkpoint.labels)))
    labels = [f"{index}: {_comment_text(label)}" for index, label in enumerate(checkpoint.labels) if named]
    spec = _template(
        "model.yaml.j2",
        model_name=name,
        task=task,
        source=_yaml_string(source),
        source_outside_repo=outside,
        checkpoint_description=checkpoint.describe(model.name),
        labels=labels,
        max_length=checkpoint.max_length,
        max_length_why=checkpoint.max_length_reason(),
    )
    bodies = task_definition(task).builtin_examples
    examples = _template("examples.jsonl.j2", lines=[json.dumps(body, ensure_ascii=False) for body in bodies])
    return [
        FileText(f"models/{name}/model.yaml", spec, shared=False),
        FileText(f"models/{name}/examples.jsonl", examples, shared=False),
    ]
