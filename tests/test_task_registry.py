"""One definition per task: the places that name tasks agree, and each definition's gate output is what
the handler serves.

The gate checks parity on a definition's task output (torchship/tasks/<task>.py) while clients get the
handler's answers (handlers/tasks.py): if the two drift apart, the gate passes models whose served
answers it never checked. Each comparison below recomputes the served answer from the gate's tensor
independently (by label, by token index, by cosine of phrase and text embeddings).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tiny_models import (
    EXAMPLES,
    save_tiny_bert,
    save_tiny_classifier,
    save_tiny_cross_encoder,
    save_tiny_labelled,
    save_tiny_qa,
    write_spec,
)
from torchship.errors import SpecError
from torchship.handler_settings import handler_settings, in_process_settings
from torchship.handlers import tasks as handler_tasks
from torchship.handlers.config import HandlerConfig
from torchship.handlers.requests import Limits
from torchship.handlers.service import answer_bodies, build_task
from torchship.modeling import load_source_model
from torchship.spec import ModelSpec, load_spec
from torchship.tasks import TASKS, task_definition
from torchship.validate.gate import example_rows
from torchship.validate.metrics import load_eval_set, tasks_with_metrics

SRC = Path(__file__).resolve().parents[1] / "src"
BIO = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}


# --- the places that name tasks agree ---------------------------------------------------------------


def test_each_task_is_one_runtime_class_and_one_definition_and_the_spec_takes_only_those(tmp_path):
    assert set(TASKS) == set(handler_tasks.TASKS), "torchship/tasks/ and handlers/tasks/ differ"
    for name, definition in TASKS.items():
        runtime = handler_tasks.TASKS[name]
        assert definition.runtime is runtime and definition.name == name == runtime.name
        assert definition.auto_class == runtime.auto_class and definition.outputs == runtime.outputs
        for section in definition.spec_sections:
            assert section in ModelSpec.model_fields, f"{name}: no spec section {section!r}"
        for body in definition.builtin_examples:  # what the gate sends without examples: a valid request
            runtime.request.parse(body, Limits(), runtime.options)
    spec = tmp_path / "model.yaml"
    spec.write_text("name: x\nversion: 0.1.0\ntask: summarization\nsource: dir\n")
    with pytest.raises(SpecError, match=r"unknown task 'summarization'.*question-answering"):
        load_spec(spec)


def test_no_module_outside_the_task_modules_names_a_task():
    """A task is one place: other modules look definitions up, they never compare task names."""
    names = "|".join(re.escape(name) for name in TASKS)
    pattern = re.compile(rf"""(==|!=|\bin\b)\s*\(?\s*["']({names})["']|["']({names})["']\s*(==|!=)""")
    allowed = {"tasks", "handlers/tasks"}
    offenders = []
    for path in sorted(SRC.joinpath("torchship").rglob("*.py")):
        relative = path.relative_to(SRC / "torchship").as_posix()
        if any(relative.startswith(prefix + "/") for prefix in allowed):
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if pattern.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "task names compared outside the task modules:\n" + "\n".join(offenders)


def test_metrics_apply_to_the_tasks_whose_definition_has_an_eval_format(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({"text": "x", "label": "y"}) + "\n")
    assert tasks_with_metrics() == [
        "reranking",
        "text-classification",
        "token-classification",
        "question-answering",
    ]
    for name in set(TASKS) - set(tasks_with_metrics()):
        with pytest.raises(SpecError, match=f"not {name}"):
            load_eval_set(path, name)
    assert load_eval_set(path, "text-classification")[0].gold == "y"


def test_an_unknown_task_is_a_spec_error_naming_the_tasks():
    with pytest.raises(SpecError) as info:
        task_definition("summarization")
    assert "summarization" in info.value.message and "text-classification" in info.value.message


def test_the_validate_stage_does_not_import_the_package_stage():
    code = "import sys, torchship.validate.gate; print('torchship.archiver' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": str(SRC)}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# --- the handler config ------------------------------------------------------------------------------


def test_handler_config_survives_the_yaml_round_trip_of_every_task(tmp_path):
    model_dir = save_tiny_bert(tmp_path / "model")
    read = {}
    for name in TASKS:
        extra = (
            "keywords: {stop_words: [the, a], ngram_range: [1, 2], max_candidate_tokens_per_request: 300}\n"
        )
        spec = load_spec(write_spec(tmp_path / name, str(model_dir), task=name, extra=extra))
        written = handler_settings(spec, model_dir)
        read[name] = HandlerConfig.from_dict(yaml.safe_load(yaml.safe_dump(written.to_dict())))
        assert read[name] == written, name
        runtime = handler_tasks.TASKS[name]
        # The task's own settings come back typed, as its runtime class reads them, equal to what was written.
        assert runtime.Settings.from_dict(read[name].settings) == TASKS[name].settings(spec, model_dir)
    keywords = handler_tasks.TASKS["keywords"].Settings.from_dict(read["keywords"].settings)
    assert keywords.ngram_range == (1, 2) and keywords.stop_words == ("a", "the")
    assert keywords.max_candidate_tokens_per_request == 300 and keywords.pooling == "mean"
    with pytest.raises(ValueError, match=r"unknown setting\(s\) 'top_m'.*top_n"):
        handler_tasks.TASKS["keywords"].Settings.from_dict({"top_m": 3})


def test_a_config_missing_keys_gets_the_handler_defaults_and_a_typo_is_refused():
    config = HandlerConfig.from_dict({"max_length": "32", "task": "keywords", "threads": None})
    defaults = {
        f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        for f in dataclasses.fields(HandlerConfig)
        if f.name not in ("max_length", "task")
    }
    assert config.max_length == 32 and {k: getattr(config, k) for k in defaults} == defaults
    with pytest.raises(ValueError, match=r"unknown handler setting.*'max_lenght'"):
        HandlerConfig.from_dict({"max_length": 32, "max_lenght": 64})
    with pytest.raises(ValueError, match="lacks 'max_length'"):
        HandlerConfig.from_dict({"task": "embeddings"})


# --- each definition's gate output is what the handler serves ----------------------------------------


def _embeddings_model(root: Path) -> Path:
    return save_tiny_bert(root)


def _classifier(root: Path) -> Path:
    return save_tiny_classifier(root)


def _token_classifier(root: Path) -> Path:
    def decisive(model):
        generator = torch.Generator().manual_seed(3)
        with torch.no_grad():
            model.classifier.weight.normal_(0.0, 1.0, generator=generator)
            model.classifier.bias.zero_()

    return save_tiny_labelled(root, "bert", "token", BIO, 3, decisive)


MODELS = {
    "embeddings": _embeddings_model,
    "keywords": _embeddings_model,
    "text-classification": _classifier,
    "token-classification": _token_classifier,
    "reranking": lambda root: save_tiny_cross_encoder(root),
    "question-answering": lambda root: save_tiny_qa(root, "electra"),
}


def _gate_rows(task, definition, spec, model_dir, source, body):
    """The gate's task output for each model row of one request (the rows the handler runs for it)."""
    rows = example_rows(task, [body])
    features = task.encoder.pad(rows)
    with torch.inference_mode():
        output = definition.output(spec, model_dir)(source.named(features), features["attention_mask"])
    return output, rows


def _check_embeddings(gate, served, **_):
    assert served == pytest.approx(gate[0].tolist(), abs=1e-5)


def _check_text_classification(gate, served, labels, **_):
    by_label = {r["label"]: r["score"] for r in served}
    assert [by_label[labels[i]] for i in range(len(labels))] == pytest.approx(gate[0].tolist(), abs=1e-5)


def _check_reranking(gate, served, **_):
    # Each text's score is the gate's relevance of its (query, text) row; best first.
    assert {r["index"]: r["score"] for r in served} == pytest.approx(dict(enumerate(gate.tolist())), abs=1e-5)
    assert [r["score"] for r in served] == sorted((r["score"] for r in served), reverse=True)
    return len(served)


def _check_question_answering(gate, served, rows, body, tokenizer, **_):
    # The served score is the product of the start and end softmax over the context tokens of the
    # gate's logits, at the tokens whose characters are the answer (recomputed here from the offsets).
    context = body["context"]
    for row, logits in zip(rows, gate, strict=True):
        enc = tokenizer(
            body["question"], context, return_offsets_mapping=True, truncation="only_second", max_length=64
        )
        if enc["input_ids"] != row["input_ids"]:
            continue  # not the first window: the short contexts here fit one
        ctx = [k for k, s in enumerate(enc.sequence_ids()) if s == 1]
        starts = [k for k in ctx if enc["offset_mapping"][k][0] == served["start"]]
        ends = [k for k in ctx if enc["offset_mapping"][k][1] == served["end"]]
        start_p = torch.softmax(logits[0, ctx].double(), 0)
        end_p = torch.softmax(logits[1, ctx].double(), 0)
        score = start_p[ctx.index(starts[0])] * end_p[ctx.index(ends[-1])]
        assert served["score"] == pytest.approx(score.item(), rel=1e-4)
        assert served["answer"] == context[served["start"] : served["end"]]
        return 1
    raise AssertionError("no window of the request was checked")


def _check_token_classification(gate, served, labels, ids, **_):
    gate = gate[0]
    label_id = {label: i for i, label in labels.items()}
    for entity in served:
        assert entity["score"] == pytest.approx(
            gate[entity["index"], label_id[entity["entity"]]].item(), abs=1e-5
        )
        assert gate[entity["index"]].argmax().item() == label_id[entity["entity"]]
    return len(served)


def _check_keywords(gate, served, embed, **_):
    # Each keyword's score is the cosine of its phrase's gate embedding with the text's.
    gate = gate[0]
    for keyword in served:
        phrase = embed(keyword["keyword"])
        cosine = torch.nn.functional.cosine_similarity(phrase, gate, dim=0).item()
        assert keyword["score"] == pytest.approx(cosine, abs=1e-4), keyword
    return len(served)


CHECKS = {
    "embeddings": _check_embeddings,
    "keywords": _check_keywords,
    "text-classification": _check_text_classification,
    "token-classification": _check_token_classification,
    "reranking": _check_reranking,
    "question-answering": _check_question_answering,
}
REQUESTS = {
    "reranking": [{"query": "where does the cat sit ?", "texts": EXAMPLES}],
    "question-answering": [
        {"question": "where does john live ?", "context": "john lives in paris and works for google ."},
        {"question": "what sat on the mat ?", "context": EXAMPLES[0]},
    ],
}
OPTIONS = {"token-classification": {"aggregation_strategy": "none"}, "keywords": {"top_n": 5}}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_definitions_gate_output_is_what_the_handler_serves(name, tmp_path):
    assert name in MODELS and name in CHECKS, f"add a tiny model and a served-answer check for task {name!r}"
    definition = TASKS[name]
    model_dir = MODELS[name](tmp_path / "model")
    spec = load_spec(
        write_spec(tmp_path / "spec", str(model_dir), task=name, extra="keywords: {stop_words: none}\n")
    )
    source = load_source_model(model_dir, name, spec.spec_path)
    task = build_task(model_dir, in_process_settings(spec, model_dir), model=source.as_model())
    labels = {
        int(k): v for k, v in json.loads((model_dir / "config.json").read_text()).get("id2label", {}).items()
    }

    def embed(text):
        return _gate_rows(task, definition, spec, model_dir, source, {"text": text})[0][0]

    counted = 0
    options = OPTIONS.get(name, {})
    bodies = REQUESTS.get(name) or [
        {"text": t, **options} for t in [*EXAMPLES, "john works in london and mary lives in paris ."]
    ]
    for body, served in zip(bodies, answer_bodies(task, bodies), strict=True):
        assert not isinstance(served, Exception), served
        gate, rows = _gate_rows(task, definition, spec, model_dir, source, body)
        ids = rows[0]["input_ids"]
        counted += (
            CHECKS[name](
                gate,
                served,
                labels=labels,
                ids=ids,
                embed=embed,
                rows=rows,
                body=body,
                tokenizer=task.encoder.tokenizer,
            )
            or 0
        )
    if name in ("keywords", "token-classification", "reranking", "question-answering"):
        assert counted > 0, "nothing was served to check: the check compared nothing"
