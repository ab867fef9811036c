"""token-classification through the whole pipeline: spec -> compile -> validate -> .mar -> handler,
equal to transformers' token-classification pipeline on the source model."""

import json

import pytest

from conftest import packaged
from test_classification import extracted_handler
from test_handler import FakeContext
from test_ner import BIO_LABELS, save_bert, save_roberta
from tiny_models import write_spec

TEXTS = ["John lives in Paris and works for Google.", "  johnson visited Parisian cafés , twice!  ", "x y"]


@pytest.fixture(scope="module", params=["bert", "roberta"])
def ner(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"ner-{request.param}")
    save = {"bert": save_bert, "roberta": save_roberta}[request.param]
    model_dir = save(root / "model", 0, BIO_LABELS)
    spec_path = write_spec(
        root / "spec", str(model_dir), name=f"tiny-{request.param}-ner", task="token-classification"
    )
    _, _, mar = packaged(spec_path, root / "outputs")
    return model_dir, mar


@pytest.mark.filterwarnings("ignore:Tokenizer does not support real words:UserWarning")
def test_equals_the_pipeline_for_the_spec_strategy_and_a_per_request_one(ner, tmp_path):
    from transformers import pipeline

    model_dir, mar = ner
    reference = pipeline("token-classification", model=str(model_dir), tokenizer=str(model_dir))
    handler, config = extracted_handler(mar, tmp_path)
    assert config["handler"]["settings"]["aggregation_strategy"] == "simple"
    ctx = FakeContext(tmp_path, config, 2)
    simple, first = map(
        json.loads,
        handler.handle(
            [{"body": {"texts": TEXTS}}, {"body": {"texts": TEXTS, "aggregation_strategy": "first"}}], ctx
        ),
    )
    assert ctx.status == {}
    found = 0
    for strategy, results in (("simple", simple), ("first", first)):
        for text, got in zip(TEXTS, results, strict=True):
            want = reference(text, aggregation_strategy=strategy)
            assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in got] == [
                (e["entity_group"], e["word"], e["start"], e["end"]) for e in want
            ], (strategy, text)
            assert [e["score"] for e in got] == pytest.approx([float(e["score"]) for e in want], abs=1e-5)
            found += len(got)
    assert found > 0, "the tiny model found no entities: the comparison would be vacuous"


def test_bad_aggregation_strategy_is_a_400(ner, tmp_path):
    _, mar = ner
    handler, config = extracted_handler(mar, tmp_path)
    ctx = FakeContext(tmp_path, config, 2)
    bad, good = map(
        json.loads,
        handler.handle(
            [{"body": {"text": "John", "aggregation_strategy": "longest"}}, {"body": {"text": "John"}}], ctx
        ),
    )
    assert ctx.status == {0: (400, "Bad Request")} and "must be one of" in bad["message"]
    # The good request in the same batch gets the pipeline's answer for "John".
    from transformers import pipeline

    model_dir, _ = ner
    want = pipeline("token-classification", model=str(model_dir), aggregation_strategy="simple")("John")
    assert [(e["entity_group"], e["start"], e["end"]) for e in good] == [
        (e["entity_group"], e["start"], e["end"]) for e in want
    ]
    assert [e["score"] for e in good] == pytest.approx([float(e["score"]) for e in want], abs=1e-5)
