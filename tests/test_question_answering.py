"""question-answering on the handler code in-process, against an independent brute-force span search on
the Hugging Face model's own logits; long contexts in windows; each bad request its own 4xx."""

import pytest
import torch

from model_calls import model_calls
from tiny_models import save_tiny_qa, write_spec
from torchship.handler_settings import in_process_settings
from torchship.handlers.requests import BadRequest
from torchship.handlers.service import answer_bodies, build_task
from torchship.modeling import fit_to_model_dir, load_source_model
from torchship.spec import load_spec

CONTEXT = "john lives in paris and works for google . the cat sat on the mat ."
LONG_CONTEXT = " ".join(
    f"{name} lives in {city} and the {pet} sat on the mat ."
    for name, city, pet in [("john", "paris", "cat"), ("mary", "london", "dog")] * 8
)


@pytest.fixture(scope="module", params=["roberta", "electra"])
def qa(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"qa-{request.param}")
    model_dir = save_tiny_qa(root / "model", request.param)
    spec_path = write_spec(
        root / "spec",
        str(model_dir),
        name="tiny-qa",
        task="question-answering",
        extra="question_answering: {max_answer_tokens: 6, doc_stride: 8, max_windows_per_context: 12}\n",
    )
    spec = fit_to_model_dir(load_spec(spec_path), model_dir)
    source = load_source_model(model_dir, spec.task, spec_path)
    task = build_task(model_dir, in_process_settings(spec, model_dir), model=source.as_model())
    return model_dir, task


def brute_force_answer(model_dir, question, context, max_length=64, stride=8, max_answer=6):
    """Every window and every (start, end) pair scored with plain loops, on transformers' model."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir)).eval()
    enc = tokenizer(
        question,
        context,
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    best = None
    for w in range(len(enc["input_ids"])):
        inputs = {k: torch.tensor([enc[k][w]]) for k in tokenizer.model_input_names if k in enc}
        with torch.no_grad():
            out = model(**inputs)
        ctx = [k for k, s in enumerate(enc.sequence_ids(w)) if s == 1]
        start_p = torch.softmax(out.start_logits[0, ctx].double(), 0).tolist()
        end_p = torch.softmax(out.end_logits[0, ctx].double(), 0).tolist()
        for i in range(len(ctx)):
            for j in range(i, min(len(ctx), i + max_answer)):
                score = start_p[i] * end_p[j]
                if best is None or score > best[0] + 1e-12:
                    offsets = enc["offset_mapping"][w]
                    best = (score, offsets[ctx[i]][0], offsets[ctx[j]][1], len(enc["input_ids"]))
    return best


@pytest.mark.parametrize(
    ("question", "context"),
    [("where does john live ?", CONTEXT), ("who sat on the mat ?", LONG_CONTEXT)],
)
def test_answers_equal_a_brute_force_search_over_every_window(qa, question, context):
    model_dir, task = qa
    score, start, end, windows = brute_force_answer(model_dir, question, context)
    if context is LONG_CONTEXT:
        assert windows > 3, "the long context must be split into windows"
    [answer] = answer_bodies(task, [{"question": question, "context": context}])
    assert (answer["start"], answer["end"]) == (start, end)
    assert answer["answer"] == context[start:end] and answer["score"] == pytest.approx(score, rel=1e-6)


def test_a_list_of_questions_answers_each_and_runs_every_window_together(qa):
    _, task = qa
    bodies = [
        [
            {"question": "where does john live ?", "context": CONTEXT},
            {"question": "who ?", "context": LONG_CONTEXT},
        ],
        {"question": "what sat on the mat ?", "context": CONTEXT},
    ]
    with model_calls(task) as calls:
        listed, single = answer_bodies(task, bodies)
    windows = sum(calls)
    assert windows > 3 and len(calls) <= -(-windows // task.encoder.max_batch) + 1
    alone = [answer_bodies(task, [body])[0] for body in bodies[0]]
    assert [(a["start"], a["end"]) for a in listed] == [(a["start"], a["end"]) for a in alone]
    assert isinstance(single, dict) and set(single) == {"answer", "start", "end", "score"}


BAD_REQUESTS = [
    ({"question": "who ?"}, 400, "lacks 'context'"),
    ({"context": CONTEXT}, 400, "lacks 'question'"),
    ({"question": 3, "context": CONTEXT}, 400, '"question" must be a string'),
    ({"question": "who ?", "context": "   "}, 400, '"context" is empty'),
    ({"question": "who ?", "context": CONTEXT, "top_k": 2}, 400, "unknown key(s) 'top_k'"),
    ([], 400, "empty list"),
    ([{"question": "who ?", "context": CONTEXT}, "x"], 400, "item [1] must be an object"),
    ({"question": "who " * 70, "context": CONTEXT}, 400, "leaves no room for the context"),
    (
        {"question": "who ?", "context": "the cat sat on the mat . " * 120},
        413,
        "question_answering.max_windows_per_context",
    ),
    ("where is the cat ?", 400, "must be an object"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_REQUESTS)
def test_each_bad_request_is_its_own_4xx_and_its_neighbours_succeed(qa, body, status, message):
    _, task = qa
    good = {"question": "where does john live ?", "context": CONTEXT}
    before, bad, after = answer_bodies(task, [good, body, good])
    assert isinstance(bad, BadRequest) and bad.status == status and message in bad.message, bad
    assert before == after and before["answer"] == CONTEXT[before["start"] : before["end"]]
