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
from torchship.settings import ENV_FILE_VARIABLE, Settings
from torchship.spec import ModelSpec, load_spec
from torchship.stages import STAGES

REPO = Path(__file__).resolve().parent.parent
DEMO_SPEC = REPO / "models" / "minilm-embeddings" / "model.yaml"
KEYWORDS_SPEC = REPO / "models" / "minilm-keywords" / "model.yaml"


# Variables from the developer's shell that would change what a test sees (outputs dir, S3 endpoint,
# credentials, experiment tracking); each test starts without them and sets the ones it needs itself.
ISOLATED_PREFIXES = ("TORCHSHIP_", "AWS_", "NEPTUNE_")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path_factory):
    """No developer `.env` and no TORCHSHIP_*/AWS_*/NEPTUNE_* variable reaches a test.

    The cwd stays the repo (tests use relative repo paths); the dotenv files are pointed at a file that
    does not exist instead, through the TORCHSHIP_ENV_FILE knob that Settings and ImageSettings both read
    (so CLI subprocesses inherit it too; test_isolation checks both). ImageSettings' model_config is
    pointed there as well, so an in-process test stays isolated even if that class stops reading the knob.
    """
    for name in [n for n in os.environ if n.startswith(ISOLATED_PREFIXES)]:
        monkeypatch.delenv(name)
    missing = tmp_path_factory.getbasetemp() / "no-such.env"
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(missing))
    from torchship.image.settings import ImageSettings

    monkeypatch.setitem(ImageSettings.model_config, "env_file", str(missing))


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
def keywords_package(tmp_path_factory):
    return packaged(KEYWORDS_SPEC, tmp_path_factory.mktemp("keywords-package"))


@pytest.fixture(scope="session")
def sentiment_package(tmp_path_factory):
    from tiny_models import save_tiny_classifier

    root = tmp_path_factory.mktemp("sentiment-package")
    model_dir = save_tiny_classifier(root / "model", "bert")
    return packaged(
        write_spec(root / "spec", str(model_dir), name="tiny-sentiment", task="text-classification"),
        root / "outputs",
    )


@pytest.fixture(scope="session")
def ner_package(tmp_path_factory):
    from test_ner import BIO_LABELS, save_roberta

    root = tmp_path_factory.mktemp("ner-package")
    model_dir = save_roberta(root / "model", 0, BIO_LABELS)
    return packaged(
        write_spec(root / "spec", str(model_dir), name="tiny-ner", task="token-classification"),
        root / "outputs",
    )


@pytest.fixture(scope="session")
def torchserve(tiny_package, minilm_package, keywords_package, sentiment_package, ner_package):
    """One real TorchServe for the test session, serving a model of every task (the demo models too)."""
    from torchship.serving.torchserve import TorchServe

    packages = (tiny_package, minilm_package, keywords_package, sentiment_package, ner_package)
    server = TorchServe({spec.name: mar for spec, _, mar in packages}, tiny_package[1])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def wheel_env(tmp_path_factory):
    """torchship's wheel, built from this checkout once per session and installed into a fresh venv
    outside it (tests/wheel_env.py says how, and how to use it)."""
    from wheel_env import make_wheel_env

    return make_wheel_env(tmp_path_factory.mktemp("wheel-env"))
