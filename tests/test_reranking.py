"""reranking on the handler code in-process: equal to sentence-transformers' CrossEncoder, one request's
pairs batched with its neighbours', each bad request its own 4xx."""

import pytest
import torch

from model_calls import model_calls
from tiny_models import save_tiny_cross_encoder, write_spec
from torchship.handler_settings import in_process_settings
from torchship.handlers.requests import BadRequest
from torchship.handlers.service import answer_bodies, build_task
from torchship.modeling import fit_to_model_dir, load_source_model
from torchship.spec import load_spec

QUERY = "where does the cat sit ?"
TEXTS = ["the cat sat on the mat .", "hello world", "john lives in paris .", "a great movie , i love it !"]


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerank")
    model_dir = save_tiny_cross_encoder(root / "model")
    spec_path = write_spec(root / "spec", str(model_dir), name="tiny-rerank", task="reranking")
    return model_dir, spec_path


def make_task(model_dir, spec_path, extra=""):
    if extra:
        spec_path.write_text(spec_path.read_text() + extra)
    spec = fit_to_model_dir(load_spec(spec_path), model_dir)
    model = load_source_model(model_dir, "reranking", spec_path)
    return build_task(model_dir, in_process_settings(spec, model_dir), model=model.as_model()), model


@pytest.fixture(scope="module")
def task(cross_encoder):
    return make_task(*cross_encoder)[0]


def cross_encoder_scores(model_dir, query, texts, activation=True):
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(model_dir), max_length=64, device="cpu")
    if not activation:
        model.activation_fn = torch.nn.Identity()
    return model.predict([(query, t) for t in texts]).tolist()


def test_scores_equal_sentence_transformers_cross_encoder_best_first(task, cross_encoder):
    expected = cross_encoder_scores(cross_encoder[0], QUERY, TEXTS)
    assert max(expected) - min(expected) > 1e-4, "the tiny model must rank, or order checks compare ties"
    [ranked] = answer_bodies(task, [{"query": QUERY, "texts": TEXTS}])
    assert [r["index"] for r in ranked] == sorted(range(len(TEXTS)), key=lambda i: -expected[i])
    assert [r["score"] for r in ranked] == pytest.approx(sorted(expected, reverse=True), abs=1e-6)
    assert set(ranked[0]) == {"index", "score"}


def test_raw_scores_are_the_logits(cross_encoder, tmp_path):
    model_dir, spec_path = cross_encoder
    copy = tmp_path / "model.yaml"
    copy.write_text(spec_path.read_text())
    (tmp_path / "examples.jsonl").write_text((spec_path.parent / "examples.jsonl").read_text())
    raw_task, _ = make_task(model_dir, copy, "reranking: {score: raw}\n")
    [ranked] = answer_bodies(raw_task, [{"query": QUERY, "texts": TEXTS}])
    expected = cross_encoder_scores(model_dir, QUERY, TEXTS, activation=False)
    assert {r["index"]: r["score"] for r in ranked} == pytest.approx(dict(enumerate(expected)), abs=1e-5)
    assert any(score < 0 or score > 1 for score in expected), "raw logits must not look like probabilities"


def test_top_n_and_return_texts(task):
    [full, top] = answer_bodies(
        task,
        [
            {"query": QUERY, "texts": TEXTS},
            {"query": QUERY, "texts": TEXTS, "top_n": 2, "return_texts": True},
        ],
    )
    assert top == [{**entry, "text": TEXTS[entry["index"]]} for entry in full[:2]]


def test_token_types_change_the_scores(cross_encoder):
    """Without token types a BERT cross-encoder scores other pairs: the model contract must carry them."""
    model_dir, spec_path = cross_encoder
    task, model = make_task(model_dir, spec_path)
    assert "token_type_ids" in model.io.inputs
    tokenized = task.tokenize([(QUERY, t) for t in TEXTS])
    features = task.encoder.pad(tokenized.rows(range(len(TEXTS))))
    assert int(features["token_type_ids"].max()) == 1, "the texts' tokens must be segment 1"
    with torch.inference_mode():
        typed = model.named(features)["logits"]
        untyped = model.named({**features, "token_type_ids": torch.zeros_like(features["token_type_ids"])})[
            "logits"
        ]
    assert (typed - untyped).abs().max().item() > 1e-3


def test_the_pairs_of_several_requests_run_in_one_model_call(cross_encoder):
    model_dir, spec_path = cross_encoder
    task, _ = make_task(model_dir, spec_path)
    bodies = [{"query": QUERY, "texts": TEXTS[:2]}, {"query": "hello", "texts": TEXTS[2:3]}]
    with model_calls(task) as calls:
        answers = answer_bodies(task, bodies)
    assert calls == [3], "3 pairs from 2 requests, batch size 4: one call"
    alone = [answer_bodies(task, [body])[0] for body in bodies]
    for together, single in zip(answers, alone, strict=True):
        assert [r["index"] for r in together] == [r["index"] for r in single]
        assert [r["score"] for r in together] == pytest.approx([r["score"] for r in single], abs=1e-6)


BAD_REQUESTS = [
    ({"texts": ["a"]}, 400, "lacks 'query'"),
    ({"query": "q"}, 400, "lacks 'texts'"),
    ({"query": "q", "texts": []}, 400, "empty list"),
    ({"query": "q", "texts": ["a", 3]}, 400, '"texts"[1] must be a string'),
    ({"query": 7, "texts": ["a"]}, 400, '"query" must be a string'),
    ({"query": " ", "texts": ["a"]}, 400, '"query" is empty'),
    ({"query": "q", "texts": "a"}, 400, '"texts" must be a list'),
    ({"query": "q", "texts": ["a"] * 9}, 400, "over the limit of 8 per request"),
    ({"query": "q", "texts": ["a"], "top_n": 0}, 400, "'top_n' must be between 1 and 8"),
    ({"query": "q", "texts": ["a"], "top_k": 1}, 400, "unknown option(s) 'top_k'"),
    (["q", "a"], 400, "must be an object"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_REQUESTS)
def test_each_bad_request_is_its_own_4xx_and_its_neighbours_succeed(task, body, status, message):
    good = {"query": QUERY, "texts": TEXTS[:2]}
    before, bad, after = answer_bodies(task, [good, body, good])
    assert isinstance(bad, BadRequest) and bad.status == status and message in bad.message, bad
    assert before == after and [r["index"] for r in before] in ([0, 1], [1, 0])


def test_a_pair_over_max_length_is_a_4xx_naming_the_limit_when_truncation_is_off(cross_encoder, tmp_path):
    model_dir, spec_path = cross_encoder
    copy = tmp_path / "model.yaml"
    copy.write_text(spec_path.read_text().replace("serve: {", "serve: {truncation: false, "))
    (tmp_path / "examples.jsonl").write_text((spec_path.parent / "examples.jsonl").read_text())
    strict, _ = make_task(model_dir, copy)
    long_text = " ".join(["cat"] * 80)
    ok, over = answer_bodies(
        strict, [{"query": QUERY, "texts": ["mat"]}, {"query": QUERY, "texts": ["mat", long_text]}]
    )
    assert isinstance(ok, list)
    assert (
        isinstance(over, BadRequest)
        and "query/text pair has" in over.message
        and "max_length of 64" in over.message
    )


def test_agreement_allows_only_tied_texts_to_swap():
    from torchship.tasks import task_definition

    definition = task_definition("reranking")
    source = [{"index": 1, "score": 0.9}, {"index": 0, "score": 0.5}, {"index": 2, "score": 0.5}]
    tied_swap = [{"index": 1, "score": 0.9}, {"index": 2, "score": 0.5000001}, {"index": 0, "score": 0.5}]
    real_swap = [{"index": 0, "score": 0.9}, {"index": 1, "score": 0.5}, {"index": 2, "score": 0.5}]
    assert definition.agrees(source, source) and definition.agrees(tied_swap, source)
    assert not definition.agrees(real_swap, source)
    assert not definition.agrees(source[:2], source)
