"""Hostile input in-process: each bad request gets its own 4xx, work is bounded before any model work,
and no request's answer can outgrow the limit TorchServe enforces (issue 8, handler side)."""

import json

import pytest
import torch

from test_handler import JSON_HEADERS, FakeContext
from torchship.handlers.requests import ParsedRequest
from torchship.handlers.service import TextHandler, build_task, predict
from torchship.modeling import load_source_model

GOOD = {"text": "the cat sat on the mat"}


@pytest.fixture(scope="module")
def extracted(tiny_package, tmp_path_factory):
    import zipfile

    import yaml

    _, _, mar = tiny_package
    target = tmp_path_factory.mktemp("hostile-extracted")
    with zipfile.ZipFile(mar) as archive:
        archive.extractall(target)
    return target, yaml.safe_load((target / "model-config.yaml").read_text())


def make_handler(extracted, **overrides):
    model_dir, config = extracted
    handler = TextHandler()
    handler.initialize(FakeContext(model_dir, {"handler": {**config["handler"], **overrides}}, 0))
    return handler


@pytest.fixture(scope="module")
def handler(extracted):
    return make_handler(extracted)


def call(handler, extracted, bodies, headers=None):
    """Responses decoded from the bytes TorchServe would send, and the context with their statuses."""
    ctx = FakeContext(*extracted, len(bodies))
    ctx.headers = headers or [JSON_HEADERS] * len(bodies)
    raw = handler.handle([{"body": b} for b in bodies], ctx)
    assert all(isinstance(r, bytes) for r in raw), "responses must be serialized by the handler"
    return [json.loads(r) for r in raw], ctx


def counting_forward(handler, monkeypatch):
    """Wrap the model so a test can tell how many rows went through it."""
    rows = []
    forward = handler.task.encoder.forward

    def counted(features):
        rows.append(features["input_ids"].shape[0])
        return forward(features)

    monkeypatch.setattr(handler.task.encoder, "forward", counted)
    return rows


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """Embeddings from sentence-transformers on the tiny package's source model: what a good request
    must get however hostile the rest of its batch is."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    return lambda texts: model.encode(texts, convert_to_tensor=True)


def assert_good(responses, ctx, reference, expected):
    """`expected`: position -> the text that request sent; its answer must be that text's embedding."""
    for i, text in expected.items():
        assert i not in ctx.status, (i, responses[i])
        assert torch.allclose(torch.tensor(responses[i]), reference([text])[0], atol=1e-5), (i, text)


# --- item 1: isolation ---------------------------------------------------------------------------


def test_lone_surrogate_is_its_own_400(handler, extracted, reference):
    bodies = [GOOD, {"text": "abc \ud800"}, {"texts": ["fine", "x \udfff y"]}, GOOD]
    responses, ctx = call(handler, extracted, bodies)
    assert {i: code for i, (code, _) in ctx.status.items()} == {1: 400, 2: 400}
    assert "is not valid UTF-8/Unicode" in responses[1]["message"]
    assert "U+D800" in responses[1]["message"] and '"texts"[1]' in responses[2]["message"]
    assert_good(responses, ctx, reference, {0: GOOD["text"], 3: GOOD["text"]})


def test_surrogate_in_raw_json_bytes_as_torchserve_forwards_them(handler, extracted, reference):
    # ensure_ascii JSON carries the surrogate as the escape \ud800: valid JSON, invalid Unicode.
    raw = json.dumps({"text": "abc \ud800"}).encode()
    responses, ctx = call(handler, extracted, [raw, GOOD])
    assert ctx.status[0][0] == 400 and "not valid UTF-8/Unicode" in responses[0]["message"]
    assert_good(responses, ctx, reference, {1: GOOD["text"]})


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_deeply_nested_json_is_its_own_400(handler, extracted, depth, reference):
    nested = b"[" * depth + b"]" * depth
    wrapped = b'{"text": ' + nested + b"}"
    responses, ctx = call(handler, extracted, [nested, GOOD, wrapped])
    assert ctx.status[0] == (400, "Bad Request") and ctx.status[2][0] == 400
    assert "nested too deeply" in responses[0]["message"]
    assert_good(responses, ctx, reference, {1: GOOD["text"]})


def test_nested_json_already_decoded_by_torchserve_is_its_own_400(handler, extracted, reference):
    value = []
    for _ in range(5_000):  # deeper than json.dumps can re-encode: the body-size check meets it first
        value = [value]
    responses, ctx = call(handler, extracted, [{"texts": value}, GOOD])
    assert ctx.status[0][0] == 400 and "nested too deeply" in responses[0]["message"]
    assert_good(responses, ctx, reference, {1: GOOD["text"]})


def test_a_parser_bug_costs_only_its_own_request(handler, extracted, monkeypatch, reference):
    import torchship.handlers.service as service

    real = service.parse_request

    def flaky(body, *args):
        if body == {"text": "trigger"}:
            raise KeyError("a bug")
        return real(body, *args)

    monkeypatch.setattr(service, "parse_request", flaky)
    responses, ctx = call(handler, extracted, [{"text": "trigger"}, GOOD])
    assert ctx.status[0][0] == 500 and "a bug" not in responses[0]["message"]
    assert_good(responses, ctx, reference, {1: GOOD["text"]})


def test_batch_tokenizer_failure_falls_back_to_each_request_alone(handler, extracted, monkeypatch, reference):
    tokenizer = handler.task.encoder.tokenizer
    real = type(tokenizer).__call__

    def choking(self, texts, *args, **kwargs):
        if any("poison" in t for t in texts):
            raise RuntimeError("tokenizer choked")
        return real(self, texts, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", choking)
    responses, ctx = call(handler, extracted, [GOOD, {"text": "a poison text"}, {"texts": ["ok", "fine"]}])
    assert set(ctx.status) == {1} and ctx.status[1][0] == 400
    assert "could not be tokenized" in responses[1]["message"]
    assert_good(responses, ctx, reference, {0: GOOD["text"]})
    assert torch.allclose(torch.tensor(responses[2]), reference(["ok", "fine"]), atol=1e-5)


def test_a_request_that_breaks_the_model_fails_alone(handler, extracted, monkeypatch, reference):
    forward = handler.task.encoder.forward
    poison = handler.task.encoder.tokenizer.convert_tokens_to_ids("paris")

    def breaks_on_paris(features):
        if (features["input_ids"] == poison).any():
            raise RuntimeError("kaboom")
        return forward(features)

    monkeypatch.setattr(handler.task.encoder, "forward", breaks_on_paris)
    responses, ctx = call(
        handler, extracted, [GOOD, {"text": "john lives in paris"}, {"text": "hello world"}]
    )
    assert set(ctx.status) == {1} and ctx.status[1][0] == 500
    assert "kaboom" not in responses[1]["message"]
    assert_good(responses, ctx, reference, {0: GOOD["text"], 2: "hello world"})


def test_non_finite_model_output_is_a_500_not_invalid_json(handler, extracted, monkeypatch):
    forward = handler.task.encoder.forward
    monkeypatch.setattr(
        handler.task.encoder,
        "forward",
        lambda features: {k: v * float("nan") for k, v in forward(features).items()},
    )
    responses, ctx = call(handler, extracted, [GOOD])
    assert ctx.status[0][0] == 500 and "not valid JSON" in responses[0]["message"]


# --- item 3: response size -----------------------------------------------------------------------


def test_responses_are_compact_json(handler, extracted, reference):
    ctx = FakeContext(*extracted, 1)
    [raw] = handler.handle([{"body": {"texts": ["hello world", "ok"]}}], ctx)
    assert b" " not in raw and b"\n" not in raw
    assert ctx.content_type[0] == "application/json"
    assert torch.allclose(torch.tensor(json.loads(raw)), reference(["hello world", "ok"]), atol=1e-5)


def test_a_response_over_max_response_bytes_is_its_own_413(extracted, reference):
    # 32 floats of ~20 bytes each per text: 8 texts are ~5 KB, one text ~0.7 KB.
    small = make_handler(extracted, max_response_bytes=2_000)
    responses, ctx = call(small, extracted, [{"texts": [f"text number {i}" for i in range(8)]}, GOOD])
    assert ctx.status == {0: (413, "Payload Too Large")}
    message = responses[0]["message"]
    assert "over this model's limit of 2000 bytes" in message and "serve.max_response_bytes" in message
    assert_good(responses, ctx, reference, {1: GOOD["text"]})


def test_package_writes_the_limits_into_the_handler_config(extracted):
    _, config = extracted
    handler = config["handler"]
    assert handler["max_response_bytes"] == 6_553_500
    assert handler["max_tokens_per_request"] == 4096


def test_keywords_package_carries_its_budgets(tiny_model_dir, tmp_path):
    from tiny_models import write_spec
    from torchship.archiver.package import handler_config
    from torchship.spec import load_spec

    extra = (
        "keywords: {max_candidates: 7, max_candidates_per_request: 9, max_candidate_tokens_per_request: 11}\n"
    )
    spec = load_spec(write_spec(tmp_path, str(tiny_model_dir), task="keywords", extra=extra))
    config = handler_config(spec, tiny_model_dir)["settings"]
    assert (config["max_candidates"], config["max_candidates_per_request"]) == (7, 9)
    assert config["max_candidate_tokens_per_request"] == 11


# --- item 2: bounded work ------------------------------------------------------------------------


def test_token_budget_is_a_413_before_any_model_work(extracted, monkeypatch):
    small = make_handler(extracted, max_tokens_per_request=20)
    rows = counting_forward(small, monkeypatch)
    over = {"texts": ["the cat sat on the mat and the dog ran fast"] * 3}  # 3 x 13 tokens
    responses, ctx = call(small, extracted, [over])
    assert ctx.status[0][0] == 413 and rows == []
    message = responses[0]["message"]
    assert "39 tokens" in message and "limit of 20" in message and "serve.max_tokens_per_request" in message
    responses, ctx = call(small, extracted, [over, {"text": "the cat sat on the mat"}])
    assert set(ctx.status) == {0} and rows == [1]


@pytest.fixture(scope="module")
def keywords_task(tiny_model_dir):
    config = {
        "task": "keywords",
        "max_length": 64,
        "settings": {
            "pooling": "mean",
            "normalize": True,
            "ngram_range": [1, 2],
            "stop_words": [],
            "max_candidates": 30,
            "max_candidates_per_request": 50,
        },
    }
    return build_task(
        tiny_model_dir, config, model=load_source_model(tiny_model_dir, "embeddings").as_model()
    )


def words(start, count):
    """`count` distinct words of the tiny vocabulary that CountVectorizer's pattern keeps."""
    from tiny_models import WORDS

    vocab = [w for w in WORDS if w.isalpha() and len(w) > 1]
    assert count <= len(vocab)
    return " ".join(vocab[(start + i) % len(vocab)] for i in range(count))


def test_keyword_budgets_are_413s_that_name_their_spec_keys(keywords_task, monkeypatch):
    calls = []
    forward = keywords_task.encoder.forward
    monkeypatch.setattr(
        keywords_task.encoder, "forward", lambda features: (calls.append(1), forward(features))[1]
    )
    # 10 distinct words -> 10 unigrams + 9 bigrams = 19 candidates per text.
    per_request = ParsedRequest([words(0, 10), words(10, 10), words(20, 10)], single=False)
    per_text = ParsedRequest([words(30, 20)], single=True)  # 39 candidates in one text
    within = ParsedRequest([words(0, 10), words(10, 10)], single=False)  # 38
    over_request, over_text, fine = predict(keywords_task, [per_request, per_text, within])
    assert over_request.status == 413 and "keywords.max_candidates_per_request" in over_request.message
    assert "more than 50 candidate phrases" in over_request.message
    assert over_text.status == 413 and "keywords.max_candidates)" in over_text.message
    assert len(fine) == 2 and all(fine)
    calls.clear()
    assert [r.status for r in predict(keywords_task, [per_request, per_text])] == [413, 413]
    assert calls == [], "an over-budget request must be refused before any model work"


def test_candidate_tokens_are_budgeted_before_any_model_work(keywords_task, monkeypatch):
    calls = []
    forward = keywords_task.encoder.forward
    monkeypatch.setattr(
        keywords_task.encoder, "forward", lambda features: (calls.append(1), forward(features))[1]
    )
    monkeypatch.setattr(keywords_task, "max_candidate_tokens", 40)
    # 10 words: 10 unigrams of 3 tokens ([CLS] word [SEP]) and 9 bigrams of 4 = 66 tokens.
    [over] = predict(keywords_task, [ParsedRequest([words(0, 10)], single=True)])
    assert over.status == 413 and "66 tokens" in over.message
    assert "keywords.max_candidate_tokens_per_request" in over.message and calls == []


def test_candidate_generation_stops_at_the_limit():
    from torchship.handlers.keywords import TooManyCandidates, candidates

    doc = " ".join(f"word{i}" for i in range(100_000))
    with pytest.raises(TooManyCandidates):
        candidates(doc, (1, 3), None, limit=10)
    assert len(candidates(doc[:200], (1, 1), None, limit=100)) < 100


def test_phrases_shared_by_requests_are_embedded_once(keywords_task, monkeypatch):
    rows = []
    forward = keywords_task.encoder.forward
    monkeypatch.setattr(
        keywords_task.encoder,
        "forward",
        lambda features: (rows.append(features["input_ids"].shape[0]), forward(features))[1],
    )
    text = words(0, 10)  # 19 candidates
    one, two = predict(keywords_task, [ParsedRequest([text], single=True)] * 2)
    assert one == two and one
    assert sum(rows) == 2 + 19  # the two documents, each distinct phrase once
