"""The handler in-process, driven the way TorchServe drives it (a Context per batch)."""

import json
import zipfile

import pytest
import torch
import yaml

from torchship.handlers.encoder import bucket_for, length_sorted_chunks
from torchship.handlers.requests import BadRequest, Limits, parse_request
from torchship.handlers.service import TextHandler

LIMITS = Limits(max_texts=3, max_body_bytes=2048)
JSON_HEADERS = {"body": {"content-type": "application/json"}}


class FakeContext:
    """The parts of ts.context.Context the handler uses, recording per-request statuses."""

    def __init__(self, model_dir, config, n):
        self.system_properties = {"model_dir": str(model_dir)}
        self.model_yaml_config = config
        self.status = {}
        self.content_type = {}
        self.headers = [JSON_HEADERS] * n

    def set_response_status(self, code, phrase, idx):
        self.status[idx] = (code, phrase)

    def set_response_content_type(self, idx, value):
        self.content_type[idx] = value

    def get_all_request_header(self, idx):
        return self.headers[idx]


@pytest.fixture(scope="module")
def extracted(tiny_package, tmp_path_factory):
    """The tiny .mar unpacked, as TorchServe does before loading it."""
    _, _, mar = tiny_package
    target = tmp_path_factory.mktemp("extracted")
    with zipfile.ZipFile(mar) as archive:
        archive.extractall(target)
    return target, yaml.safe_load((target / "model-config.yaml").read_text())


@pytest.fixture(scope="module")
def handler(extracted):
    model_dir, config = extracted
    h = TextHandler()
    h.initialize(FakeContext(model_dir, config, 0))
    return h


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """The tiny model's embeddings from sentence-transformers itself, an independent implementation."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    return lambda texts: model.encode(texts, convert_to_tensor=True)


def call(handler, extracted, bodies, headers=None):
    ctx = FakeContext(*extracted, len(bodies))
    if headers:
        ctx.headers = headers
    return [json.loads(r) for r in handler.handle([{"body": b} for b in bodies], ctx)], ctx


# --- request contract ------------------------------------------------------------------------------


def test_contract_shapes():
    assert parse_request({"text": "hi"}, {}, LIMITS).single
    many = parse_request({"texts": ["a", "b"]}, {}, LIMITS)
    assert many.items == ["a", "b"] and not many.single
    assert parse_request("plain text", {}, LIMITS).items == ["plain text"]
    assert parse_request(b'{"text": "raw json"}', JSON_HEADERS, LIMITS).items == ["raw json"]
    assert parse_request("caf\u00e9".encode(), {"Content-Type": "text/plain"}, LIMITS).items == ["caf\u00e9"]


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (b'{"text": ', JSON_HEADERS, "malformed JSON"),
        (b"\xff\xfe\xfa", {}, "not valid UTF-8"),
        ({"text": 5}, {}, "must be a string"),
        ({"text": "   "}, {}, "empty or only whitespace"),
        ("\n\t ", {}, "empty or only whitespace"),
        ({"texts": []}, {}, "empty list"),
        ({"texts": "abc"}, {}, "must be a list"),
        ({"texts": ["a", 3]}, {}, '"texts"[1] must be a string'),
        ({"texts": ["a"] * 4}, {}, "over the limit of 3"),
        ({"text": "a", "texts": ["b"]}, {}, "exactly one of"),
        ({}, {}, "exactly one of"),
        ([1, 2], {}, "must be an object"),
        ({"text": "a", "top_k": 3}, {}, "unknown option(s) 'top_k'"),
        ("x" * 3000, {}, "over the limit of 2048 bytes"),
        (None, {}, "empty request"),
    ],
)
def test_bad_requests_name_the_problem(body, headers, message):
    with pytest.raises(BadRequest) as info:
        parse_request(body, headers, LIMITS)
    assert message in info.value.message and info.value.status == 400


def test_options_are_type_checked():
    parsed = parse_request({"text": "a", "top_k": 2}, {}, LIMITS, {"top_k": int})
    assert parsed.options == {"top_k": 2}
    with pytest.raises(BadRequest, match="must be int"):
        parse_request({"text": "a", "top_k": True}, {}, LIMITS, {"top_k": int})


# --- batching --------------------------------------------------------------------------------------


def test_length_sorted_chunks_group_similar_lengths():
    chunks = length_sorted_chunks([5, 100, 7, 98, 6], max_batch=2)
    assert chunks == [[1, 3], [2, 4], [0]]


def test_token_budget_chunks_put_short_rows_in_fewer_calls():
    # 200 tokens a call: two rows of ~100, then all the short ones together.
    assert length_sorted_chunks([5, 100, 7, 98, 6], max_batch=2, max_tokens=200) == [[1, 3], [2, 4, 0]]
    # 1000 rows of 4 tokens = 4000 tokens, under the 8192-token budget: one call, rows in input order.
    assert length_sorted_chunks([4] * 1000, max_batch=32, max_tokens=32 * 256) == [list(range(1000))]
    # 3000 rows = 12000 tokens: 2048 rows fill the first call, the other 952 the second.
    assert length_sorted_chunks([4] * 3000, max_batch=32, max_tokens=32 * 256) == [
        list(range(2048)),
        list(range(2048, 3000)),
    ]


def test_bucket_for_picks_the_smallest_that_fits():
    assert bucket_for(1, [16, 64, 256]) == 16
    assert bucket_for(16, [16, 64, 256]) == 16
    assert bucket_for(17, [16, 64, 256]) == 64
    with pytest.raises(ValueError):
        bucket_for(300, [16, 64, 256])


def test_buckets_pad_each_sub_batch_to_the_smallest_bucket_that_fits(handler):
    from torchship.handlers.encoder import Encoder

    widths = []
    base = handler.task.encoder
    encoder = Encoder(
        lambda features: (widths.append(features["input_ids"].shape[1]), base.forward(features))[1],
        base.tokenizer,
        base.inputs,
        max_length=64,
        max_batch=4,
        buckets=[8, 32, 64],
    )
    tokenized = encoder.tokenize(["ok"] * 4 + ["the cat sat on the mat and the dog ran fast"] * 4)
    encoder.run(tokenized.rows(range(8)), handler.task.reduce)
    assert sorted(widths) == [8, 32]


def test_dynamic_padding_pads_each_sub_batch_to_its_longest(handler):
    widths = []
    encoder = handler.task.encoder
    forward = encoder.forward
    encoder.forward = lambda features: (widths.append(features["input_ids"].shape[1]), forward(features))[1]

    def rows(texts):
        return encoder.tokenize(texts).rows(range(len(texts)))

    try:
        long = ["the cat sat on the mat and the dog ran fast"] * 4
        encoder.run(rows(["ok"] * 4 + long), handler.task.reduce)
        # 4 x 64 tokens a call: 19 rows at 13 tokens; 20 long + 40 short split into 19 long, then the
        # last long one with 18 short, then the other 22 short, each call padded to its own longest row.
        encoder.run(rows(long * 5 + ["ok"] * 40), handler.task.reduce)
    finally:
        encoder.forward = forward
    assert widths == [13, 13, 13, 3]


# --- the handler -----------------------------------------------------------------------------------


def test_matches_sentence_transformers(handler, extracted, reference):
    texts = ["the cat sat on the mat .", "hello world", "ok", "john lives in paris and works for google ."]
    expected = reference(texts)
    [got], ctx = call(handler, extracted, [{"texts": texts}])
    assert ctx.status == {}
    assert torch.allclose(torch.tensor(got), expected, atol=1e-5)
    assert abs(torch.tensor(got[0]).norm().item() - 1) < 1e-5


def test_one_bad_request_does_not_fail_the_batch(handler, extracted, reference):
    bodies = [{"text": "hello world"}, b"{not json", {"texts": []}, "ok", {"text": "hello world", "x": 1}]
    responses, ctx = call(handler, extracted, bodies, headers=[JSON_HEADERS, JSON_HEADERS, {}, {}, {}])
    assert set(ctx.status) == {1, 2, 4}
    assert all(code == 400 for code, _ in ctx.status.values())
    # The good ones get exactly the answer they would get alone (here: from sentence-transformers).
    expected = reference(["hello world", "ok"])
    assert torch.allclose(torch.tensor([responses[0], responses[3]]), expected, atol=1e-5)
    assert responses[1]["code"] == 400 and "malformed JSON" in responses[1]["message"]
    assert "empty list" in responses[2]["message"]
    assert json.dumps(responses)  # every response is JSON-serializable


def test_text_over_max_length_is_rejected_when_truncation_is_off(extracted, reference):
    model_dir, config = extracted
    strict = TextHandler()
    strict.initialize(FakeContext(model_dir, {"handler": {**config["handler"], "truncation": False}}, 0))
    long_text = " ".join(["cat"] * 100)
    responses, ctx = call(strict, extracted, [{"text": long_text}, {"text": "ok"}])
    assert ctx.status[0][0] == 400 and "over this model's max_length of 64" in responses[0]["message"]
    assert 1 not in ctx.status
    assert torch.allclose(torch.tensor(responses[1]), reference(["ok"])[0], atol=1e-5)


def test_truncation_on_cuts_long_texts_to_max_length(handler, extracted, reference):
    long_text = " ".join(["cat"] * 100)
    [got], ctx = call(handler, extracted, [{"text": long_text}])
    assert ctx.status == {}
    # max_length 64 = [CLS] + the first 62 words ("cat" is one token) + [SEP]: exactly the answer for
    # those 62 words, and not the one for 61 (the cut is at the limit, not before it).
    assert handler.task.encoder.tokenizer.tokenize("cat") == ["cat"]
    kept, one_less = reference([" ".join(["cat"] * 62), " ".join(["cat"] * 61)])
    assert torch.allclose(torch.tensor(got), kept, atol=1e-5)
    assert not torch.allclose(torch.tensor(got), one_less, atol=1e-6)


def test_model_failure_is_a_500_per_request_not_a_dead_worker(handler, extracted, monkeypatch):
    def boom(features):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(handler.task.encoder, "forward", boom)
    responses, ctx = call(handler, extracted, [{"text": "a"}, {"text": ""}])
    assert ctx.status[0][0] == 500 and ctx.status[1][0] == 400
    assert "kaboom" not in json.dumps(responses)  # internals stay in the worker log
