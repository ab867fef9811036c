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
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch
import yaml

from tiny_models import EXAMPLES, save_tiny_bert, save_tiny_classifier, save_tiny_labelled, write_spec
from torchship import spec as spec_module
from torchship.errors import SpecError
from torchship.handler_settings import handler_settings, in_process_settings
from torchship.handlers import tasks as handler_tasks
from torchship.handlers.config import HandlerConfig
from torchship.handlers.loading import AUTO_CLASS
from torchship.handlers.requests import ParsedRequest
from torchship.handlers.service import build_task, predict
from torchship.modeling import load_source_model
from torchship.spec import ModelSpec, load_spec
from torchship.tasks import TASKS, task_definition
from torchship.validate.metrics import load_eval_set, tasks_with_metrics

SRC = Path(__file__).resolve().parents[1] / "src"
BIO = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}


# --- the places that name tasks agree ---------------------------------------------------------------


def test_spec_registry_handlers_and_auto_classes_name_the_same_tasks():
    spec_tasks = set(typing.get_args(spec_module.Task))
    assert set(TASKS) == spec_tasks, "spec.py's Task literal and torchship/tasks/ differ"
    assert set(handler_tasks.TASKS) == spec_tasks, "handlers/tasks.py TASKS and the spec differ"
    assert set(AUTO_CLASS) == spec_tasks, "handlers/loading.py AUTO_CLASS and the spec differ"
    for name, definition in TASKS.items():
        assert definition.name == name
        assert handler_tasks.TASKS[name].__name__ == definition.handler_class, name
        assert AUTO_CLASS[name] == definition.auto_class, name
        for section in definition.spec_sections:
            assert section in ModelSpec.model_fields, f"{name}: no spec section {section!r}"


def test_metrics_apply_to_the_tasks_whose_definition_has_an_eval_format(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({"text": "x", "label": "y"}) + "\n")
    assert tasks_with_metrics() == ["text-classification", "token-classification"]
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
    keywords = read["keywords"]
    assert keywords.ngram_range == (1, 2) and keywords.stop_words == ("a", "the")
    assert keywords.max_candidate_tokens_per_request == 300 and keywords.pooling == "mean"


def test_a_config_missing_keys_gets_the_handler_defaults_and_a_typo_is_refused():
    config = HandlerConfig.from_dict({"max_length": "32", "task": "keywords", "threads": None})
    defaults = {
        f.name: f.default for f in dataclasses.fields(HandlerConfig) if f.name not in ("max_length", "task")
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
}


def _gate_rows(task, definition, spec, model_dir, source, text):
    """The gate's task output for one text, and that text's token ids (the row the handler runs)."""
    ids = task.encoder.tokenize([text]).ids
    padded, mask = task.encoder.pad(list(ids))
    with torch.inference_mode():
        return definition.output(spec, model_dir)(source(padded, mask), mask)[0], list(ids[0])


def _check_embeddings(gate, served, **_):
    assert served == pytest.approx(gate.tolist(), abs=1e-5)


def _check_text_classification(gate, served, labels, **_):
    by_label = {r["label"]: r["score"] for r in served}
    assert [by_label[labels[i]] for i in range(len(labels))] == pytest.approx(gate.tolist(), abs=1e-5)


def _check_token_classification(gate, served, labels, ids, **_):
    label_id = {label: i for i, label in labels.items()}
    for entity in served:
        assert entity["score"] == pytest.approx(
            gate[entity["index"], label_id[entity["entity"]]].item(), abs=1e-5
        )
        assert gate[entity["index"]].argmax().item() == label_id[entity["entity"]]
    return len(served)


def _check_keywords(gate, served, embed, **_):
    # Each keyword's score is the cosine of its phrase's gate embedding with the text's.
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
        return _gate_rows(task, definition, spec, model_dir, source, text)[0]

    counted = 0
    texts = [*EXAMPLES, "john works in london and mary lives in paris ."]
    requests = [ParsedRequest([t], single=True, options=OPTIONS.get(name, {})) for t in texts]
    for text, served in zip(texts, predict(task, requests), strict=True):
        assert not isinstance(served, Exception), served
        gate, ids = _gate_rows(task, definition, spec, model_dir, source, text)
        counted += CHECKS[name](gate, served, labels=labels, ids=ids, embed=embed) or 0
    if name in ("keywords", "token-classification"):
        assert counted > 0, "no keyword or entity was served: the check compared nothing"
