"""Shared fixtures: tiny models built from configs, isolated outputs, one real TorchServe per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import save_tiny_bert, write_spec
from torchship.archiver.package import mar_path
from torchship.pipeline import Runner, SilentReporter
from torchship.settings import Settings
from torchship.spec import ModelSpec, load_spec
from torchship.stages import STAGES

REPO = Path(__file__).resolve().parent.parent
DEMO_SPEC = REPO / "models" / "minilm-embeddings" / "model.yaml"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "model")


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(outputs_dir=tmp_path / "outputs")


@pytest.fixture
def tiny_spec_path(tmp_path, tiny_model_dir) -> Path:
    return write_spec(tmp_path / "models" / "tiny", str(tiny_model_dir))


def run_stages(spec: ModelSpec, settings: Settings, until: str = "verify", force: bool = False):
    names = [s.name for s in STAGES]
    return Runner(spec, settings, STAGES, SilentReporter()).run(names[: names.index(until) + 1], force=force)


def packaged(spec_path: Path, outputs: Path) -> tuple[ModelSpec, Settings, Path]:
    spec, settings = load_spec(spec_path), Settings(outputs_dir=outputs)
    outcomes = run_stages(spec, settings, until="package")
    assert outcomes[-1].status != "failed", outcomes[-1].error
    return spec, settings, mar_path(settings.stage_root(spec.name, spec.version) / "package", spec)


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("tiny-package")
    return packaged(write_spec(root / "models" / "tiny", str(tiny_model_dir)), root / "outputs")


@pytest.fixture(scope="session")
def minilm_package(tmp_path_factory):
    return packaged(DEMO_SPEC, tmp_path_factory.mktemp("minilm-package"))


@pytest.fixture(scope="session")
def torchserve(tiny_package, minilm_package):
    """One real TorchServe for the test session, serving the tiny model and the demo model."""
    from torchship.serving.torchserve import TorchServe

    (tiny, settings, tiny_mar), (minilm, _, minilm_mar) = tiny_package, minilm_package
    server = TorchServe({tiny.name: tiny_mar, minilm.name: minilm_mar}, settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()
