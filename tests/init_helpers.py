"""A user repository as `torchship init` scaffolds it, for the tests of its generated files."""

from __future__ import annotations

from pathlib import Path

from tiny_models import save_tiny_classifier
from torchship.scaffold.repository import InitRequest, init_repository

# Torchship's own checkout: its buildspec.yml and infra/pipeline.yaml are renderings of the same templates.
REPO = Path(__file__).resolve().parent.parent


def scaffold_user_repo(root: Path) -> Path:
    """A fresh repository with a tiny sentiment classifier in checkpoints/, after `torchship init`."""
    repo = root / "user-repo"
    checkpoint = save_tiny_classifier(repo / "checkpoints" / "sentiment")
    init_repository(InitRequest(repo, checkpoint))
    return repo
