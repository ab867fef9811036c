"""Shared fixtures: tiny models built from configs, isolated outputs, one real TorchServe per session."""

from __future__ import annotations

import json
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


def packaged(spec_path: Path, outputs: Path, until: str = "package") -> tuple[ModelSpec, Settings, Path]:
    """The spec through the stages up to `until` (all of them must succeed); its .mar."""
    spec, settings = load_spec(spec_path), Settings(outputs_dir=outputs)
    outcomes = run_stages(spec, settings, until=until)
    assert outcomes[-1].status != "failed", outcomes[-1].error
    return spec, settings, mar_path(settings.stage_root(spec.name, spec.version) / "package", spec)


def verified_pair_task(root: Path, model_dir: Path, name: str, task: str, bodies: list, extra: str = ""):
    """A pair-task model through fetch -> verify, with `bodies` as its examples: verify has then served
    them from a real TorchServe and found them equal to the source model's answers in-process."""
    spec_path = write_spec(root / "spec", str(model_dir), name=name, task=task, extra=extra)
    (spec_path.parent / "examples.jsonl").write_text("".join(json.dumps(body) + "\n" for body in bodies))
    return packaged(spec_path, root / "outputs", until="verify")


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


# The pair tasks' examples (verify serves them); the QA spec's windows are 64 tokens sharing 16, so
# QA_LONG_CONTEXT needs several windows and QA_TOO_LONG_CONTEXT more than max_windows_per_context.
RERANK_EXAMPLES = [
    {"query": "where does the cat sit ?", "texts": ["the cat sat on the mat .", "hello world", "a good dog"]},
    {"query": "who works for google ?", "texts": ["mary lives in london", "john works for google ."]},
]
QA_SPEC = "question_answering: {max_answer_tokens: 6, doc_stride: 16, max_windows_per_context: 8}\n"
QA_CONTEXT = "john lives in paris and works for google . the cat sat on the mat ."
QA_LONG_CONTEXT = " ".join(
    f"{name} lives in {city} and the {pet} sat on the {rug} ."
    for name, city, pet, rug in [("john", "paris", "cat", "mat"), ("mary", "london", "dog", "rug")] * 4
)
QA_TOO_LONG_CONTEXT = "the cat sat on the mat . " * 60
QA_EXAMPLES = [
    {"question": "where does john live ?", "context": QA_CONTEXT},
    {"question": "who sat on the rug ?", "context": QA_LONG_CONTEXT},
]


@pytest.fixture(scope="session")
def rerank_package(tmp_path_factory):
    """A BERT cross-encoder whose token types move its scores, verified with reranking requests."""
    from tiny_models import save_tiny_cross_encoder

    root = tmp_path_factory.mktemp("rerank-package")
    model_dir = save_tiny_cross_encoder(root / "model")
    return verified_pair_task(root, model_dir, "tiny-rerank", "reranking", RERANK_EXAMPLES)


def _qa_package(tmp_path_factory, arch: str):
    from tiny_models import save_tiny_qa

    root = tmp_path_factory.mktemp(f"qa-{arch}-package")
    model_dir = save_tiny_qa(root / "model", arch)
    return verified_pair_task(root, model_dir, f"tiny-qa-{arch}", "question-answering", QA_EXAMPLES, QA_SPEC)


@pytest.fixture(scope="session")
def qa_roberta_package(tmp_path_factory):
    return _qa_package(tmp_path_factory, "roberta")


@pytest.fixture(scope="session")
def qa_electra_package(tmp_path_factory):
    return _qa_package(tmp_path_factory, "electra")


@pytest.fixture(scope="session")
def torchserve(
    tiny_package,
    minilm_package,
    keywords_package,
    sentiment_package,
    ner_package,
    rerank_package,
    qa_roberta_package,
    qa_electra_package,
):
    """One real TorchServe for the test session, serving a model of every task (the demo models too)."""
    from torchship.serving.torchserve import TorchServe

    packages = (
        tiny_package,
        minilm_package,
        keywords_package,
        sentiment_package,
        ner_package,
        rerank_package,
        qa_roberta_package,
        qa_electra_package,
    )
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
