"""Each task served by the real TorchServe equals its reference library on the source model."""

import json

import pytest

from test_torchserve import post

pytestmark = pytest.mark.torchserve

DOCS = [
    "TorchServe is a flexible tool for serving PyTorch models in production. It batches requests, "
    "scales workers and exposes REST endpoints.",
    "Fresh basil, ripe tomatoes and good olive oil make a simple summer pasta sauce.",
]


def _fetched(package):
    spec, settings, _ = package
    return spec, settings.stage_root(spec.name, spec.version) / "fetch" / "model"


def test_keywords_equal_keybert(torchserve, keywords_package):
    from keybert import KeyBERT
    from sentence_transformers import SentenceTransformer

    spec, model_dir = _fetched(keywords_package)
    keybert = KeyBERT(model=SentenceTransformer(str(model_dir), device="cpu"))
    settings = spec.keywords
    for options in ({}, {"use_mmr": True, "diversity": 0.7, "top_n": 3}):
        response = post(torchserve, spec.name, {"texts": DOCS, **options})
        assert response.status_code == 200, response.text
        for doc, served in zip(DOCS, response.json(), strict=True):
            expected = keybert.extract_keywords(
                doc,
                keyphrase_ngram_range=tuple(settings.ngram_range),
                stop_words="english",
                top_n=options.get("top_n", settings.top_n),
                use_mmr=options.get("use_mmr", settings.use_mmr),
                diversity=options.get("diversity", settings.diversity),
            )
            assert expected, "KeyBERT found no keywords: the comparison would be vacuous"
            assert [k["keyword"] for k in served] == [k for k, _ in expected], (options, doc)
            assert [k["score"] for k in served] == pytest.approx([s for _, s in expected], abs=2e-4)


def test_sentiment_equals_the_transformers_pipeline(torchserve, sentiment_package):
    from transformers import pipeline

    spec, model_dir = _fetched(sentiment_package)
    texts = ["a great movie , i love it !", "this film was terrible", "ok"]
    expected = pipeline("text-classification", model=str(model_dir), top_k=None)(texts)
    response = post(torchserve, spec.name, {"texts": texts})
    assert response.status_code == 200, response.text
    for served, want in zip(response.json(), expected, strict=True):
        assert [r["label"] for r in served] == [r["label"] for r in want]
        assert [r["score"] for r in served] == pytest.approx([r["score"] for r in want], abs=1e-5)
    assert len(post(torchserve, spec.name, {"text": "ok", "top_k": 1}).json()) == 1


@pytest.mark.filterwarnings("ignore:Tokenizer does not support real words:UserWarning")
def test_ner_equals_the_transformers_pipeline(torchserve, ner_package):
    from transformers import pipeline

    spec, model_dir = _fetched(ner_package)
    text = "John lives in Paris and works for Google."
    reference = pipeline("token-classification", model=str(model_dir))
    for strategy in ("simple", "average"):
        response = post(torchserve, spec.name, {"text": text, "aggregation_strategy": strategy})
        assert response.status_code == 200, response.text
        expected = reference(text, aggregation_strategy=strategy)
        assert expected, "no entities: the comparison would be vacuous"
        served = response.json()
        assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in served] == [
            (e["entity_group"], e["word"], e["start"], e["end"]) for e in expected
        ]
        assert text[served[0]["start"] : served[0]["end"]].strip()


@pytest.mark.parametrize(
    ("package", "body", "message"),
    [
        ("keywords_package", {"text": "some text here", "top_n": 0}, "between 1 and 100"),
        ("keywords_package", {"text": "some text here", "diversity": 2}, "between 0 and 1"),
        ("sentiment_package", {"text": "ok", "top_k": "all"}, "must be int"),
        ("ner_package", {"text": "John", "aggregation_strategy": "longest"}, "must be one of"),
        ("ner_package", {"text": "John", "top_k": 1}, "unknown option"),
    ],
)
def test_bad_options_are_400_per_task(torchserve, request, package, body, message):
    spec = request.getfixturevalue(package)[0]
    response = post(torchserve, spec.name, body)
    assert response.status_code == 400, response.text
    assert message in json.loads(response.text)["message"]
