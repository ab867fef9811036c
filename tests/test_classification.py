"""text-classification: the handler's answers equal transformers' pipeline(top_k=None) on the source."""

import json

import pytest

from conftest import packaged
from test_handler import FakeContext
from tiny_models import EXAMPLES, save_tiny_classifier, write_spec
from torchship.handlers.service import TextHandler

TEXTS = [*EXAMPLES, "this film was terrible , i hate it", "a  great   movie"]


@pytest.fixture(scope="module", params=["bert", "distilbert", "roberta"])
def classifier(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"cls-{request.param}")
    model_dir = save_tiny_classifier(root / "model", request.param)
    spec_path = write_spec(
        root / "spec", str(model_dir), name=f"tiny-{request.param}-sentiment", task="text-classification"
    )
    _, _, mar = packaged(spec_path, root / "outputs")
    return model_dir, mar


def extracted_handler(mar, tmp_path):
    """The .mar unpacked as TorchServe does, and its handler initialized from it."""
    import zipfile

    import yaml

    with zipfile.ZipFile(mar) as archive:
        archive.extractall(tmp_path)
    config = yaml.safe_load((tmp_path / "model-config.yaml").read_text())
    handler = TextHandler()
    handler.initialize(FakeContext(tmp_path, config, 0))
    return handler, config


def test_equals_the_transformers_pipeline(classifier, tmp_path):
    from transformers import pipeline

    model_dir, mar = classifier
    reference = pipeline("text-classification", model=str(model_dir), tokenizer=str(model_dir), top_k=None)
    expected = reference(TEXTS)
    handler, config = extracted_handler(mar, tmp_path)
    ctx = FakeContext(tmp_path, config, 1)
    [got] = map(json.loads, handler.handle([{"body": {"texts": TEXTS}}], ctx))
    assert ctx.status == {}
    assert len(got) == len(TEXTS)
    for served, want in zip(got, expected, strict=True):
        assert [r["label"] for r in served] == [r["label"] for r in want]
        assert [r["score"] for r in served] == pytest.approx([r["score"] for r in want], abs=1e-5)
    # The models are not constant: different texts get different top labels or scores.
    assert len({round(r[0]["score"], 4) for r in got}) > 1


def test_top_k_option(classifier, tmp_path):
    _, mar = classifier
    handler, config = extracted_handler(mar, tmp_path)
    ctx = FakeContext(tmp_path, config, 3)
    top1, bad, wrong_type = map(
        json.loads,
        handler.handle(
            [
                {"body": {"text": "hello world", "top_k": 1}},
                {"body": {"text": "hello", "top_k": 9}},
                {"body": {"text": "hello", "top_k": "2"}},
            ],
            ctx,
        ),
    )
    from transformers import pipeline

    model_dir, _ = classifier
    [best] = pipeline("text-classification", model=str(model_dir), top_k=1)(["hello world"])[0]
    assert len(top1) == 1 and top1[0]["label"] == best["label"]
    assert top1[0]["score"] == pytest.approx(best["score"], abs=1e-5)
    assert ctx.status[1][0] == 400 and "between 1 and 3" in bad["message"]
    assert ctx.status[2][0] == 400 and "must be int" in wrong_type["message"]
