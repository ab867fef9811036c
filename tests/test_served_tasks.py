"""Each task served by the real TorchServe equals its reference library on the source model (question
answering, which has none in transformers 5: torchship's reference and a brute-force span search)."""

import json

import pytest

from conftest import QA_CONTEXT, QA_LONG_CONTEXT
from test_torchserve import post
from torchship.reference import source_results

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


RERANK_QUERY = "where does john work ?"
RERANK_TEXTS = [
    "john works for google in london .",
    "the cat sat on the mat .",
    "mary lives in paris",
    "ok",
    # Over the 64-token window as a pair: truncated longest-first, as the CrossEncoder truncates it.
    " ".join(["john works for google and mary works for apple ."] * 8),
]


def test_reranking_equals_sentence_transformers_cross_encoder(torchserve, rerank_package):
    from sentence_transformers import CrossEncoder

    spec, model_dir = _fetched(rerank_package)
    model = CrossEncoder(str(model_dir), max_length=spec.compile.max_length, device="cpu")
    expected = model.predict([(RERANK_QUERY, text) for text in RERANK_TEXTS]).tolist()
    assert max(expected) - min(expected) > 1e-3, "the tiny model must rank, or order checks compare ties"
    best_first = sorted(range(len(RERANK_TEXTS)), key=lambda i: -expected[i])
    response = post(torchserve, spec.name, {"query": RERANK_QUERY, "texts": RERANK_TEXTS})
    assert response.status_code == 200, response.text
    served = response.json()
    assert [r["index"] for r in served] == best_first
    assert [r["score"] for r in served] == pytest.approx([expected[i] for i in best_first], abs=1e-5)

    top = post(
        torchserve,
        spec.name,
        {"query": RERANK_QUERY, "texts": RERANK_TEXTS, "top_n": 2, "return_texts": True},
    )
    assert top.status_code == 200, top.text
    assert [(r["index"], r["text"]) for r in top.json()] == [(i, RERANK_TEXTS[i]) for i in best_first[:2]]
    assert [r["score"] for r in top.json()] == pytest.approx([expected[i] for i in best_first[:2]], abs=1e-5)


QA_QUESTIONS = [
    {"question": "where does mary live ?", "context": "mary lives in london and john lives in paris ."},
    {"question": "what sat on the mat ?", "context": QA_LONG_CONTEXT},
    {"question": "who works for google ?", "context": QA_CONTEXT},
]


@pytest.mark.parametrize("package", ["qa_roberta_package", "qa_electra_package"])
def test_question_answering_equals_the_reference_and_a_brute_force_search(torchserve, request, package):
    from test_question_answering import brute_force_answer

    spec, model_dir = _fetched(request.getfixturevalue(package))
    reference = source_results(spec, model_dir, QA_QUESTIONS)
    singles = [post(torchserve, spec.name, body) for body in QA_QUESTIONS]
    listed = post(torchserve, spec.name, QA_QUESTIONS)
    assert listed.status_code == 200 and all(r.status_code == 200 for r in singles), listed.text
    assert len(listed.json()) == len(QA_QUESTIONS)
    section = spec.question_answering
    for body, single, in_list, expected in zip(QA_QUESTIONS, singles, listed.json(), reference, strict=True):
        score, start, end, windows = brute_force_answer(
            model_dir,
            body["question"],
            body["context"],
            max_length=spec.compile.max_length,
            stride=section.doc_stride,
            max_answer=section.max_answer_tokens,
        )
        if body["context"] is QA_LONG_CONTEXT:
            assert windows >= 3, "the long context must be split into several windows"
        for served in (single.json(), in_list):
            assert (served["start"], served["end"]) == (expected["start"], expected["end"]) == (start, end)
            assert served["answer"] == expected["answer"] == body["context"][start:end]
            assert served["score"] == pytest.approx(expected["score"], rel=1e-4)
            assert served["score"] == pytest.approx(score, rel=1e-4)
