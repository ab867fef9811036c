"""The README's reranking and question-answering examples, executed: each request body goes to a tiny
model of that task through the handler code, and the answer must have the README's shape (keys, length,
order rule) or, for an error example, exactly the README's status and message. The specs shown parse."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tiny_models import save_tiny_cross_encoder, save_tiny_qa, write_spec
from torchship.handler_settings import in_process_settings
from torchship.handlers.requests import BadRequest
from torchship.handlers.service import answer_bodies, build_task
from torchship.modeling import fit_to_model_dir, load_source_model
from torchship.spec import ModelSpec, load_spec

README = Path(__file__).resolve().parents[1] / "README.md"
SECTIONS = {"my-reranker": "### Reranking (cross-encoders)", "my-qa": "### Question answering (extractive)"}
# The README elides the long context of its 413 example; this one needs 18 windows of 64 tokens.
PLACEHOLDERS = {"<about 800 words>": "the cat sat on the mat . " * 120}


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(title)
    end = text.find("\n### ", start + len(title))
    return text[start : end if end != -1 else None]


def examples(title: str) -> list[tuple[str, object, object]]:
    """(model name, request body, README answer) for each ```http block followed by a ```json block."""
    found = re.findall(
        r"```http\nPOST /predictions/([\w-]+)\n(.*?)\n```\n```json\n(.*?)\n```", section(title), re.S
    )
    assert found, f"no request/response examples under {title!r}"
    pairs = []
    for name, body, answer in found:
        for placeholder, value in PLACEHOLDERS.items():
            body = body.replace(placeholder, value)
        pairs.append((name, json.loads(body), json.loads(answer)))
    return pairs


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme-pairs")
    built = {}
    for name, task, builder, extra in [
        ("my-reranker", "reranking", save_tiny_cross_encoder, ""),
        (
            "my-qa",
            "question-answering",
            lambda path: save_tiny_qa(path, "roberta"),
            "question_answering: {doc_stride: 8, max_windows_per_context: 12}\n",
        ),
    ]:
        model_dir = builder(root / name / "model")
        spec_path = write_spec(root / name / "spec", str(model_dir), name=name, task=task, extra=extra)
        spec = fit_to_model_dir(load_spec(spec_path), model_dir)
        model = load_source_model(model_dir, task, spec_path).as_model()
        built[name] = build_task(model_dir, in_process_settings(spec, model_dir), model=model)
    return built


def same_shape(answer, readme) -> None:
    assert type(answer) is type(readme)
    if isinstance(readme, list):
        assert len(answer) == len(readme)
        for got, want in zip(answer, readme, strict=True):
            same_shape(got, want)
    elif isinstance(readme, dict):
        assert set(answer) == set(readme)


@pytest.mark.parametrize("title", list(SECTIONS.values()))
def test_the_readme_examples_are_what_the_handler_answers(tasks, title):
    for name, body, readme in examples(title):
        [answer] = answer_bodies(tasks[name], [body])
        if isinstance(readme, dict) and "code" in readme:
            assert isinstance(answer, BadRequest), (body, answer)
            assert (answer.status, answer.message) == (readme["code"], readme["message"])
            continue
        assert not isinstance(answer, BadRequest), (body, answer)
        same_shape(answer, readme)
        if name == "my-reranker":
            assert [r["score"] for r in answer] == sorted((r["score"] for r in answer), reverse=True)
            assert all(r["text"] == body["texts"][r["index"]] for r in answer if "text" in r)
        else:
            for one, question in zip(
                answer if isinstance(answer, list) else [answer],
                body if isinstance(body, list) else [body],
                strict=True,
            ):
                assert one["answer"] == question["context"][one["start"] : one["end"]]
        # The README's own example answers follow the same rules.
        if name == "my-qa":
            for one, question in zip(
                readme if isinstance(readme, list) else [readme],
                body if isinstance(body, list) else [body],
                strict=True,
            ):
                assert one["answer"] == question["context"][one["start"] : one["end"]]


@pytest.mark.parametrize("title", list(SECTIONS.values()))
def test_the_readme_specs_are_valid(title):
    specs = re.findall(r"```yaml\n(.*?)\n```", section(title), re.S)
    assert specs
    for text in specs:
        ModelSpec.model_validate(yaml.safe_load(text))
