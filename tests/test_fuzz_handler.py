"""Property-based fuzz of the request parser and of the handler of every task, in-process with the tiny
(and demo keywords) packages: whatever arrives, each request gets a result or its own 4xx, never an
exception, and a good request sharing the batch still gets its own answer."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_classification import extracted_handler
from test_handler import FakeContext
from torchship.handlers.requests import BadRequest, Limits, ParsedRequest, parse_request

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,  # nothing written into the repository; failures print their example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SENTENCES = ["the cat sat on the mat", "john lives in paris", "a great movie , i love it", "hello world"]
# Lone surrogates arrive through JSON escapes ("\ud800"); hypothesis' text() leaves them out by default.
SURROGATE_TEXT = st.builds(
    lambda head, code, tail: f"{head}{chr(code)}{tail}",
    st.text(max_size=10),
    st.integers(0xD800, 0xDFFF),
    st.text(max_size=10),
)
TEXT = st.one_of(st.text(max_size=80), SURROGATE_TEXT, st.sampled_from(SENTENCES))
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
CONTENT_TYPES = st.sampled_from(["application/json", "text/plain", "application/octet-stream", ""])


def delivered(raw: bytes, content_type: str):
    """What TorchServe 0.12's Python backend hands the handler for these bytes (otf_message_handler)."""
    if content_type == "application/json":
        try:
            return json.loads(raw.decode("utf-8"))
        except Exception:  # it forwards the bytes when its own decoding fails, RecursionError included
            return raw
    if content_type.startswith("text"):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
    return raw


def request_bodies(option_names):
    options = st.dictionaries(
        st.sampled_from([*option_names, "bogus"]) if option_names else st.just("bogus"),
        JSON_VALUE,
        max_size=3,
    )
    shaped = st.one_of(
        st.builds(lambda t, o: {"text": t, **o}, TEXT, options),
        st.builds(lambda ts, o: {"texts": ts, **o}, st.lists(TEXT, max_size=12), options),
    )
    as_json = st.builds(lambda v: json.dumps(v).encode(), st.one_of(shaped, JSON_VALUE))
    nested = st.integers(1, 60_000).map(lambda depth: b'{"texts": ' + b"[" * depth + b"]" * depth + b"}")
    raw = st.one_of(
        as_json, nested, st.binary(max_size=200), TEXT.map(lambda t: t.encode("utf-8", "surrogatepass"))
    )
    return st.one_of(
        st.tuples(shaped, st.just("application/json")),  # already decoded, as TorchServe usually delivers
        st.tuples(raw, CONTENT_TYPES).map(lambda pair: (delivered(*pair), pair[1])),
    )


@settings(max_examples=400, deadline=None, database=None)
@given(
    body=st.one_of(st.binary(max_size=300), TEXT, JSON_VALUE),
    content_type=CONTENT_TYPES,
    allowed=st.dictionaries(
        st.sampled_from(["top_k", "top_n", "use_mmr", "diversity"]), st.sampled_from([int, bool, float, str])
    ),
)
def test_parser_returns_a_request_or_a_4xx(body, content_type, allowed):
    try:
        parsed = parse_request(body, {"body": {"content-type": content_type}}, Limits(8, 4096), allowed)
    except BadRequest as exc:
        assert 400 <= exc.status < 500 and exc.message
    else:
        assert isinstance(parsed, ParsedRequest) and parsed.items
        assert all(isinstance(t, str) and t.strip() for t in parsed.items)
        for t in parsed.items:
            t.encode("utf-8")  # only well-formed Unicode reaches the tokenizer


PACKAGES = ["tiny_package", "sentiment_package", "ner_package", "tiny_keywords_package"]


@pytest.fixture(scope="module")
def tiny_keywords_package(tmp_path_factory, tiny_model_dir):
    """Keywords on the tiny model: the demo's MiniLM would make each example cost seconds."""
    from conftest import packaged
    from tiny_models import write_spec

    root = tmp_path_factory.mktemp("tiny-keywords")
    spec = write_spec(root / "spec", str(tiny_model_dir), name="tiny-keywords", task="keywords")
    return packaged(spec, root / "outputs")


@pytest.fixture(scope="module", params=PACKAGES)
def served(request, tmp_path_factory):
    """A handler initialized from the extracted .mar of one task, and its answer to a good request."""
    _, _, mar = request.getfixturevalue(request.param)
    target = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    handler, config = extracted_handler(mar, target)
    good = {"texts": SENTENCES[:2]}
    [answer] = handler.handle([{"body": good}], FakeContext(target, config, 1))
    return handler, (target, config), good, as_json(answer)


@FUZZ
@given(data=st.data())
def test_every_request_gets_a_result_or_its_own_4xx(served, data):
    handler, (model_dir, config), good, expected = served
    bodies = data.draw(st.lists(request_bodies(sorted(handler.task.options)), min_size=1, max_size=4))
    at = data.draw(st.integers(0, len(bodies)))
    bodies.insert(at, (good, "application/json"))
    ctx = FakeContext(model_dir, config, len(bodies))
    ctx.headers = [{"body": {"content-type": content_type}} for _, content_type in bodies]
    responses = handler.handle([{"body": body} for body, _ in bodies], ctx)
    assert len(responses) == len(bodies)
    for idx, raw in enumerate(responses):
        value = as_json(raw)
        if idx in ctx.status:
            code = ctx.status[idx][0]
            assert code in (400, 413), (bodies[idx], value)
            assert value["code"] == code and value["message"]
        else:
            assert isinstance(value, list), (bodies[idx], value)
    assert at not in ctx.status
    assert _same_structure(as_json(responses[at]), expected), "a good request's answer changed"


def as_json(response):
    """A response as the client decodes it (TorchServe sends bytes as they are, and json.dumps the rest)."""
    return json.loads(response if isinstance(response, bytes) else json.dumps(response))


def _same_structure(got, want) -> bool:
    """Equal up to float noise (scores and vectors), recursively."""
    if isinstance(want, float):
        return abs(got - want) <= 1e-5
    if isinstance(want, list):
        return len(got) == len(want) and all(_same_structure(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(want, dict):
        return got.keys() == want.keys() and all(_same_structure(got[k], want[k]) for k in want)
    return got == want
